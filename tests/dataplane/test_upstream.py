"""The front door's HTTP client to instances: responses, timeouts and callers that leave."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from sageport.dataplane.upstream import CallerGone, UpstreamPool, UpstreamResponse


class FakeInstance:
    """A Unix-socket HTTP server that records the paths it served, one request at a time."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.paths: list[str] = []
        self.connections = 0
        self.release_slow = asyncio.Event()

    async def __aenter__(self) -> FakeInstance:
        self._server = await asyncio.start_unix_server(self._serve, str(self.socket_path))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release_slow.set()
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                await reader.readexactly(length)
                self.paths.append(path)
                if path == "/slow":
                    await self.release_slow.wait()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Dropped: 1\r\n"
                    b"Content-Length: 2\r\n\r\nok"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def run_with_instance(test: Callable[[FakeInstance], Awaitable[None]]) -> None:
    async def main() -> None:
        # A short directory keeps the socket path under the 107-byte limit.
        with tempfile.TemporaryDirectory() as directory:
            async with FakeInstance(Path(directory) / "instance.sock") as instance:
                await test(instance)

    asyncio.run(main())


def test_post_returns_status_kept_headers_and_body() -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)

        response = await pool.post(b"/fast", [(b"Accept", b"text/plain")], b"{}", timeout=5)

        assert response.status == 200
        assert response.headers == {b"content-type": b"text/plain"}
        assert response.body == b"ok"
        await pool.close()

    run_with_instance(check)


def test_slow_response_times_out_and_connection_is_replaced() -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)

        with pytest.raises(TimeoutError):
            await pool.post(b"/slow", [], b"", timeout=0.2)
        instance.release_slow.set()
        response = await pool.post(b"/fast", [], b"", timeout=5)

        assert response.body == b"ok"
        assert instance.connections == 2
        await pool.close()

    run_with_instance(check)


QueuedCall = tuple["asyncio.Future[UpstreamResponse]", "asyncio.Future[UpstreamResponse]"]


async def queue_behind_slow_request(
    pool: UpstreamPool, caller_gone: Callable[[], Awaitable[object]]
) -> QueuedCall:
    """Send /slow, then /queued, which waits for the pool's only connection."""
    first = asyncio.ensure_future(pool.post(b"/slow", [], b"", timeout=5))
    await asyncio.sleep(0.1)
    queued = asyncio.ensure_future(pool.post(b"/queued", [], b"", 5, caller_gone))
    await asyncio.sleep(0.1)
    return first, queued


DisconnectWatch = Callable[[], Awaitable[object]]


def disconnect_watch(kind: str) -> tuple[DisconnectWatch, Callable[[], None]]:
    """Return a disconnect watch of ``kind`` and a function that makes the caller leave.

    "coroutine" is what ASGI's receive() gives. "shared-future" is the
    connection's future that Sageport's HTTP protocol puts in the scope.
    """
    if kind == "coroutine":
        event = asyncio.Event()
        return event.wait, event.set
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    return (lambda: future), (lambda: future.set_result(None))


@pytest.mark.parametrize("kind", ["coroutine", "shared-future"])
def test_queued_request_of_departed_caller_is_dropped(kind: str) -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)
        watch, leave = disconnect_watch(kind)

        first, queued = await queue_behind_slow_request(pool, watch)
        leave()

        with pytest.raises(CallerGone):
            await queued
        instance.release_slow.set()
        assert (await first).body == b"ok"
        assert (await pool.post(b"/fast", [], b"", timeout=5)).body == b"ok"
        assert instance.paths == ["/slow", "/fast"]
        await pool.close()

    run_with_instance(check)


def test_queued_request_gets_connection_when_caller_stays() -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)

        first, queued = await queue_behind_slow_request(pool, asyncio.Event().wait)
        instance.release_slow.set()

        assert (await first).body == b"ok"
        assert (await queued).body == b"ok"
        assert instance.paths == ["/slow", "/queued"]
        assert instance.connections == 1
        await pool.close()

    run_with_instance(check)


def test_shared_disconnect_future_survives_wait() -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)
        disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        first, queued = await queue_behind_slow_request(pool, lambda: disconnected)
        instance.release_slow.set()

        assert (await first).body == b"ok"
        assert (await queued).body == b"ok"
        assert not disconnected.done()
        await pool.close()

    run_with_instance(check)


@pytest.mark.parametrize("kind", ["coroutine", "shared-future"])
def test_caller_gone_at_handover_not_sent(kind: str) -> None:
    async def check(instance: FakeInstance) -> None:
        pool = UpstreamPool(str(instance.socket_path), 1)
        watch, leave = disconnect_watch(kind)
        stream = await pool.open_stream(b"/streamed", [], b"")
        await stream.read_all()
        queued = asyncio.ensure_future(pool.post(b"/queued", [], b"", 5, watch))
        await asyncio.sleep(0.1)

        # The caller leaves in the same step as the connection is handed to it.
        leave()
        stream.release()

        with pytest.raises(CallerGone):
            await queued
        assert (await pool.post(b"/fast", [], b"", timeout=5)).body == b"ok"
        assert instance.paths == ["/streamed", "/fast"]
        assert instance.connections == 1
        await pool.close()

    run_with_instance(check)
