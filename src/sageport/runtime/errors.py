"""Errors of the built-in runtime: invocation errors and start-up failures.

An ``InvocationError`` becomes an HTTP response with its ``status_code`` and
its message as a ``text/plain`` body. A ``StartupError`` stops the instance
with exit status 3; its message is the one-line reason the runtime writes to
the failure file, which the server shows as the endpoint's FailureReason.
"""

from __future__ import annotations


class InvocationError(Exception):
    """An invocation that fails with a known HTTP status and message."""

    status_code = 500


class UnsupportedMediaTypeError(InvocationError):
    """A Content-Type or Accept that the default codecs do not handle."""

    status_code = 415


class InvalidBodyError(InvocationError):
    """A request body that the default decoder for its content type cannot parse."""

    status_code = 400


class PayloadTooLargeError(InvocationError):
    """A request body larger than the runtime accepts."""

    status_code = 413


class StartupError(Exception):
    """A reason the instance cannot start serving, written to the failure file."""


def describe_exception(exc: BaseException) -> str:
    """Format ``exc`` as ``Type: message`` on one line."""
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
