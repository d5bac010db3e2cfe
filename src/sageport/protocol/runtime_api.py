"""The runtime's HTTP handler: REST-JSON under ``/endpoints/{EndpointName}/``.

This is the hot path. It routes on the raw path (botocore percent-encodes the
endpoint name, ``/`` included), validates the name and headers against the
runtime model, forwards to an instance and relays the answer.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from sageport.dataplane.invoke import invoke
from sageport.dataplane.routing import RoutingTable
from sageport.errors import InternalFailure, PayloadTooLarge, SageportError, ValidationError
from sageport.protocol.asgi import (
    BodyTooLarge,
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    new_request_id,
    read_body,
    send_response,
)
from sageport.protocol.errors import render_runtime_error
from sageport.protocol.restjson import validate_invoke_headers

logger = logging.getLogger("sageport.protocol")

# SageMaker's limit for a real-time request body: 6 MiB.
MAX_INVOKE_BODY = 6 * 2**20

PREFIX = b"/endpoints/"

# Request headers passed on to the model, with the spelling it receives.
_FORWARDED = {
    b"content-type": "Content-Type",
    b"accept": "Accept",
    b"x-amzn-sagemaker-custom-attributes": "X-Amzn-SageMaker-Custom-Attributes",
    b"x-amzn-sagemaker-target-model": "X-Amzn-SageMaker-Target-Model",
    b"x-amzn-sagemaker-inference-id": "X-Amzn-SageMaker-Inference-Id",
    b"x-amzn-sagemaker-session-id": "X-Amzn-SageMaker-Session-Id",
}

_UNSUPPORTED = {
    b"invocations-response-stream": "InvokeEndpointWithResponseStream",
    b"async-invocations": "InvokeEndpointAsync",
}


class RuntimeAPI:
    """Serve InvokeEndpoint from the routing table."""

    def __init__(self, routing: RoutingTable, account_id: str) -> None:
        self._routing = routing
        self._account_id = account_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        try:
            status, headers, body = await self._invoke(scope, receive)
            headers.append((b"x-amzn-requestid", request_id.encode()))
        except ClientDisconnected:
            return
        except SageportError as exc:
            status, headers, body = render_runtime_error(exc, request_id)
        except Exception:
            logger.exception("Invocation %s failed", request_id)
            error = InternalFailure(
                f"Sageport failed to process the invocation; its log has the details "
                f"under request id {request_id}."
            )
            status, headers, body = render_runtime_error(error, request_id)
        await send_response(send, status, headers, body)

    async def _invoke(self, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
        # The body is read before anything can fail, so a client still sending
        # gets the error response rather than a reset connection.
        try:
            body = await read_body(scope, receive, MAX_INVOKE_BODY)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(
                f"The request body has {exc.size} bytes, more than the {MAX_INVOKE_BODY} bytes "
                "(6 MiB) a real-time invocation accepts. Send a smaller payload."
            ) from None

        name, action = _split_path(scope["raw_path"])
        if scope["method"] != "POST":
            raise ValidationError(
                f"Use POST for /endpoints/{{EndpointName}}/{action.decode(errors='replace')}."
            )
        if action in _UNSUPPORTED:
            raise ValidationError(
                f"Sageport does not support {_UNSUPPORTED[action]} yet; use InvokeEndpoint."
            )
        if action != b"invocations":
            raise ValidationError(
                f"Unknown runtime path /endpoints/{name}/{action.decode(errors='replace')}."
            )

        forwarded: dict[str, str] = {}
        for key, value in scope["headers"]:
            spelling = _FORWARDED.get(key)
            if spelling is not None:
                forwarded[spelling] = value.decode("latin-1")
        target_variant = _header_text(scope, b"x-amzn-sagemaker-target-variant")
        members = dict(forwarded)
        if target_variant is not None:
            members["X-Amzn-SageMaker-Target-Variant"] = target_variant
        validate_invoke_headers("InvokeEndpoint", name, members)

        route = self._routing.get(name)
        if route is None:
            if name in self._routing.starting:
                raise self._routing.unavailable(name)
            raise ValidationError(f"Endpoint {name} of account {self._account_id} not found.")

        result = await invoke(route, body, forwarded, target_variant)
        headers: Headers = [
            (b"content-type", result.content_type.encode("latin-1")),
            (b"x-amzn-invoked-production-variant", result.variant.encode()),
        ]
        if result.custom_attributes is not None:
            headers.append(
                (b"x-amzn-sagemaker-custom-attributes", result.custom_attributes.encode("latin-1"))
            )
        return 200, headers, result.body


def _split_path(raw_path: bytes) -> tuple[str, bytes]:
    rest = raw_path[len(PREFIX) :]
    encoded_name, _, action = rest.rpartition(b"/")
    name = unquote(encoded_name.decode("latin-1"))
    if not name:
        raise ValidationError("The endpoint name in the path is empty.")
    return name, action


def _header_text(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
