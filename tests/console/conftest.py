"""Fixtures for the console tests: a server that allows two loopback test targets,
a model that succeeds, fails, sleeps or returns 20 MB, and a recording TCP listener."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sageport.auth.keys import AccessKey, create_key, credentials_path
from sageport.console.signin import TOKEN_FILE
from tests.harness import Server, deploy, write_model

# One model for every behaviour the tests need, chosen by the request body.
# Every invocation appends a line to $CALLS_FILE, so a test can prove that a
# request never reached the model.
BEHAVIOUR_MODEL = """
import json
import os
import time

def model_fn(model_dir):
    return model_dir

def transform_fn(model, body, content_type, accept):
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write("call\\n")
    data = json.loads(body) if content_type == "application/json" else {"text": body.decode()}
    action = data.get("action") if isinstance(data, dict) else None
    if action == "fail":
        raise ValueError("the model rejects this input: fail was requested")
    if action == "sleep":
        time.sleep(data["seconds"])
    if action == "big":
        return json.dumps({"blob": "x" * data["size"]}), "application/json"
    if action == "image":
        with open(os.path.join(model, "pixel.png"), "rb") as image:
            return image.read(), "image/png"
    if action == "binary":
        return bytes(range(256)) * 4, "application/octet-stream"
    if action == "csv":
        return "label,score\\nsetosa,0.97\\nvirginica,0.02\\n", "text/csv"
    return json.dumps({"echo": data, "content_type": content_type}), "application/json"
"""


def png_image(width: int, height: int) -> bytes:
    """Encode a solid orange RGB image as PNG (the format of RFC 2083)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", checksum)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x99\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class ConnectionRecorder:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()


class TargetHandler(BaseHTTPRequestHandler):
    """A custom test target: records each request, then responds by path."""

    server: TargetServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers.items()), "body": body}
        )
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/huge":
            # 26 MiB, one more than a real-time endpoint may return.
            self._answer(200, b"x" * (26 * 2**20), "application/octet-stream")
            return
        payload = json.dumps({"path": self.path, "body": body.decode(errors="replace")}).encode()
        self._answer(200, payload, "application/json")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Amzn-SageMaker-Custom-Attributes", "from-target")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


class TargetServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that the console server is allowed to reach."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TargetHandler)
        self.requests: list[dict[str, object]] = []
        self.redirect_to = ""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def target_server(recorder: ConnectionRecorder) -> Iterator[TargetServer]:
    server = TargetServer()
    server.redirect_to = recorder.origin + "/stolen"
    yield server
    server.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[ConnectionRecorder]:
    listener = ConnectionRecorder()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def allowed_origin() -> Iterator[str]:
    """An origin the console server allows, on a loopback port that nothing listens on.

    The socket stays bound without listening, so connections to the port are
    refused and no other process can take it while the tests run.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def console_server(
    tmp_path_factory: pytest.TempPathFactory, allowed_origin: str, target_server: TargetServer
) -> Iterator[Server]:
    """A server that allows two custom test targets: ``allowed_origin`` and the target server."""
    with pytest.MonkeyPatch.context() as patch:
        allowed = f"{allowed_origin} {target_server.origin}"
        patch.setitem(os.environ, "SAGEPORT_ALLOW_TEST_TARGET", allowed)
        instance = Server(tmp_path_factory.mktemp("console") / "data")
        instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def calls_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calls") / "calls.txt"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def behaviour_endpoint(
    console_server: Server, calls_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    archive = write_model(
        tmp_path_factory.mktemp("behaviour"),
        BEHAVIOUR_MODEL,
        {"pixel.png": png_image(24, 16)},
    )
    description = deploy(
        console_server, "behaviour", str(archive), environment={"CALLS_FILE": str(calls_file)}
    )
    assert description["EndpointStatus"] == "InService", description
    return "behaviour"


@dataclass
class SignInServer:
    """A server with --auth sigv4, the access key it accepts, and its console token."""

    server: Server
    key: AccessKey
    console_token: str
    calls_file: Path
    endpoint: str


@pytest.fixture(scope="module")
def signin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignInServer]:
    """A server with --auth sigv4, one access key and the behaviour model deployed."""
    root = tmp_path_factory.mktemp("signin")
    data_dir = root / "data"
    key = create_key(credentials_path(data_dir), "alice")
    calls_file = root / "calls.txt"
    calls_file.write_text("")
    instance = Server(
        data_dir,
        extra_args=["--auth", "sigv4"],
        client_keys={
            "AWS_ACCESS_KEY_ID": key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
        },
    )
    instance.start()
    archive = write_model(root / "model", BEHAVIOUR_MODEL)
    description = deploy(
        instance, "guarded", str(archive), environment={"CALLS_FILE": str(calls_file)}
    )
    assert description["EndpointStatus"] == "InService", description
    token = (data_dir / TOKEN_FILE).read_text().strip()
    yield SignInServer(instance, key, token, calls_file, "guarded")
    instance.stop()
