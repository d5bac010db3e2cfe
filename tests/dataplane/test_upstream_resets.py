"""How the front door classifies and handles the ways an instance drops a connection.

A thread on a Unix socket plays the instance, one behaviour per connection.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sageport.dataplane.invoke import InvocationResult, invoke
from sageport.dataplane.routing import EndpointRoute, InstanceRoute, VariantRoute
from sageport.dataplane.upstream import (
    UpstreamDisconnected,
    UpstreamPool,
    UpstreamRequestUnread,
)
from sageport.errors import ServiceUnavailable

Behaviour = Callable[[socket.socket], None]


def close_unread(conn: socket.socket) -> None:
    # Closing with the request still queued makes the kernel reset the connection.
    select.select([conn], [], [], 10)


def read_then_close(conn: socket.socket) -> None:
    read_request(conn)


def answer_part_then_reset(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
    # A zero linger time turns close() into a reset even with nothing unread.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def answer_ok(conn: socket.socket) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")


def read_request(conn: socket.socket) -> None:
    conn.settimeout(10)
    received = b""
    while not received.endswith(b"\r\n\r\nbody"):
        chunk = conn.recv(4096)
        if not chunk:
            return
        received += chunk


Serve = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Return a function that serves one connection per behaviour, in order, on a Unix socket."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []

    def start(*behaviours: Behaviour) -> str:
        path = str(tmp_path / f"instance{len(listeners)}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen()
        listener.settimeout(30)
        listeners.append(listener)

        def run() -> None:
            for behaviour in behaviours:
                conn, _ = listener.accept()
                with conn:
                    behaviour(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for thread in threads:
        thread.join(timeout=30)
    for listener in listeners:
        listener.close()


def post_error(address: str) -> BaseException | None:
    """Send one POST through a fresh pool; return the exception it raised, if any."""

    async def post() -> BaseException | None:
        pool = UpstreamPool(address, 1)
        try:
            await pool.post(b"/invocations", [], b"body", timeout=10)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc
        finally:
            await pool.close()
        return None

    return asyncio.run(post())


def test_reset_before_reading_is_unread(serve: Serve) -> None:
    error = post_error(serve(close_unread))

    assert isinstance(error, UpstreamRequestUnread)
    assert "reset the connection" in str(error)


def test_close_after_reading_is_disconnected(serve: Serve) -> None:
    error = post_error(serve(read_then_close))

    assert isinstance(error, UpstreamDisconnected)
    assert not isinstance(error, UpstreamRequestUnread)


def test_reset_after_response_is_disconnected(serve: Serve) -> None:
    error = post_error(serve(answer_part_then_reset))

    assert isinstance(error, UpstreamDisconnected)
    assert not isinstance(error, UpstreamRequestUnread)


def invoke_result(address: str) -> InvocationResult | BaseException:
    """Invoke an endpoint whose one instance is at ``address``; return the result or the error."""

    async def call() -> InvocationResult | BaseException:
        instance = InstanceRoute("i-1", address, 1)
        route = EndpointRoute("ep", [VariantRoute("v", 1.0, [instance], 10.0)], "arn:log")
        try:
            return await invoke(route, b"body", {"Content-Type": "text/plain"}, None)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc
        finally:
            await route.close()

    return asyncio.run(call())


def test_invoke_resends_unread_request(serve: Serve) -> None:
    result = invoke_result(serve(close_unread, answer_ok))

    assert isinstance(result, InvocationResult)
    assert result.body == b"ok"


def test_invoke_unread_repeatedly_is_unavailable(serve: Serve) -> None:
    result = invoke_result(serve(close_unread, close_unread, close_unread))

    assert isinstance(result, ServiceUnavailable)
    assert "the model did not run it" in str(result)


def test_closed_connection_not_handed_over(serve: Serve) -> None:
    closed = threading.Event()

    def answer_then_close(conn: socket.socket) -> None:
        answer_ok(conn)
        conn.close()
        closed.set()

    async def race() -> InvocationResult | BaseException:
        # The instance's second connection answers the queued invocation.
        instance = InstanceRoute("i-1", serve(answer_then_close, answer_ok), 1)
        route = EndpointRoute("ep", [VariantRoute("v", 1.0, [instance], 10.0)], "arn:log")
        headers = {"Content-Type": "text/plain"}
        try:
            stream = await instance.upstream.open_stream(b"/invocations", [], b"body")
            await stream.read_all()
            queued = asyncio.ensure_future(
                invoke(route, b"body", headers, None, asyncio.Event().wait)
            )
            await asyncio.sleep(0)
            # Waiting here blocks the event loop, so the instance has closed the
            # connection before the stream hands it to the queued invocation.
            # The invocation either finds it closing and opens another, or
            # sends on it, finds it reset unread and sends again, depending on
            # whether the loop reads the EOF before the invocation runs.
            assert closed.wait(30)
            stream.release()
            return await queued
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return exc
        finally:
            await route.close()

    result = asyncio.run(race())

    assert isinstance(result, InvocationResult), result
    assert result.body == b"ok"
