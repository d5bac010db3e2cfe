"""A lean HTTP/1.1 client for the hop from the front door to an instance.

Every InvokeEndpoint crosses this hop, so its cost is paid on every request.
Measured under load on this project's benchmark (benchmarks/profile_sageport.py),
aiohttp's client spent about a third of the front door's CPU per request on
building request objects, connector bookkeeping and response objects the data
plane does not use. This client does only what the hop needs: keep-alive
connections, one request at a time per connection, a body of known length
each way (``Content-Length`` or chunked responses, parsed by httptools), and
the few response headers the runtime API relays. Streaming responses and
health checks keep using aiohttp.

Errors are split by what they mean for a retry: ``UpstreamConnectError``
(nothing was sent, so another instance may take the request),
``UpstreamRequestUnread`` (sent, but the instance closed the connection
without reading all of it, so the model never saw it) and
``UpstreamDisconnected`` (the request may have reached the model).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

import httptools

# Response headers the data plane reads; the rest are dropped while parsing.
_KEPT_HEADERS = frozenset(
    {
        b"content-type",
        b"x-amzn-sagemaker-custom-attributes",
        b"x-sageport-custom-attributes-unsendable",
        b"x-sageport-model-latency-us",
    }
)


class UpstreamConnectError(ConnectionError):
    """The instance could not be reached; no byte of the request was sent."""


class CallerGone(Exception):
    """The caller disconnected while its request waited for a connection; nothing was sent."""


class UpstreamDisconnected(ConnectionError):
    """The connection broke after the request was sent, before the whole response."""


class UpstreamRequestUnread(UpstreamDisconnected):
    """The instance reset the connection before reading the whole request, so the model never ran.

    Linux resets, rather than closes, a connection whose socket is closed with
    received data still unread, for Unix sockets as for TCP. The front door
    sends one request per connection and waits for its response, and a
    runtime worker runs the model only on a complete request. So a reset
    before any response byte means that the request was not handled. Its
    worker was killed while stuck outside the model, or exited just as the
    request was sent on its idle keep-alive connection.
    """


@dataclass
class UpstreamResponse:
    """An instance's response: status, the kept headers (lower-case names) and the body."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; the pool hands it one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        # Set while a response is relayed part by part (see UpstreamStream).
        self.stream: UpstreamStream | None = None
        self._in_chunk = False
        # Whether any byte of the response to the current request arrived.
        self._answered = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamDisconnected(f"invalid HTTP response from the instance: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if isinstance(exc, ConnectionResetError | BrokenPipeError) and not self._answered:
            # NOTE: a server of the user's own that resets a connection after
            # reading the request (SO_LINGER 0) would be taken for one that never read it.
            self._fail(UpstreamRequestUnread(f"the instance reset the connection: {exc}"))
        else:
            self._fail(UpstreamDisconnected("the instance closed the connection"))
        if self.stream is not None:
            self.stream.broken()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT_HEADERS:
            self._headers[name] = value

    def on_headers_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.reusable = False
        if self.stream is not None and self._waiter is not None and not self._waiter.done():
            status = self._parser.get_status_code()
            self._waiter.set_result(UpstreamResponse(status, self._headers, b""))

    def on_body(self, body: bytes) -> None:
        if self.stream is None or self._in_chunk:
            self._body.append(body)
        else:
            self.stream.push(body)

    def on_chunk_header(self) -> None:
        # Only a stream keeps chunk boundaries: each chunk becomes one part.
        if self.stream is not None:
            self._in_chunk = True
            self._body = []

    def on_chunk_complete(self) -> None:
        if self.stream is not None:
            self._in_chunk = False
            if self._body:
                self.stream.push(b"".join(self._body))
                self._body = []

    def on_message_complete(self) -> None:
        if self.stream is not None:
            self.stream.complete()
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        waiter.set_result(UpstreamResponse(self._parser.get_status_code(), self._headers, body))

    # Requests

    def send(self, head: bytes, body: bytes) -> asyncio.Future[UpstreamResponse]:
        """Send a request; the future gets the whole response, or only its head when streaming."""
        assert self.transport is not None
        self._headers = {}
        self._body = []
        self._in_chunk = False
        self._answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines((head, body))
        return self._waiter

    @property
    def usable(self) -> bool:
        """Whether the connection may take another request: kept alive, and not closing.

        The transport closes as soon as the event loop reads the instance's
        EOF, a step before connection_lost clears ``reusable``. uvloop (0.23)
        raises RuntimeError on a write to a closed transport.
        """
        return self.reusable and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def time_out(self) -> None:
        """Fail the response in progress with TimeoutError; the caller closes the connection."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class UpstreamStream:
    """A response read part by part: one HTTP chunk per part, or data as it arrives.

    Reading pauses when ``MAX_BUFFERED_BYTES`` wait unread, so a slow caller
    slows the model's connection instead of filling the server's memory.
    """

    MAX_BUFFERED_BYTES = 4 * 2**20

    def __init__(self, pool: UpstreamPool, connection: _Connection) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self._pool = pool
        self._connection = connection
        self._parts: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._broken = False
        self._released = False
        self._wakeup: asyncio.Future[None] | None = None

    async def read_part(self) -> bytes:
        """Return the next part, or ``b""`` at the end; raise UpstreamDisconnected if cut short."""
        while not self._parts:
            if self._complete:
                return b""
            if self._broken:
                raise UpstreamDisconnected("the instance closed the connection mid-response")
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        part = self._parts.popleft()
        self._buffered -= len(part)
        if self._buffered < self.MAX_BUFFERED_BYTES and self._connection.transport is not None:
            self._connection.transport.resume_reading()
        return part

    async def read_all(self) -> bytes:
        parts = []
        while part := await self.read_part():
            parts.append(part)
        return b"".join(parts)

    def release(self) -> None:
        """Give the connection back: kept if the response was read to its end, else closed."""
        if self._released:
            return
        self._released = True
        self._connection.stream = None
        if not self._complete:
            self._connection.close()
        self._pool.release(self._connection)

    # Called by the connection.

    def push(self, part: bytes) -> None:
        self._parts.append(part)
        self._buffered += len(part)
        if self._buffered >= self.MAX_BUFFERED_BYTES and self._connection.transport is not None:
            self._connection.transport.pause_reading()
        self._wake()

    def complete(self) -> None:
        self._complete = True
        self._wake()

    def broken(self) -> None:
        if not self._complete:
            self._broken = True
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class UpstreamPool:
    """At most ``size`` keep-alive connections to one instance; callers queue for them."""

    def __init__(self, address: str, size: int) -> None:
        self._address = address
        self._size = size
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[_Connection | None]] = collections.deque()
        self._closed = False

    async def post(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        caller_gone: Callable[[], Awaitable[object]] | None = None,
    ) -> UpstreamResponse:
        """Send ``POST path`` and return the response; raise TimeoutError after ``timeout``.

        ``caller_gone`` returns an awaitable that completes when the caller
        disconnects. A request still waiting for a connection then raises
        CallerGone instead of reaching the model: an abandoned request must
        not hold a place in the queue. An ``asyncio.Future`` it returns is
        watched but never cancelled, so one future can serve many requests.
        """
        connection = await self._acquire(caller_gone)
        head = _request_head(b"POST", path, headers, len(body))
        return await self._send(connection, head, body, timeout)

    async def delete(self, path: bytes, timeout: float) -> UpstreamResponse:
        """Send ``DELETE path``; raise TimeoutError after ``timeout``."""
        return await self._request(b"DELETE", path, [], b"", timeout)

    async def get(self, path: bytes, timeout: float) -> UpstreamResponse:
        """Send ``GET path`` on a pooled connection.

        Health checks must share the pool: a runtime worker serves one
        connection at a time, so while the pool keeps a keep-alive connection
        to it, a check on a connection of its own would wait unanswered.
        """
        connection = await asyncio.wait_for(self._acquire(), timeout)
        return await self._send(connection, _request_head(b"GET", path, [], 0), b"", timeout)

    async def open_stream(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        caller_gone: Callable[[], Awaitable[object]] | None = None,
    ) -> UpstreamStream:
        """Send ``POST path`` and return once the response head arrived.

        The caller reads the body with ``read_part`` and must ``release()`` the
        stream. Cancelling this call (e.g. by a timeout) closes the connection.
        ``caller_gone`` drops a queued request as in ``post``.
        """
        connection = await self._acquire(caller_gone)
        stream = UpstreamStream(self, connection)
        connection.stream = stream
        try:
            head = await connection.send(_request_head(b"POST", path, headers, len(body)), body)
        except BaseException:
            stream.release()
            raise
        stream.status = head.status
        stream.headers = head.headers
        return stream

    def release(self, connection: _Connection) -> None:
        """Return a connection taken for a stream."""
        self._release(connection)

    async def _request(
        self,
        method: bytes,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
    ) -> UpstreamResponse:
        connection = await self._acquire()
        head = _request_head(method, path, headers, len(body))
        return await self._send(connection, head, body, timeout)

    async def _send(
        self, connection: _Connection, head: bytes, body: bytes, timeout: float
    ) -> UpstreamResponse:
        # A timer that fails the response future costs less per request than
        # asyncio.wait_for, which adds a future and a callback hop of its own.
        response = connection.send(head, body)
        timer = asyncio.get_running_loop().call_later(timeout, connection.time_out)
        try:
            result = await response
        except BaseException:
            connection.close()
            self._release(connection)
            raise
        finally:
            timer.cancel()
        self._release(connection)
        return result

    async def close(self) -> None:
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(UpstreamConnectError("the instance is being stopped"))

    async def _acquire(
        self, caller_gone: Callable[[], Awaitable[object]] | None = None
    ) -> _Connection:
        """Take a connection, first come first served.

        A released connection goes straight to the longest waiter, so a new
        request cannot overtake queued ones: under steady load, overtaking
        starved some requests until their callers gave up.
        """
        while True:
            if self._closed:
                raise UpstreamConnectError("the instance is being stopped")
            if not self._waiters:
                while self._idle:
                    connection = self._idle.pop()
                    if connection.usable:
                        return connection
                    connection.close()
                    self._open -= 1
                if self._open < self._size:
                    return await self._open_connection()

            # None means a slot was freed rather than a connection handed over.
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await self._wait(waiter, caller_gone)
            except (asyncio.CancelledError, CallerGone):
                self._abandon(waiter)
                raise
            if handed is not None:
                # The instance may have closed it while this task waited to run.
                if handed.usable:
                    return handed
                handed.close()
                self._open -= 1
            if self._open < self._size:
                return await self._open_connection()

    @staticmethod
    async def _wait(
        waiter: asyncio.Future[_Connection | None],
        caller_gone: Callable[[], Awaitable[object]] | None,
    ) -> _Connection | None:
        if caller_gone is None:
            return await waiter
        # A done callback fails the waiter when the caller leaves first. It
        # costs less per queued request than asyncio.wait on both futures.
        watch = functools.partial(_fail_when_caller_gone, waiter)
        disconnect = caller_gone()
        if isinstance(disconnect, asyncio.Future):
            # The connection's own disconnect future, shared by its requests.
            disconnect.add_done_callback(watch)
            try:
                handed = await waiter
            finally:
                disconnect.remove_done_callback(watch)
            left = disconnect.done()
        else:
            disconnect_task = asyncio.ensure_future(disconnect)
            disconnect_task.add_done_callback(watch)
            try:
                handed = await waiter
            finally:
                left = disconnect_task.done() and not disconnect_task.cancelled()
                disconnect_task.cancel()
        # Both may be done when the caller left as its turn came: the caller
        # wins, and the connection it was handed goes on to the next waiter.
        if left:
            raise CallerGone
        return handed

    async def _open_connection(self) -> _Connection:
        self._open += 1
        try:
            return await self._connect()
        except BaseException:
            self._open -= 1
            self._hand_over(None)
            raise

    def _abandon(self, waiter: asyncio.Future[_Connection | None]) -> None:
        """Undo a cancelled wait, passing on whatever it was handed."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is not None:
                self._release(handed)
            else:
                self._hand_over(None)

    def _release(self, connection: _Connection) -> None:
        if connection.usable and not self._closed:
            if not self._hand_over(connection):
                self._idle.append(connection)
            return
        connection.close()
        self._open -= 1
        self._hand_over(None)

    def _hand_over(self, connection: _Connection | None) -> bool:
        """Hand ``connection``, or a freed slot, to the longest waiter; True if one took it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return True
        return False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if self._address.startswith("/"):
                _, connection = await loop.create_unix_connection(_Connection, self._address)
            else:
                host, _, port = self._address.rpartition(":")
                _, connection = await loop.create_connection(_Connection, host, int(port))
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to {self._address}: {exc}") from exc
        return connection


def _fail_when_caller_gone(
    waiter: asyncio.Future[_Connection | None], disconnect: asyncio.Future[object]
) -> None:
    # Cancelled means the wait ended first and no longer needs the watch.
    if not disconnect.cancelled() and not waiter.done():
        waiter.set_exception(CallerGone())


def _request_head(
    method: bytes, path: bytes, headers: list[tuple[bytes, bytes]], length: int
) -> bytes:
    lines = [
        method,
        b" ",
        path,
        b" HTTP/1.1\r\nHost: instance\r\nContent-Length: ",
        str(length).encode(),
    ]
    for name, value in headers:
        lines += (b"\r\n", name, b": ", value)
    lines.append(b"\r\n\r\n")
    return b"".join(lines)
