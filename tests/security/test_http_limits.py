"""Raw-socket clients that send too much, too slowly or too little, against a real server."""

from __future__ import annotations

import select
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.harness import Server

TIMEOUT = 1.0
BODY_DEADLINE = 2.5


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("limits") / "data",
        extra_args=[
            "--request-header-timeout",
            str(TIMEOUT),
            "--request-body-timeout",
            str(TIMEOUT),
            "--request-body-deadline",
            str(BODY_DEADLINE),
        ],
    )
    server.start()
    yield server
    server.stop()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """Read one whole response framed by Content-Length, however the bytes arrive."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def still_serving(server: Server) -> bool:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
        return bool(response.status == 200)


def test_idle_connection_is_closed(limited_server: Server) -> None:
    # Timed from before connecting: the server's clock starts when it accepts,
    # so it cannot have started before this one, however late this thread runs.
    started = time.monotonic()
    with connect(limited_server) as sock:
        answer = read_all(sock)
        elapsed = time.monotonic() - started

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert elapsed > TIMEOUT * 0.8


def test_dribbled_headers_are_cut_off(limited_server: Server) -> None:
    with connect(limited_server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for index in range(20):
            time.sleep(TIMEOUT / 4)
            try:
                sock.sendall(f"X-Slow-{index}: a\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        answer = b"" if closed else read_all(sock)

    # Only the header timeout answers 408 or closes a request still sending headers.
    assert closed or answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert still_serving(limited_server)


def test_stalled_body_is_dropped(limited_server: Server) -> None:
    with connect(limited_server) as sock:
        # Timed from before sending: the server's clock starts when the bytes arrive.
        started = time.monotonic()
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: SageMaker.ListModels\r\n"
            b'Content-Type: application/x-amz-json-1.1\r\nContent-Length: 100\r\n\r\n{"a"'
        )
        answer = read_all(sock)
        elapsed = time.monotonic() - started

    assert answer == b""
    assert elapsed > TIMEOUT * 0.8
    assert still_serving(limited_server)
    assert "no request body bytes for 1 s" in limited_server.output()


def test_trickled_body_is_cut_off(limited_server: Server) -> None:
    sent = 0
    with connect(limited_server) as sock:
        sock.sendall(
            b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        # One byte every 0.4 s never lets the 1 s idle timeout fire; only the
        # whole-body deadline can end this. 100 bytes take 40 s at most.
        for _ in range(100):
            readable, _, _ = select.select([sock], [], [], TIMEOUT * 0.4)
            if readable:
                break
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
        answer = read_all(sock)

    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b'"Message": "The request body did not arrive within 2.5 s."' in answer
    assert sent < 100
    assert still_serving(limited_server)


def test_truncated_body_is_dropped_quietly(limited_server: Server) -> None:
    with connect(limited_server) as sock:
        sock.sendall(
            b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: 1000\r\n\r\n"
            b"only part"
        )
        sock.shutdown(socket.SHUT_WR)
        read_all(sock)

    assert still_serving(limited_server)
    assert "Traceback" not in limited_server.output()


def test_oversized_headers_get_431(limited_server: Server) -> None:
    with connect(limited_server) as sock:
        sock.sendall(
            b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
        )
        answer = read_all(sock)

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"x-amzn-errortype: ValidationError\r\n" in answer
    assert b'"Message": "The request line and headers exceed 32768 bytes."' in answer


def test_endless_header_is_cut_off(limited_server: Server) -> None:
    sent = 0
    with connect(limited_server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nX-Big: ")
        try:
            for _ in range(1000):
                sock.sendall(b"a" * 4096)
                sent += 4096
            read_all(sock)
        except (BrokenPipeError, ConnectionResetError):
            # The server sent 431 and closed while this client was still
            # sending, so the kernel reset the connection.
            pass

    assert sent < 1000 * 4096
    assert still_serving(limited_server)
    assert "The request line and headers exceed 32768 bytes" in limited_server.output()


def test_too_many_headers_get_431(limited_server: Server) -> None:
    headers = b"".join(f"X-H{index}: v\r\n".encode() for index in range(150))
    with connect(limited_server) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        answer = read_all(sock)

    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b'"Message": "The request has more than 100 headers."' in answer


def test_keep_alive_requests_still_work(limited_server: Server) -> None:
    request = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(limited_server) as sock:
        sock.sendall(request)
        first = read_response(sock)
        time.sleep(TIMEOUT * 0.5)
        sock.sendall(request)
        second = read_response(sock)

    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert second.startswith(b"HTTP/1.1 200 OK\r\n")
