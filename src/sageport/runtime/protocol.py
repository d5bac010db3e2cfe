"""HTTP/1.1 on one blocking connection, parsed with httptools.

A worker serves one connection at a time: it reads requests (Content-Length
or chunked bodies, keep-alive, pipelining), passes each complete request to
a dispatch function and writes the response. A response body goes out with a
Content-Length, and a stream with ``Transfer-Encoding: chunked``. The connection
closes after a response when the client asked for it, when the request was
malformed or too large, when a stream was aborted, or when the worker is
stopping.

A stream that fails part-way ends without the terminating zero-length chunk,
and the connection closes. HTTP clients report such a body as incomplete
(aiohttp raises ``ClientPayloadError``), which is how the server learns that
the model failed after its first chunk.

The socket has a timeout of about a second, so that no receive or send blocks
for longer: after each one, whether it timed out or made progress, the
connection calls ``beat`` to show the supervisor that the worker is alive.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Callable, Iterator
from http import HTTPStatus

import httptools

RECV_BYTES = 256 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_STATUS_LINES = {
    status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n" for status in HTTPStatus
}


class StopServing(BaseException):
    """Raised by the stop-signal handler while the worker waits for a connection or request.

    It derives from BaseException so that ``except Exception`` blocks do not catch it.
    """


class StreamAborted(Exception):
    """Raised by a response stream to end the body as incomplete, signalling a failure."""


class ServingState:
    """Flags shared between the serve loop and the worker's stop-signal handler."""

    __slots__ = ("idle", "stopping")

    def __init__(self) -> None:
        # True only while blocked waiting for a new connection or a new request.
        self.idle = False
        self.stopping = False


class Request:
    """One parsed HTTP request."""

    __slots__ = ("body", "headers", "keep_alive", "method", "path", "too_large")

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        keep_alive: bool,
        too_large: bool,
    ) -> None:
        self.method = method
        self.path = path
        # Header names are lower-cased; repeated headers are joined with ", ".
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.too_large = too_large


