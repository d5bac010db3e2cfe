"""Test invocations from the console: run one, time it, and describe the outcome as a card.

The server measures Execution Length around the data-plane call (or the call to
an allowed custom URL), so the browser's own network time is not counted. The
browser gets a bounded preview of the body and a link to the whole of it, so a
large response never has to be parsed by the page. If the browser goes away
(the user pressed Cancel), the invocation is cancelled too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass
from typing import Any

from sageport.config import Settings
from sageport.console.headers import check_headers
from sageport.console.responses import BadRequest, NotFound, send_json
from sageport.console.results import ResultStore
from sageport.console.targets import TargetFailed, TargetGuard
from sageport.dataplane.invoke import InvocationResult, invoke
from sageport.dataplane.routing import RoutingTable
from sageport.errors import ModelError, RuntimeAPIError, SageportError, ValidationError
from sageport.protocol.asgi import Receive, Send, new_request_id, send_response

logger = logging.getLogger("sageport.console")

# Size of the inline body preview sent to the browser; the rest is behind the download link.
PREVIEW_BYTES = 256 * 1024
# SageMaker's real-time payload limit.
MAX_REQUEST_BODY = 6 * 2**20
# Directory, inside the data directory, of the whole response bodies behind download links.
RESULTS_DIRECTORY = "console-results"
RESULT_GONE = (
    "This response body is no longer kept: the server keeps the 200 most recent ones "
    "(256 MB in all) and drops the oldest first. Send the request again to get it."
)
_TEXT_TYPES = ("text/", "application/json", "application/x-ndjson", "application/jsonlines")


@dataclass
class Outcome:
    """A finished test request, before it is rendered as JSON."""

    status: str
    execution_us: int
    model_us: int | None
    variant: str | None
    content_type: str | None
    body: bytes
    custom_attributes: str | None
    error: dict[str, Any] | None


class Invoker:
    """Runs console test requests against endpoints or allowed custom URLs."""

    def __init__(self, routing: RoutingTable, settings: Settings) -> None:
        self._routing = routing
        self._guard = TargetGuard(settings.allowed_test_targets)
        self.results = ResultStore(settings.data_dir / RESULTS_DIRECTORY)

    async def handle(
        self, name: str, envelope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        """Run the request in ``envelope`` unless the browser disconnects first."""
        request = _parse_envelope(envelope)
        sent_at = time.time()
        work = asyncio.ensure_future(self._run(name, request))
        watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)

        if work not in done:
            work.cancel()
            logger.info("Console test request to endpoint %s cancelled by the browser", name)
            return
        watcher.cancel()
        outcome = work.result()
        completed_at = time.time()
        await send_json(send, 200, await self._render(outcome, sent_at, completed_at))

    async def _run(self, name: str, request: ConsoleTestRequest) -> Outcome:
        started = time.perf_counter_ns()
        try:
            if request.custom_url:
                return await self._run_custom(request, started)
            return await self._run_endpoint(name, request, started)
        except (RuntimeAPIError, TargetFailed) as exc:
            logger.info("Console test request to endpoint %s failed: %s", name, exc.code)
            return _failed(exc, started)

    async def _run_endpoint(self, name: str, request: ConsoleTestRequest, started: int) -> Outcome:
        route = await self._routing.wait_for_route(name)
        if route is None and name in self._routing.starting:
            raise self._routing.unavailable(name)
        if route is None:
            raise ValidationError(
                f"Endpoint {name} is not InService, so it cannot be invoked; "
                "its status is on the Overview tab."
            )
        result: InvocationResult = await invoke(
            route, request.body, dict(request.headers), request.target_variant
        )
        return Outcome(
            status="Complete",
            execution_us=(time.perf_counter_ns() - started) // 1000,
            model_us=result.model_latency_us,
            variant=result.variant,
            content_type=result.content_type,
            body=result.body,
            custom_attributes=result.custom_attributes,
            error=None,
        )

    async def _run_custom(self, request: ConsoleTestRequest, started: int) -> Outcome:
        headers = dict(request.headers)
        if request.target_variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = request.target_variant
        response = await self._guard.send(request.custom_url, request.body, headers)
        execution_us = (time.perf_counter_ns() - started) // 1000
        ok = 200 <= response.status < 300
        text = response.body[:PREVIEW_BYTES].decode("utf-8", errors="replace")
        return Outcome(
            status="Complete" if ok else "Failed",
            execution_us=execution_us,
            model_us=None,
            variant=None,
            content_type=response.content_type,
            body=response.body,
            custom_attributes=response.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
            error=None
            if ok
            else {
                "code": "ModelError",
                "message": f"The custom URL returned HTTP {response.status}.",
                "original_status": response.status,
                "original_message": text,
            },
        )

    async def _render(
        self, outcome: Outcome, sent_at: float, completed_at: float
    ) -> dict[str, Any]:
        content_type = outcome.content_type or "application/octet-stream"
        result_id = await self.results.put(outcome.body, content_type) if outcome.body else None
        model_ms = outcome.model_us / 1000 if outcome.model_us is not None else None
        execution_ms = outcome.execution_us / 1000
        return {
            "status": outcome.status,
            "request_id": new_request_id(),
            "variant": outcome.variant,
            "content_type": outcome.content_type,
            "custom_attributes": outcome.custom_attributes,
            "execution_ms": execution_ms,
            "model_ms": model_ms,
            "overhead_ms": execution_ms - model_ms if model_ms is not None else None,
            "sent_at": sent_at,
            "completed_at": completed_at,
            "body": _preview(outcome.body, content_type, result_id),
            "error": outcome.error,
        }

    async def send_result(self, result_id: str, download: bool, head: bool, send: Send) -> None:
        """Send a stored body whole, inline or as an attachment.

        HEAD gets only the status, so the page can check that a body is still
        kept before it follows a download link.
        """
        if head:
            if not self.results.exists(result_id):
                raise NotFound(RESULT_GONE)
            await send_response(send, 200, [(b"cache-control", b"no-store")], b"")
            return

        stored = await self.results.get(result_id)
        if stored is None:
            raise NotFound(RESULT_GONE)
        headers = [
            (b"content-type", stored.content_type.encode("latin-1", errors="replace")),
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", b"default-src 'none'; sandbox"),
            (b"cache-control", b"private, max-age=3600"),
        ]
        if download:
            headers.append((b"content-disposition", b'attachment; filename="response.bin"'))
        await send_response(send, 200, headers, stored.body)


@dataclass
class ConsoleTestRequest:
    """The members of a console test request, checked."""

    body: bytes
    headers: dict[str, str]
    target_variant: str | None
    custom_url: str


def _parse_envelope(envelope: dict[str, Any]) -> ConsoleTestRequest:
    body = _body_of(envelope)
    if len(body) > MAX_REQUEST_BODY:
        raise BadRequest(
            f"The request body has {len(body)} bytes, more than the {MAX_REQUEST_BODY} bytes "
            "(6 MiB) a real-time invocation accepts."
        )

    rows = envelope.get("headers") or []
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == 2 and all(isinstance(part, str) for part in row)
        for row in rows
    ):
        raise BadRequest('"headers" must be a list of [name, value] string pairs.')
    named = [("Content-Type", envelope.get("content_type")), ("Accept", envelope.get("accept"))]
    rows = [(name, value) for name, value in named if isinstance(value, str) and value] + [
        (name, value) for name, value in rows
    ]
    headers = check_headers(rows)

    target_variant = envelope.get("target_variant") or None
    variant_header = headers.pop("X-Amzn-SageMaker-Target-Variant", None)
    if target_variant is None:
        target_variant = variant_header
    custom_url = envelope.get("custom_url") or ""
    if not isinstance(custom_url, str) or not (
        target_variant is None or isinstance(target_variant, str)
    ):
        raise BadRequest('"custom_url" and "target_variant" must be strings.')
    return ConsoleTestRequest(body, headers, target_variant, custom_url.strip())


def _body_of(envelope: dict[str, Any]) -> bytes:
    if "body_base64" in envelope:
        try:
            return base64.b64decode(str(envelope["body_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest('"body_base64" is not valid base64.') from None
    body = envelope.get("body", "")
    if not isinstance(body, str):
        raise BadRequest('"body" must be a string; send bytes as "body_base64".')
    return body.encode()


def _failed(exc: SageportError, started: int) -> Outcome:
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, ModelError):
        error["original_status"] = exc.fields.get("OriginalStatusCode")
        error["original_message"] = exc.fields.get("OriginalMessage")
        error["log_stream_arn"] = exc.fields.get("LogStreamArn")
        error["error_code"] = exc.fields.get("ErrorCode")
    return Outcome(
        status="Failed",
        execution_us=(time.perf_counter_ns() - started) // 1000,
        model_us=None,
        variant=None,
        content_type=None,
        body=b"",
        custom_attributes=None,
        error=error,
    )


def _preview(body: bytes, content_type: str, result_id: str | None) -> dict[str, Any]:
    head = body[:PREVIEW_BYTES]
    preview: dict[str, Any] = {"size": len(body), "truncated": len(body) > PREVIEW_BYTES}
    if result_id is not None:
        preview["url"] = f"/console/api/results/{result_id}"
        preview["download"] = f"/console/api/results/{result_id}?download"
    if _is_text(content_type, head):
        # Cut at a character boundary so the preview is valid UTF-8.
        preview["text"] = head.decode("utf-8", errors="ignore")
    else:
        preview["base64"] = base64.b64encode(head[:4096]).decode()
    return preview


def _is_text(content_type: str, head: bytes) -> bool:
    if content_type.lower().startswith(_TEXT_TYPES) or "json" in content_type.lower():
        return True
    if content_type.lower().startswith("image/"):
        return False
    try:
        head[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off at the end is still text.
        return exc.start >= len(head[:4096]) - 3
    return b"\x00" not in head[:4096]


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
