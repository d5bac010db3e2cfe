"""Requests against a real runtime process on a Unix socket."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.runtime.conftest import RuntimeProcess, StartRuntime, exchange, write_model

IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture
def iris(start_runtime: StartRuntime, iris_model_dir: Path) -> RuntimeProcess:
    return start_runtime(iris_model_dir)


def latency_of(headers: dict[str, str]) -> int:
    return int(headers["x-sageport-model-latency-us"])


def test_ping(iris: RuntimeProcess) -> None:
    reply = iris.request("GET", "/ping")
    assert reply.status == 200
    assert reply.body == b""


def test_iris_json(iris: RuntimeProcess) -> None:
    body = json.dumps(IRIS_ROWS).encode()
    reply = iris.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert reply.body == b"[0, 2]"
    assert latency_of(reply.headers) >= 0


def test_iris_csv(iris: RuntimeProcess) -> None:
    headers = {"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"}
    reply = iris.request("POST", "/invocations", b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", headers)
    assert reply.status == 200
    assert reply.content_type == "text/csv"
    assert reply.body == b"0\n2\n"


def test_iris_npy(iris: RuntimeProcess) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(IRIS_ROWS))
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    reply = iris.request("POST", "/invocations", buffer.getvalue(), headers)
    assert reply.status == 200
    assert reply.content_type == "application/x-npy"
    assert np.load(io.BytesIO(reply.body)).tolist() == [0, 2]


def test_bad_json_is_400(iris: RuntimeProcess) -> None:
    reply = iris.request("POST", "/invocations", b"[[1,", {"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.content_type == "text/plain; charset=utf-8"
    assert reply.body.startswith(b"invalid JSON body: Expecting value")


def test_unsupported_content_type_is_415(iris: RuntimeProcess) -> None:
    reply = iris.request("POST", "/invocations", b"x", {"Content-Type": "image/png"})
    assert reply.status == 415
    assert reply.body == (
        b"unsupported Content-Type 'image/png': the default input_fn decodes application/json, "
        b"text/csv, application/x-npy; define input_fn in inference.py to accept other types"
    )


def test_unsupported_accept_is_415(iris: RuntimeProcess) -> None:
    headers = {"Content-Type": "application/json", "Accept": "image/png"}
    reply = iris.request("POST", "/invocations", b"[[1, 2, 3, 4]]", headers)
    assert reply.status == 415
    assert reply.body.startswith(b"unsupported Accept 'image/png'")


def test_unknown_path_is_404(iris: RuntimeProcess) -> None:
    reply = iris.request("GET", "/models")
    assert reply.status == 404
    assert reply.body == b"/models not found: the runtime serves GET /ping and POST /invocations"


def test_wrong_method_is_405(iris: RuntimeProcess) -> None:
    reply = iris.request("GET", "/invocations")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST"
    assert iris.request("POST", "/ping", b"").status == 405


def test_keep_alive_many_requests(iris: RuntimeProcess) -> None:
    conn = iris.connect()
    try:
        for _ in range(200):
            reply = exchange(
                conn,
                "POST",
                "/invocations",
                b"[[5.1, 3.5, 1.4, 0.2]]",
                {"Content-Type": "application/json"},
            )
            assert reply.status == 200
            assert reply.body == b"[0]"
        first_socket = conn.sock
        assert exchange(conn, "GET", "/ping").status == 200
        assert conn.sock is first_socket
    finally:
        conn.close()


def raw_exchange(runtime: RuntimeProcess, request: bytes) -> bytes:
    """Send raw bytes and read until the runtime closes the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(runtime.socket_path))
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_chunked_body_and_connection_close(iris: RuntimeProcess) -> None:
    body = b"[[5.1, 3.5, 1.4, 0.2]]"
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"%x\r\n%s\r\n" % (5, body[:5])
        + b"%x\r\n%s\r\n" % (len(body) - 5, body[5:])
        + b"0\r\n\r\n"
    )
    response = raw_exchange(iris, request)
    head, _, payload = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/json" in lines
    assert b"Content-Length: 3" in lines
    assert b"Connection: close" in lines
    assert payload == b"[0]"


def test_pipelined_requests(iris: RuntimeProcess) -> None:
    ping = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    response = raw_exchange(iris, ping + ping + last)
    assert response.count(b"HTTP/1.1 200 OK\r\n") == 3


