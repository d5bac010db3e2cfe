"""The runtime's HTTP handler: REST-JSON under ``/endpoints/{EndpointName}/``.

This is the hot path. It routes on the raw path (botocore percent-encodes the
endpoint name, ``/`` included), validates the name and headers against the
runtime model, forwards to an instance and relays the response.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote

from sageport.dataplane.asynchronous import AsyncInvocations
from sageport.dataplane.invoke import invoke
from sageport.dataplane.routing import RoutingTable
from sageport.dataplane.stream import ResponseStream, open_stream
from sageport.dataplane.upstream import CallerGone
from sageport.errors import InternalFailure, PayloadTooLarge, SageportError, ValidationError
from sageport.protocol.asgi import (
    Authenticator,
    BodyTooLarge,
    ClientDisconnected,
    Headers,
    Receive,
    Scope,
    Send,
    caller_gone_watch,
    new_request_id,
    read_body,
    rejected_before_body,
    send_response,
)
from sageport.protocol.errors import render_runtime_error
from sageport.protocol.response_stream import send_event_stream, stream_headers
from sageport.protocol.restjson import validate_invoke_headers
from sageport.protocol.runtime_async import ACTION as ASYNC_ACTION
from sageport.protocol.runtime_async import accept_async_invocation

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

# The streaming operation takes its Accept from X-Amzn-SageMaker-Accept, and
# has no TargetModel.
_STREAM_FORWARDED = {
    b"content-type": "Content-Type",
    b"x-amzn-sagemaker-accept": "Accept",
    b"x-amzn-sagemaker-custom-attributes": "X-Amzn-SageMaker-Custom-Attributes",
    b"x-amzn-sagemaker-inference-id": "X-Amzn-SageMaker-Inference-Id",
    b"x-amzn-sagemaker-session-id": "X-Amzn-SageMaker-Session-Id",
}

_STREAM_ACTION = b"invocations-response-stream"
_TARGET_VARIANT = b"x-amzn-sagemaker-target-variant"


class RuntimeAPI:
    """Serve InvokeEndpoint and InvokeEndpointWithResponseStream from the routing table,
    and queue InvokeEndpointAsync requests."""

    def __init__(
        self,
        routing: RoutingTable,
        account_id: str,
        auth: Authenticator | None = None,
        async_invocations: AsyncInvocations | None = None,
    ) -> None:
        self._routing = routing
        self._account_id = account_id
        self._auth = auth
        self._async_invocations = async_invocations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        if await rejected_before_body(scope, send, self._auth, render_runtime_error, request_id):
            return
        try:
            status, headers, body = await self._invoke(scope, receive)
            headers.append((b"x-amzn-requestid", request_id.encode()))
        except (ClientDisconnected, CallerGone):
            logger.debug(
                "Dropped invocation %s: its caller disconnected before it reached an instance",
                request_id,
            )
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
        if isinstance(body, ResponseStream):
            await send_event_stream(send, receive, headers, body, request_id)
            return
        await send_response(send, status, headers, body, scope)

    async def _invoke(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, Headers, bytes | ResponseStream]:
        # The body is read before anything can fail, so a client still sending
        # gets the error response rather than a reset connection.
        try:
            body = await read_body(scope, receive, MAX_INVOKE_BODY)
        except BodyTooLarge as exc:
            raise PayloadTooLarge(
                f"The request body has {exc.size} bytes, more than the {MAX_INVOKE_BODY} bytes "
                "(6 MiB) a real-time invocation accepts. Send a smaller payload."
            ) from None
        if self._auth is not None:
            self._auth.check_request(scope, body)

        name, action = _split_path(scope["raw_path"])
        if scope["method"] != "POST":
            raise ValidationError(
                f"Use POST for /endpoints/{{EndpointName}}/{action.decode(errors='replace')}."
            )
        if action == ASYNC_ACTION and self._async_invocations is not None:
            return accept_async_invocation(self._async_invocations, name, scope, body)
        streaming = action == _STREAM_ACTION
        if action != b"invocations" and not streaming:
            raise ValidationError(
                f"Unknown runtime path /endpoints/{name}/{action.decode(errors='replace')}."
            )

        forwarded: dict[str, str] = {}
        # Validation reads the headers by the names the client sent.
        members: dict[str, str] = {}
        spellings = _STREAM_FORWARDED if streaming else _FORWARDED
        target_variant: str | None = None
        for key, value in scope["headers"]:
            spelling = spellings.get(key)
            if spelling is not None:
                text = _ascii_header(key, value)
                forwarded[spelling] = text
                members[key.decode("latin-1")] = text
            elif key == _TARGET_VARIANT and target_variant is None:
                # The first TargetVariant header counts, as for any single-valued header.
                target_variant = _ascii_header(key, value)
        if target_variant is not None:
            members["X-Amzn-SageMaker-Target-Variant"] = target_variant
        operation = "InvokeEndpointWithResponseStream" if streaming else "InvokeEndpoint"
        validate_invoke_headers(operation, name, members)

        route = await self._routing.wait_for_route(name)
        if route is None:
            if name in self._routing.starting:
                raise self._routing.unavailable(name)
            raise ValidationError(f"Endpoint {name} of account {self._account_id} not found.")

        if streaming:
            stream = await open_stream(route, body, forwarded, target_variant, receive)
            return 200, stream_headers(stream), stream

        caller_gone = caller_gone_watch(scope, receive)
        result = await invoke(route, body, forwarded, target_variant, caller_gone)
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


def _ascii_header(name: bytes, value: bytes) -> str:
    # Every header the runtime model binds is ASCII by its pattern. Checking
    # here lets the message show what the client sent, decoded as the UTF-8
    # that botocore sends, in place of the Latin-1 the ASGI server hands over.
    if not value.isascii():
        decoded = bytes(value).decode("utf-8", errors="replace")
        raise ValidationError(
            f"The {name.decode('ascii', errors='replace')} header has the value {decoded!r}, "
            "which is not ASCII; SageMaker accepts only ASCII in invocation headers."
        )
    return bytes(value).decode("ascii")
