"""The control plane's HTTP handler: AWS JSON 1.1 on ``POST /``."""

from __future__ import annotations

import logging

from sageport.control.plane import ControlPlane
from sageport.errors import (
    ControlPlaneInternalError,
    SageportError,
    SerializationException,
    UnknownOperationException,
)
from sageport.protocol.asgi import (
    Authenticator,
    BodyTooLarge,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    header,
    new_request_id,
    read_body,
    region_of,
    rejected_before_body,
    send_response,
)
from sageport.protocol.awsjson import parse_control_request, render_control_response
from sageport.protocol.errors import render_control_plane_error

logger = logging.getLogger("sageport.protocol")

# Control-plane requests are small documents; SageMaker's largest (a model with
# 15 containers and their environments) is far below this.
MAX_CONTROL_BODY = 2 * 2**20


class ControlPlaneAPI:
    """Decode a control-plane request, run the operation, encode the response."""

    def __init__(
        self,
        control: ControlPlane,
        default_region: str,
        auth: Authenticator | None = None,
    ) -> None:
        self._control = control
        self._default_region = default_region
        self._auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        operation_name = "unknown"
        if await rejected_before_body(
            scope, send, self._auth, render_control_plane_error, request_id
        ):
            return
        try:
            body = await read_body(scope, receive, MAX_CONTROL_BODY)
            if self._auth is not None:
                self._auth.check_request(scope, body)
            _check_route(scope)
            target = header(scope, b"x-amz-target")
            operation, params = parse_control_request(
                target.decode("utf-8", errors="replace") if target is not None else None, body
            )
            operation_name = operation.name
            region = region_of(scope, self._default_region)
            result = await self._control.call(operation.name, params, region)
            status, headers, payload = render_control_response(operation, result, request_id)
        except ClientDisconnected:
            return
        except BodyTooLarge as exc:
            error: SageportError = SerializationException(
                f"The request body has {exc.size} bytes; the control plane accepts at most "
                f"{MAX_CONTROL_BODY}."
            )
            status, headers, payload = render_control_plane_error(error, request_id)
        except SageportError as exc:
            status, headers, payload = render_control_plane_error(exc, request_id)
        except Exception:
            logger.exception("Request %s (%s) failed", request_id, operation_name)
            internal = ControlPlaneInternalError(
                f"Sageport failed to process the request; its log has the details "
                f"under request id {request_id}."
            )
            status, headers, payload = render_control_plane_error(internal, request_id)
        await send_response(send, status, headers, payload, scope)


def _check_route(scope: Scope) -> None:
    """Reject a request with ``X-Amz-Target`` that is not ``POST /``.

    The application sends every such request here rather than to the console,
    so a client with a wrong method or endpoint URL gets an error it can parse.
    """
    path = scope["raw_path"].decode("utf-8", errors="replace")
    if scope["method"] != "POST" or path != "/":
        raise UnknownOperationException(
            f"The control plane accepts only POST / with X-Amz-Target; got {scope['method']} "
            f"{path[:200]}. Set the endpoint URL to the server's root, "
            "for example http://127.0.0.1:8765."
        )
