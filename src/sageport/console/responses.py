"""The console API's JSON responses and its own error types."""

from __future__ import annotations

import json
from typing import Any

from sageport.errors import SageportError
from sageport.protocol.asgi import Headers, Send, send_response


class NotFound(SageportError):
    code = "NotFound"
    status = 404


class BadRequest(SageportError):
    code = "BadRequest"
    status = 400


class CrossOrigin(SageportError):
    """A console API request sent by a page of another origin."""

    code = "CrossOriginRejected"
    status = 403


class NotSignedIn(SageportError):
    """A console request without a live session while authentication is on."""

    code = "NotSignedIn"
    status = 401


class SignInFailed(SageportError):
    """Wrong credentials at sign-in; one message for every cause, so it reveals no key ids."""

    code = "SignInFailed"
    status = 401


class TooManySignInAttempts(SageportError):
    """A sign-in attempt while its client address, or the whole server, has failed too often."""

    code = "TooManySignInAttempts"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        # Whole seconds until an attempt may succeed, sent as the Retry-After header.
        self.retry_after = retry_after


class CsrfRejected(SageportError):
    """A state-changing console request without the session's CSRF token."""

    code = "InvalidCsrfToken"
    status = 403


async def send_json(
    send: Send, status: int, payload: Any, extra_headers: Headers | None = None
) -> None:
    body = json.dumps(payload, default=str).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    await send_response(send, status, headers + (extra_headers or []), body)


async def send_error(send: Send, error: SageportError) -> None:
    headers: Headers = []
    if isinstance(error, TooManySignInAttempts):
        headers.append((b"retry-after", str(error.retry_after).encode("ascii")))
    payload = {"error": {"code": error.code, "message": error.message}}
    await send_json(send, error.status, payload, headers)