class Response:
    """One HTTP response, without Content-Length, Transfer-Encoding and Connection in ``headers``.

    When ``stream`` is set, ``body`` is ignored and each item of ``stream`` is
    sent as one chunk as soon as it is produced.
    """

    __slots__ = ("body", "headers", "status", "stream")

    def __init__(
        self,
        status: int,
        body: bytes | bytearray = b"",
        headers: list[tuple[str, str]] | None = None,
        stream: Iterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []
        self.stream = stream


Dispatch = Callable[[Request], Response]
Beat = Callable[[], None]


class RequestReader:
    """httptools callbacks that collect complete requests in ``completed``."""

    def __init__(self, max_body_bytes: int) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.completed: deque[Request] = deque()
        self.in_message = False
        self.expects_continue = False
        self._max_body_bytes = max_body_bytes
        self._url = b""
        self._headers: dict[str, str] = {}
        self._chunks: list[bytes] = []
        self._size = 0

    def feed(self, data: memoryview) -> None:
        """Parse ``data``; raise httptools.HttpParserError on malformed HTTP."""
        self.parser.feed_data(data)

    def on_message_begin(self) -> None:
        self.in_message = True
        self._url = b""
        self._headers = {}
        self._chunks = []
        self._size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.expects_continue = self._headers.get("expect", "").lower() == "100-continue"

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._max_body_bytes:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        request = Request(
            method=self.parser.get_method().decode("ascii"),
            path=self._url.partition(b"?")[0].decode("latin-1"),
            headers=self._headers,
            body=body,
            keep_alive=self.parser.should_keep_alive(),
            too_large=self._size > self._max_body_bytes,
        )
        self.completed.append(request)
        self.in_message = False
        self.expects_continue = False
        self._chunks = []


def serve_connection(
    conn: socket.socket, dispatch: Dispatch, state: ServingState, max_body_bytes: int, beat: Beat
) -> None:
    """Serve requests on ``conn`` until the client closes it or it must close."""
    reader = RequestReader(max_body_bytes)
    buffer = bytearray(RECV_BYTES)
    view = memoryview(buffer)
    while True:
        # NOTE: a stop signal that lands after recv_into() returns but before
        # idle is cleared drops the bytes just read, and the client sees the
        # connection close without a response.
        state.idle = not reader.in_message
        try:
            size = _receive(conn, buffer, beat)
        finally:
            state.idle = False
        if size == 0:
            return

        try:
            reader.feed(view[:size])
        except httptools.HttpParserUpgrade:
            send_response(conn, _plain(400, "protocol upgrades are not supported"), False, beat)
            return
        except httptools.HttpParserError as exc:
            send_response(conn, _plain(400, f"malformed HTTP request: {exc}"), False, beat)
            return
        if reader.expects_continue and not reader.completed:
            reader.expects_continue = False
            send_all(conn, [_CONTINUE], beat)

        while reader.completed:
            request = reader.completed.popleft()
            response = dispatch(request)
            keep_alive = request.keep_alive and not request.too_large and not state.stopping
            if response.stream is None:
                send_response(conn, response, keep_alive, beat)
            elif not send_stream(conn, response, keep_alive, beat):
                return
            if not keep_alive:
                return


def send_response(conn: socket.socket, response: Response, keep_alive: bool, beat: Beat) -> None:
    """Write ``response`` with a Content-Length, in one system call when the socket allows."""
    body = response.body
    try:
        head = _encode_head(response, len(body), keep_alive)
    except UnicodeEncodeError:
        body = b"the handler set a response header that is not Latin-1 text"
        head = _encode_head(Response(500, body, [("Content-Type", "text/plain")]), len(body), False)
    send_all(conn, [head, body], beat)


def send_stream(conn: socket.socket, response: Response, keep_alive: bool, beat: Beat) -> bool:
    """Write ``response.stream`` as a chunked body, and return False if the stream was aborted.

    Each chunk goes out in its own system call, so the client sees it at once.
    Empty items are skipped, because a zero-length chunk ends the body. The
    stream is closed in every case, which runs a generator's ``finally``
    blocks even when the client has gone away.
    """
    stream = response.stream
    assert stream is not None
    try:
        head = _encode_head(response, None, keep_alive)
    except UnicodeEncodeError:
        body = b"the handler set a response header that is not Latin-1 text"
        send_response(conn, Response(500, body, [("Content-Type", "text/plain")]), False, beat)
        _close(stream)
        return False

    try:
        send_all(conn, [head], beat)
        for chunk in stream:
            if chunk:
                send_all(conn, [b"%x\r\n" % len(chunk), chunk, b"\r\n"], beat)
    except StreamAborted:
        return False
    finally:
        _close(stream)
    send_all(conn, [b"0\r\n\r\n"], beat)
    return True


def send_all(conn: socket.socket, parts: list[bytes | bytearray], beat: Beat) -> None:
    """Write ``parts`` in order, gathered into as few system calls as the socket allows.

    sendmsg gathers the parts without concatenating them, which would copy a
    large body. A send that times out because the client reads slowly is
    retried after a heartbeat, so only the worker's own progress is measured.
    """
    views = [memoryview(part) for part in parts if part]
    while views:
        try:
            sent = conn.sendmsg(views)
        except TimeoutError:
            sent = 0
        beat()
        while sent:
            first = views[0]
            if sent < len(first):
                views[0] = first[sent:]
                break
            sent -= len(first)
            views.pop(0)


def _receive(conn: socket.socket, buffer: bytearray, beat: Beat) -> int:
    """Wait for data on ``conn`` and read it into ``buffer``, beating while none arrives."""
    while True:
        beat()
        try:
            return conn.recv_into(buffer)
        except TimeoutError:
            continue


def _close(stream: Iterator[bytes]) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        close()


def _encode_head(response: Response, length: int | None, keep_alive: bool) -> bytes:
    lines = [_STATUS_LINES.get(response.status) or f"HTTP/1.1 {response.status} Unknown\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
    if length is None:
        lines.append("Transfer-Encoding: chunked\r\n")
    else:
        lines.append(f"Content-Length: {length}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


def _plain(status: int, message: str) -> Response:
    return Response(status, message.encode(), [("Content-Type", "text/plain; charset=utf-8")])