def test_malformed_request_is_400(iris: RuntimeProcess) -> None:
    response = raw_exchange(iris, b"NOT HTTP AT ALL\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in response


def test_expect_continue(iris: RuntimeProcess) -> None:
    body = b"[[5.1, 3.5, 1.4, 0.2]]"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(iris.socket_path))
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"\r\n\r\n[0]")


HANDLERS = """
import os


class Failure(Exception):
    status_code = 422


def model_fn(model_dir):
    return "model"


def transform_fn(model, input_data, content_type, accept, context):
    command = input_data if isinstance(input_data, str) else input_data.decode()
    if command == "tuple":
        return "plain text", "text/plain"
    if command == "accept":
        return b"as accepted"
    if command == "context":
        context.response_custom_attributes = "echo=" + (context.custom_attributes or "")
        context.set_response_header(0, "X-Model-Version", "7")
        return context.inference_id + " " + context.get_request_header(0, "X-Trace"), "text/plain"
    if command == "raise":
        raise ValueError("the input is wrong")
    if command == "status":
        raise Failure("the label set is unknown")
    if command == "pid":
        return str(os.getpid()), "text/plain"
    return "unknown command", "text/plain"
"""


@pytest.fixture
def handlers(start_runtime: StartRuntime, tmp_path: Path) -> RuntimeProcess:
    return start_runtime(write_model(tmp_path, HANDLERS))


def invoke(runtime: RuntimeProcess, command: str, **headers: str) -> tuple[int, str | None, bytes]:
    all_headers = {"Content-Type": "application/octet-stream", **headers}
    reply = runtime.request("POST", "/invocations", command.encode(), all_headers)
    return reply.status, reply.content_type, reply.body


def test_transform_fn_tuple(handlers: RuntimeProcess) -> None:
    assert invoke(handlers, "tuple") == (200, "text/plain", b"plain text")


def test_transform_fn_without_type_uses_accept(handlers: RuntimeProcess) -> None:
    assert invoke(handlers, "accept", Accept="text/csv") == (200, "text/csv", b"as accepted")
    assert invoke(handlers, "accept") == (200, "application/json", b"as accepted")


def test_context_headers(handlers: RuntimeProcess) -> None:
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Amzn-SageMaker-Custom-Attributes": "trace=1",
        "X-Amzn-SageMaker-Inference-Id": "inf-9",
        "X-Trace": "t-1",
    }
    reply = handlers.request("POST", "/invocations", b"context", headers)
    assert reply.status == 200
    assert reply.content_type == "text/plain"
    assert reply.body == b"inf-9 t-1"
    assert reply.headers["x-amzn-sagemaker-custom-attributes"] == "echo=trace=1"
    assert reply.headers["x-model-version"] == "7"


def test_handler_error_is_500_with_traceback(handlers: RuntimeProcess) -> None:
    status, content_type, body = invoke(handlers, "raise")
    assert status == 500
    assert content_type == "text/plain; charset=utf-8"
    text = body.decode()
    assert text.startswith("ValueError: the input is wrong\n\nTraceback (most recent call last):\n")
    assert 'raise ValueError("the input is wrong")' in text
    assert invoke(handlers, "tuple") == (200, "text/plain", b"plain text")


def test_handler_status_code_attribute(handlers: RuntimeProcess) -> None:
    assert invoke(handlers, "status") == (
        422,
        "text/plain; charset=utf-8",
        b"the label set is unknown",
    )


def test_large_body_round_trip(start_runtime: StartRuntime, tmp_path: Path) -> None:
    source = """
    def model_fn(model_dir): return None
    def transform_fn(model, data, content_type, accept):
        return data[::-1], "application/octet-stream"
    """
    runtime = start_runtime(write_model(tmp_path, source))
    body = bytes(range(256)) * 16 * 1024
    reply = runtime.request(
        "POST", "/invocations", body, {"Content-Type": "application/octet-stream"}
    )
    assert reply.status == 200
    assert reply.body == body[::-1]


def test_body_over_limit_is_413(start_runtime: StartRuntime, tmp_path: Path) -> None:
    source = """
    def model_fn(model_dir): return None
    def transform_fn(model, data, content_type, accept): return data
    """
    runtime = start_runtime(write_model(tmp_path, source), {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"})
    body = b"x" * (1024 * 1024 + 1)
    reply = runtime.request(
        "POST", "/invocations", body, {"Content-Type": "application/octet-stream"}
    )
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert reply.body == b"the request body is larger than SAGEMAKER_MAX_PAYLOAD_IN_MB"
