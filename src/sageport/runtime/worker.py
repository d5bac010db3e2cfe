"""A worker process: load the model once, then serve connections one at a time.

The supervisor forks each worker with the bound socket and a pipe. The
worker writes ``R`` to the pipe once ready, or ``F`` and a one-line reason
when the model fails to load. Through its shared liveness slot
(runtime/liveness.py) the worker marks each model call, so the supervisor can
kill it when the call runs past the model server timeout, and beats while
outside the model, so the supervisor can kill it when it stops making
progress there. A streamed response counts as one model call until its last
chunk is sent.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

from sageport.runtime.config import RuntimeConfig
from sageport.runtime.errors import InvocationError, StartupError, describe_exception
from sageport.runtime.liveness import HEARTBEAT_INTERVAL_SECONDS, WorkerSlot
from sageport.runtime.loader import load_user_handlers
from sageport.runtime.multimodel import MultiModelServer, placeholder_pipeline
from sageport.runtime.pipeline import InferencePipeline
from sageport.runtime.process import EXIT_ERROR, EXIT_MODEL_FAILURE, EXIT_OK, die_with_parent
from sageport.runtime.protocol import (
    Request,
    Response,
    ServingState,
    StopServing,
    StreamAborted,
    serve_connection,
)

logger = logging.getLogger("sageport.runtime")

_PLAIN_TEXT = ("Content-Type", "text/plain; charset=utf-8")
_LATENCY_HEADER = "X-Sageport-Model-Latency-Us"
_CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
# Sent in place of custom attributes that no HTTP header can carry, so that
# the server drops them with the warning it logs for every invalid value.
_UNSENDABLE_CUSTOM_ATTRIBUTES_HEADER = "X-Sageport-Custom-Attributes-Unsendable"
# accept() errors that concern one connection or a passing resource shortage.
_RETRYABLE_ACCEPT_ERRORS = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)


class WorkerSetup:
    """Sockets, pipes and settings that the supervisor passes to a worker at fork time."""

    __slots__ = ("config", "index", "listener", "master_pid", "ready_fd", "slot", "start_fd")

    def __init__(
        self,
        config: RuntimeConfig,
        index: int,
        listener: socket.socket,
        slot: WorkerSlot,
        ready_fd: int,
        start_fd: int | None,
        master_pid: int,
    ) -> None:
        self.config = config
        self.index = index
        self.listener = listener
        # This worker's liveness fields, shared with the supervisor.
        self.slot = slot
        self.ready_fd = ready_fd
        # Reaches end-of-file once the supervisor listens; None when it already does.
        self.start_fd = start_fd
        self.master_pid = master_pid


def run_worker(setup: WorkerSetup) -> int:
    """Load the model, report readiness and serve until a stop signal; return the exit status."""
    if not die_with_parent(setup.master_pid):
        return EXIT_ERROR

    pipeline = _load(setup)
    if pipeline is None:
        return EXIT_MODEL_FAILURE

    state = ServingState()
    _install_stop_handlers(state)
    setup.slot.beat()
    os.write(setup.ready_fd, b"R")
    os.close(setup.ready_fd)
    try:
        state.idle = True
        if setup.start_fd is not None:
            os.read(setup.start_fd, 1)
            os.close(setup.start_fd)
        state.idle = False
        _serve_forever(setup, InvocationServer(setup, pipeline), state)
    except StopServing:
        pass
    logger.info("Worker %d stopped", os.getpid())
    return EXIT_OK


def _load(setup: WorkerSetup) -> InferencePipeline | None:
    config = setup.config
    if config.multi_model:
        # Models are loaded by name on request; see runtime/multimodel.py.
        return placeholder_pipeline(config)
    started = time.monotonic()
    try:
        handlers = load_user_handlers(config.code_dir, config.program)
        pipeline = InferencePipeline.load(handlers, config.model_dir, config.default_accept)
    except StartupError as exc:
        logger.error("Worker %d failed to load the model: %s", os.getpid(), exc)
        if exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        os.write(setup.ready_fd, b"F" + str(exc).encode()[:3000])
        return None

    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info("Worker %d loaded the model in %d ms", os.getpid(), elapsed_ms)
    return pipeline


def _install_stop_handlers(state: ServingState) -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        state.stopping = True
        if state.idle:
            raise StopServing

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _serve_forever(setup: WorkerSetup, server: InvocationServer, state: ServingState) -> None:
    listener = setup.listener
    is_tcp = listener.family != socket.AF_UNIX
    max_body_bytes = setup.config.max_payload_bytes
    beat = setup.slot.beat
    # The timeout makes the listener non-blocking for every worker, since they
    # share it, and each one's accept() waits for at most one interval.
    listener.settimeout(HEARTBEAT_INTERVAL_SECONDS)
    while not state.stopping:
        beat()
        state.idle = True
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError as exc:
            if exc.errno not in _RETRYABLE_ACCEPT_ERRORS:
                raise
            logger.warning("Accepting a connection failed: %s", exc)
            time.sleep(0.1)
            continue
        finally:
            state.idle = False

        with conn:
            conn.settimeout(HEARTBEAT_INTERVAL_SECONDS)
            if is_tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                serve_connection(conn, server.dispatch, state, max_body_bytes, beat)
            except (ConnectionError, TimeoutError) as exc:
                logger.debug("Connection ended early: %s", exc)


class InvocationServer:
    """Routes requests to ``/ping`` and ``/invocations`` (or ``/models`` in multi-model mode)."""

    def __init__(self, setup: WorkerSetup, pipeline: InferencePipeline) -> None:
        self.pipeline = pipeline
        self.slot = setup.slot
        self.multi_model: MultiModelServer | None = None
        if setup.config.multi_model:
            self.multi_model = MultiModelServer(setup.config, self)

    def dispatch(self, request: Request) -> Response:
        """Return the response to one request."""
        path = request.path
        if self.multi_model is not None and (path == "/models" or path.startswith("/models/")):
            if request.too_large:
                return _error(413, "the request body is larger than SAGEMAKER_MAX_PAYLOAD_IN_MB")
            return self.multi_model.dispatch(request)
        if path == "/invocations":
            if self.multi_model is not None:
                return _error(
                    400, "this is a multi-model instance: invoke POST /models/{name}/invoke"
                )
            if request.method != "POST":
                return _method_not_allowed(request, "POST")
            if request.too_large:
                return _error(413, "the request body is larger than SAGEMAKER_MAX_PAYLOAD_IN_MB")
            return self.invoke(request)
        if path == "/ping":
            if request.method != "GET":
                return _method_not_allowed(request, "GET")
            return Response(200)
        return _error(404, f"{path} not found: the runtime serves GET /ping and POST /invocations")

    def invoke(self, request: Request, pipeline: InferencePipeline | None = None) -> Response:
        """Run the model (``pipeline``, else the instance's) on one request and time it."""
        pipeline = pipeline or self.pipeline
        headers = request.headers
        context = pipeline.new_context(headers)

        started = time.perf_counter_ns()
        self.slot.start_call()
        response: Response | None = None
        try:
            payload, content_type = pipeline.invoke(
                request.body, headers.get("content-type"), headers.get("accept"), context
            )
            if isinstance(payload, bytes | bytearray):
                response = Response(200, payload, [("Content-Type", content_type)])
            else:
                response = self._start_stream(payload, content_type)
        except Exception as exc:  # noqa: BLE001 - every handler error becomes a response
            response = _handler_error(exc)
        finally:
            # A stream ends the call itself once its last chunk is sent.
            if response is None or response.stream is None:
                self.slot.end_call()
        latency_us = (time.perf_counter_ns() - started) // 1000

        response.headers.append((_LATENCY_HEADER, str(latency_us)))
        if context is not None:
            if context.response_custom_attributes is not None:
                response.headers.append(
                    _custom_attributes_header(context.response_custom_attributes)
                )
            response.headers.extend(context.response_headers.items())
        return response

    def _start_stream(self, items: Iterator[Any], content_type: str) -> Response:
        """Take the first non-empty item before sending the status line, then stream the rest.

        An error before the first item therefore still gets an error status,
        and the latency header and custom attributes are those at the first item.
        """
        headers = [("Content-Type", content_type)]
        try:
            for item in items:
                first = _encode_item(item)
                if first:
                    stream = _ResponseStream(self, first, items)
                    return Response(200, headers=headers, stream=stream)
        except Exception:
            _close(items)
            raise
        return Response(200, headers=headers)


class _ResponseStream:
    """The chunks of a streamed response, from the first non-empty item on.

    The model call lasts until ``close()``, which the connection calls in
    every case, also when the head could not be sent before the first chunk.
    """

    def __init__(self, server: InvocationServer, first: bytes, items: Iterator[Any]) -> None:
        self._server = server
        self._first: bytes | None = first
        self._items = items

    def __iter__(self) -> _ResponseStream:
        return self

    def __next__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        try:
            return _encode_item(next(self._items))
        except StopIteration:
            raise
        except Exception as exc:
            # The status line is already sent, so the only signal left is an
            # incomplete body. The reason goes to the instance's log.
            logger.error("The response stream failed after its first chunk", exc_info=exc)
            raise StreamAborted from exc

    def close(self) -> None:
        self._server.slot.end_call()
        _close(self._items)


def _encode_item(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise InvocationError(
        f"the response stream yielded {type(item).__name__}; yield str, bytes or bytearray"
    )


def _close(items: Iterator[Any]) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _handler_error(exc: Exception) -> Response:
    """Map an exception from the handlers or codecs to a status and a text body."""
    if isinstance(exc, InvocationError):
        status, message = exc.status_code, str(exc)
    else:
        status_code = getattr(exc, "status_code", None)
        if type(status_code) is int and 400 <= status_code <= 599:
            status, message = status_code, str(exc) or type(exc).__name__
        else:
            # The toolkit sends the traceback too; callers see it as ModelError's OriginalMessage.
            trace = "".join(traceback.format_exception(exc))
            status, message = 500, f"{describe_exception(exc)}\n\n{trace}"

    if status >= 500:
        logger.error("Invocation failed with status %d", status, exc_info=exc)
    else:
        logger.warning("Invocation failed with status %d: %s", status, describe_exception(exc))
    return _error(status, message)


def _error(status: int, message: str) -> Response:
    return Response(status, message.encode(errors="replace"), [_PLAIN_TEXT])


def _method_not_allowed(request: Request, allowed: str) -> Response:
    response = _error(405, f"{request.method} {request.path} is not allowed; use {allowed}")
    response.headers.append(("Allow", allowed))
    return response


def _custom_attributes_header(value: str) -> tuple[str, str]:
    """Return the header that passes the model's custom attributes to the server.

    The attribute can be assigned any string, but a line break would end the
    header early and cut the value. Other control characters and characters
    outside Latin-1 make the response invalid HTTP.
    """
    if all(_sendable_in_header(character) for character in value):
        return (_CUSTOM_ATTRIBUTES_HEADER, value)
    return (_UNSENDABLE_CUSTOM_ATTRIBUTES_HEADER, "1")


def _sendable_in_header(character: str) -> bool:
    # RFC 9110 field values: tab, visible ASCII, space and bytes 0x80-0xFF.
    return character == "\t" or (" " <= character <= "\xff" and character != "\x7f")
