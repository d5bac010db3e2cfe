"""The one-write response path gives the bytes uvicorn's own send path gives.

Two real uvicorn servers run the same application on loopback: one with
Sageport's protocol, whose scope offers the whole-response extension, and one
with the request-limit protocol alone, where ``send_response`` falls back to
the two ASGI messages. Every case sends the same raw requests to both and
compares everything each server sent back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.server import ServerState

from sageport.protocol.asgi import Headers, Receive, Scope, Send, read_body, send_response
from sageport.protocol.http_limits import RequestLimits, guarded_protocol
from sageport.protocol.whole_response import http_protocol

REQUEST_ID = (b"x-amzn-requestid", b"0b7d6a3e-5a4c-4a55-9f57-5a9b0c6a1d2e")
JSON = (b"content-type", b"application/json")

# Each path's status, headers and body, as a handler would pass them to send_response.
RESPONSES: dict[str, tuple[int, Headers, bytes]] = {
    "/json": (
        200,
        [JSON, (b"x-amzn-invoked-production-variant", b"AllTraffic"), REQUEST_ID],
        b"[0]",
    ),
    "/error": (
        400,
        [JSON, (b"x-amzn-errortype", b"ValidationError:http://internal.amazon.com/"), REQUEST_ID],
        b'{"message": "The endpoint name in the path is empty."}',
    ),
    "/empty": (200, [(b"content-type", b"text/plain")], b""),
    "/large": (200, [(b"content-type", b"application/octet-stream")], bytes(range(256)) * 8192),
    "/own-length": (200, [JSON, (b"content-length", b"3")], b"[1]"),
    "/upper-case-name": (200, [(b"Content-Type", b"text/plain"), (b"X-Custom", b"yes")], b"ok"),
    "/connection-close": (200, [JSON, (b"connection", b"close")], b"{}"),
    "/chunked": (200, [(b"transfer-encoding", b"chunked")], b""),
    "/no-reason-phrase": (299, [JSON], b"{}"),
    # uvicorn raises in send for both and closes the connection: before
    # writing anything for the first, after writing the short body for the second.
    "/invalid-value": (200, [(b"x-custom", b"line\x01break")], b"{}"),
    "/wrong-length": (200, [(b"content-length", b"9")], b"{}"),
}


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await read_body(scope, receive, 2**20)
    status, headers, body = RESPONSES[scope["path"]]
    await send_response(send, status, list(headers), body, scope)


class ThreadedServer:
    """A uvicorn server on a free loopback port, run in a thread of its own."""

    def __init__(self, protocol: type[Any]) -> None:
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=0,
            http=protocol,
            loop="uvloop",
            lifespan="off",
            access_log=False,
            server_header=False,
            log_config=None,
            log_level="critical",
            timeout_keep_alive=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets
        return int(sockets[0].getsockname()[1])


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    limits = RequestLimits()
    with (
        ThreadedServer(http_protocol(limits)) as one_write,
        ThreadedServer(guarded_protocol(limits)) as two_messages,
    ):
        yield one_write, two_messages


def request(path: str, method: str = "POST", version: str = "1.1", extra: str = "") -> bytes:
    body = b"[[5.1, 3.5, 1.4, 0.2]]" if method == "POST" else b""
    head = (
        f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def exchange(port: int, requests: list[bytes], together: bool = False) -> bytes:
    """Send ``requests``, reading each response before the next; return every byte read.

    With ``together`` all requests go in one write (pipelined). The client
    then half-closes, and reads on until the server closes the connection, so
    the bytes read do not depend on how the responses were split into packets.
    """
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if together:
            sock.sendall(b"".join(requests))
        for raw in requests:
            if not together:
                sock.sendall(raw)
            response = read_response(sock, head_only=raw.startswith(b"HEAD "))
            received += response
            if not response or b"\r\nconnection: close\r\n" in response:
                break
        # The server may have closed the connection already.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def read_response(sock: socket.socket, head_only: bool) -> bytes:
    """Read one response framed by Content-Length, and any 100 Continue before it."""
    interim = b""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return interim + data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 100 "):
            break
        interim += head + b"\r\n\r\n"
        data = body
    match = re.search(rb"\r\ncontent-length: (\d+)", head)
    length = 0 if head_only or match is None else int(match.group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return interim + head + b"\r\n\r\n" + body


def count_final_responses(data: bytes) -> int:
    return len(re.findall(rb"HTTP/1\.1 [2-5]\d\d ", data))


def same_apart_from_date(first: bytes, second: bytes) -> tuple[bytes, bytes]:
    # Each server stamps its own Date header once a second.
    pattern = rb"\r\ndate: [^\r]*\r\n"
    return re.sub(pattern, b"\r\ndate: -\r\n", first), re.sub(pattern, b"\r\ndate: -\r\n", second)


@pytest.mark.parametrize("path", sorted(RESPONSES))
def test_response_bytes_match_uvicorn(
    servers: tuple[ThreadedServer, ThreadedServer], path: str
) -> None:
    one_write, two_messages = servers
    rejected = path == "/invalid-value"

    fast = exchange(one_write.port, [request(path), request(path)])
    plain = exchange(two_messages.port, [request(path), request(path)])

    fast, plain = same_apart_from_date(fast, plain)
    assert fast == plain
    assert fast.startswith(b"HTTP/1.1 ") != rejected


@pytest.mark.parametrize(
    ("case", "requests", "responses"),
    [
        ("keep-alive", [request("/json"), request("/error"), request("/empty")], 3),
        ("head", [request("/json", method="HEAD"), request("/json")], 2),
        ("http/1.0", [request("/json", version="1.0")], 1),
        ("connection close", [request("/json", extra="Connection: close\r\n")], 1),
        ("expect 100-continue", [request("/json", extra="Expect: 100-continue\r\n")], 1),
    ],
)
def test_request_kinds_match_uvicorn(
    servers: tuple[ThreadedServer, ThreadedServer],
    case: str,
    requests: list[bytes],
    responses: int,
) -> None:
    one_write, two_messages = servers

    fast = exchange(one_write.port, requests)
    plain = exchange(two_messages.port, requests)

    fast, plain = same_apart_from_date(fast, plain)
    assert fast == plain, case
    assert count_final_responses(fast) == responses, case


def test_pipelined_requests_match_uvicorn(
    servers: tuple[ThreadedServer, ThreadedServer],
) -> None:
    one_write, two_messages = servers
    # The last request closes the connection. After pipelined requests, both
    # servers ignored the client's half-close and closed only at the
    # keep-alive timeout.
    last = request("/empty", extra="Connection: close\r\n")
    requests = [request("/json"), request("/error"), request("/large"), last]

    fast = exchange(one_write.port, requests, together=True)
    plain = exchange(two_messages.port, requests, together=True)

    fast, plain = same_apart_from_date(fast, plain)
    assert fast == plain
    assert count_final_responses(fast) == len(requests)


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        addresses = {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}
        return addresses.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_whole_response_is_one_write() -> None:
    async def serve_one() -> RecordingTransport:
        protocol_class = http_protocol(RequestLimits())
        config = Config(application, log_config=None, access_log=False, server_header=False)
        protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(request("/json"))
        for _ in range(5):
            await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(serve_one())

    assert len(transport.writes) == 1
    assert transport.writes[0] == (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"x-amzn-invoked-production-variant: AllTraffic\r\n"
        b"x-amzn-requestid: 0b7d6a3e-5a4c-4a55-9f57-5a9b0c6a1d2e\r\n"
        b"content-length: 3\r\n\r\n[0]"
    )
