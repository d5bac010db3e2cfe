"""The one place that turns a ``SageportError`` into HTTP bytes.

botocore reads errors differently on the two planes, so each has a renderer:

- Control plane (AWS JSON 1.1): botocore takes the code only from ``__type``
  in the body. The ``x-amzn-ErrorType`` header is sent for other SDKs.
- Runtime (REST-JSON): the code comes from ``x-amzn-ErrorType`` (the text
  before the first ``:``), and modeled members such as ModelError's
  ``OriginalStatusCode`` are read from top-level body keys with exact casing.

Both return ``(status, headers, body)`` with lower-case header names, as ASGI
requires.
"""

from __future__ import annotations

import json
from typing import Literal

from sageport.errors import ControlPlaneInternalError, InternalFailure, SageportError

Headers = list[tuple[bytes, bytes]]
Rendered = tuple[int, Headers, bytes]

CONTROL_PLANE_CONTENT_TYPE = b"application/x-amz-json-1.1"
RUNTIME_CONTENT_TYPE = b"application/json"

# SageMaker's runtime suffixes its error codes with the Coral namespace, and
# botocore strips everything from the first colon.
RUNTIME_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/"

INTERNAL_ERROR_MESSAGE = "We encountered an internal error. Please try again."


def render_control_plane_error(err: SageportError, request_id: str) -> Rendered:
    """Render an error for the control plane: ``__type`` and ``Message`` in the body."""
    body = {**err.fields, "__type": err.code, "Message": err.message}
    headers = [
        (b"content-type", CONTROL_PLANE_CONTENT_TYPE),
        (b"x-amzn-requestid", request_id.encode("ascii")),
        (b"x-amzn-errortype", err.code.encode("ascii")),
    ]
    return _finish(err.status, headers, body)


def render_runtime_error(err: SageportError, request_id: str) -> Rendered:
    """Render an error for the runtime: code in ``x-amzn-ErrorType``, members top-level."""
    body = {**err.fields, "Message": err.message}
    error_type = f"{err.code}:{RUNTIME_ERROR_NAMESPACE}"
    headers = [
        (b"content-type", RUNTIME_CONTENT_TYPE),
        (b"x-amzn-requestid", request_id.encode("ascii")),
        (b"x-amzn-errortype", error_type.encode("ascii")),
    ]
    return _finish(err.status, headers, body)


def as_sageport_error(exc: BaseException, plane: Literal["control", "runtime"]) -> SageportError:
    """Return ``exc`` if it is a ``SageportError``, else a generic InternalFailure for ``plane``.

    The message never includes the exception text or traceback; the caller
    logs those with the request id.
    """
    if isinstance(exc, SageportError):
        return exc
    if plane == "control":
        return ControlPlaneInternalError(INTERNAL_ERROR_MESSAGE)
    return InternalFailure(INTERNAL_ERROR_MESSAGE)


def _finish(status: int, headers: Headers, body: dict[str, object]) -> Rendered:
    # default=str keeps the error path from failing on a field value that
    # is not plain JSON, such as a datetime.
    encoded = json.dumps(body, default=str).encode("utf-8")
    headers.append((b"content-length", str(len(encoded)).encode("ascii")))
    return status, headers, encoded
