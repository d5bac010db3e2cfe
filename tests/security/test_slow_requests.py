"""Raw-socket clients that send a body slowly, or not at all, to a server with --auth sigv4."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Iterator

import pytest

from tests.auth.signing import signed_request
from tests.auth.test_server import SIGNATURE_MISMATCH, create_key
from tests.harness import Server


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("slow") / "data"
    create_key(data_dir)
    instance = Server(data_dir)
    instance.start()
    yield instance
    instance.stop()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def split_response(answer: bytes) -> tuple[bytes, dict[bytes, bytes], dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, json.loads(body)


@pytest.mark.parametrize(
    ("path", "extra", "status", "code", "message"),
    [
        (
            "/",
            b"X-Amz-Target: SageMaker.ListModels\r\n",
            b"403",
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        ),
        (
            "/endpoints/x/invocations",
            b"",
            b"403",
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        ),
        (
            "/endpoints/x/invocations",
            b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20200101/us-east-1/"
            b"sagemaker/aws4_request, SignedHeaders=host;x-amz-date, Signature=00\r\n"
            b"X-Amz-Date: 20200101T000000Z\r\n",
            b"400",
            "InvalidSignatureException",
            "Signature expired: 20200101T000000Z is now earlier than",
        ),
        (
            "/",
            b"X-Amz-Target: SageMaker.ListModels\r\nAuthorization: Basic YTpi\r\n",
            b"400",
            "IncompleteSignatureException",
            "Unsupported Authorization scheme 'Basic'",
        ),
    ],
    ids=["control-unsigned", "runtime-unsigned", "runtime-expired", "control-basic"],
)
def test_bad_authorization_is_rejected_before_body(
    signed_server: Server, path: str, extra: bytes, status: bytes, code: str, message: str
) -> None:
    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{signed_server.port}\r\n".encode()
            + extra
            + b"Content-Length: 1000000\r\n\r\n"
        )
        # No body byte is ever sent; the socket timeout stops a server that waits.
        answer = read_until_closed(sock)

    status_line, headers, body = split_response(answer)
    assert status_line.split(b" ")[1] == status
    assert headers[b"connection"] == b"close"
    error_type = headers.get(b"x-amzn-errortype", b"").decode()
    assert error_type.split(":")[0] == code
    assert str(body["Message"]).startswith(message)


def test_unknown_key_waits_for_body(signed_server: Server) -> None:
    # Rejecting an unknown key before its body, but a known one only after,
    # would tell a caller which key ids exist.
    request = signed_request(
        "sagemaker",
        lambda client: client.list_models(),
        "AKSPUNKNOWNKEY000000",
        "unknown-secret-0123456789abcdef",
    )
    head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{signed_server.port}\r\n".encode()
    for name, value in request.scope["headers"]:
        if name not in (b"host", b"content-length"):
            head += name + b": " + value + b"\r\n"
    head += f"Content-Length: {len(request.body)}\r\n\r\n".encode()

    with socket.create_connection(("127.0.0.1", signed_server.port), timeout=10) as sock:
        sock.sendall(head)
        readable_before_body, _, _ = select.select([sock], [], [], 1.0)
        sock.sendall(request.body)
        sock.shutdown(socket.SHUT_WR)
        answer = read_until_closed(sock)

    status_line, headers, body = split_response(answer)
    assert readable_before_body == []
    assert status_line.split(b" ")[1] == b"400"
    assert headers[b"x-amzn-errortype"] == b"InvalidSignatureException"
    assert body["Message"] == SIGNATURE_MISMATCH
