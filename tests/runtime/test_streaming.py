"""Handlers that return iterators: chunked responses from a real runtime process."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from tests.runtime.conftest import RuntimeProcess, StartRuntime, exchange, write_model

STREAMING_MODEL = """
import os
import time


def model_fn(model_dir):
    return None


def wait_for(path):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


def transform_fn(model, data, content_type, accept, context):
    case, _, argument = data.decode().partition(" ")

    def parts():
        try:
            if case == "fail-first":
                raise RuntimeError("no first part")
            if case == "bad-first":
                yield 42
            yield "one"
            yield b""
            yield b"two"
            if case == "fail-later":
                raise RuntimeError("no third part")
            if case == "bad-later":
                yield 3.5
            if case == "gate":
                wait_for(argument)
                for _ in range(100):
                    yield b"x" * 65536
            yield bytearray(b"three")
        finally:
            if case == "gate":
                open(argument + ".closed", "w").close()

    if case == "empty":
        return iter(()), "text/plain"
    if case == "bad-header":
        context.set_response_header(0, "X-Mark", "✓")
    else:
        context.response_custom_attributes = "streamed=yes"
    return parts(), "text/event-stream"
"""


@pytest.fixture
def streaming(start_runtime: StartRuntime, tmp_path: Path) -> RuntimeProcess:
    return start_runtime(write_model(tmp_path, STREAMING_MODEL))


def raw_exchange(runtime: RuntimeProcess, body: bytes) -> bytes:
    """Send one request on a new connection and read until the runtime closes it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(runtime.socket_path))
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
        return bytes(received)


def test_iterator_is_sent_chunked(streaming: RuntimeProcess) -> None:
    response = raw_exchange(streaming, b"plain")

    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"\r\nContent-Type: text/event-stream" in head
    assert b"\r\nX-Amzn-SageMaker-Custom-Attributes: streamed=yes" in head
    assert b"Content-Length" not in head
    # One chunk per non-empty item, then the terminating chunk.
    assert body == b"3\r\none\r\n3\r\ntwo\r\n5\r\nthree\r\n0\r\n\r\n"


def test_error_mid_stream_leaves_body_incomplete(streaming: RuntimeProcess) -> None:
    response = raw_exchange(streaming, b"fail-later")

    _, _, body = response.partition(b"\r\n\r\n")
    assert body == b"3\r\none\r\n3\r\ntwo\r\n"
    assert "RuntimeError: no third part" in streaming.log()


def test_bad_item_mid_stream_leaves_body_incomplete(streaming: RuntimeProcess) -> None:
    response = raw_exchange(streaming, b"bad-later")

    _, _, body = response.partition(b"\r\n\r\n")
    assert body == b"3\r\none\r\n3\r\ntwo\r\n"
    assert "the response stream yielded float" in streaming.log()


def test_http_client_sees_incomplete_stream(streaming: RuntimeProcess) -> None:
    conn = streaming.connect()
    try:
        conn.request("POST", "/invocations", body=b"fail-later")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()


def test_error_before_first_item_is_500(streaming: RuntimeProcess) -> None:
    reply = streaming.request("POST", "/invocations", b"fail-first")

    assert reply.status == 500
    assert reply.body.startswith(b"RuntimeError: no first part\n\nTraceback")
    assert "transfer-encoding" not in reply.headers


def test_bad_first_item_is_500(streaming: RuntimeProcess) -> None:
    reply = streaming.request("POST", "/invocations", b"bad-first")

    assert reply.status == 500
    assert reply.body == b"the response stream yielded int; yield str, bytes or bytearray"


def test_empty_iterator_is_empty_body(streaming: RuntimeProcess) -> None:
    reply = streaming.request("POST", "/invocations", b"empty")

    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["content-length"] == "0"
    assert reply.content_type == "text/plain"


def test_connection_is_reused_after_stream(streaming: RuntimeProcess) -> None:
    conn = streaming.connect()
    try:
        first = exchange(conn, "POST", "/invocations", b"plain")
        second = exchange(conn, "POST", "/invocations", b"plain")
    finally:
        conn.close()

    assert first.body == b"onetwothree"
    assert first.headers["transfer-encoding"] == "chunked"
    assert second.body == b"onetwothree"


def test_runtime_serves_after_aborted_stream(streaming: RuntimeProcess) -> None:
    raw_exchange(streaming, b"fail-later")

    reply = streaming.request("POST", "/invocations", b"plain")
    assert reply.status == 200
    assert reply.body == b"onetwothree"


def test_client_leaving_closes_generator(streaming: RuntimeProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(streaming.socket_path))
        body = b"gate " + str(gate).encode()
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        received = b""
        while b"3\r\none\r\n" not in received and (chunk := sock.recv(65536)):
            received += chunk
        assert b"\r\n\r\n3\r\none\r\n" in received

    gate.touch()
    closed = Path(f"{gate}.closed")
    deadline = time.monotonic() + 30
    while not closed.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert closed.exists()

    reply = streaming.request("POST", "/invocations", b"plain")
    assert reply.body == b"onetwothree"


def test_bad_header_ends_model_call(start_runtime: StartRuntime, tmp_path: Path) -> None:
    runtime = start_runtime(
        write_model(tmp_path, STREAMING_MODEL), env={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}
    )

    reply = runtime.request("POST", "/invocations", b"bad-header")
    # Past the timeout, a worker still marked busy would be killed.
    time.sleep(1.5)
    after = runtime.request("POST", "/invocations", b"plain")

    assert reply.status == 500
    assert reply.body == b"the handler set a response header that is not Latin-1 text"
    assert after.body == b"onetwothree"
    assert "killing it" not in runtime.log()
