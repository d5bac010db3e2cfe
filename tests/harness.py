"""A real ``sageport serve`` on a free loopback port, and real clients pointed at it.

Clients get their endpoint the way users set it, through AWS_ENDPOINT_URL, with
throwaway keys and no AWS config files, so nothing ever reaches AWS or an
instance metadata address.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

from sageport.cli import EXIT_CANNOT_LISTEN

REPO = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 60.0
# Starts of a server whose port another process took in the meantime.
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_environment(url: str) -> dict[str, str]:
    """Environment for boto3 and the AWS CLI: our URL, fake keys, no AWS files."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key != "SAGEPORT_DATA_DIR"
    }
    environment.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="AKIDSAGEPORTTEST",
        AWS_SECRET_ACCESS_KEY="sageport-test-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return environment


@dataclass
class Server:
    """A ``sageport serve`` child process and the directory it keeps its data in."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    # More `sageport serve` options, e.g. ["--max-queued-requests", "0"].
    extra_args: list[str] = field(default_factory=list)
    # More server environment variables, e.g. {"SAGEPORT_ACCESS_KEYS": "..."}.
    extra_environment: dict[str, str] = field(default_factory=dict)
    # AWS_* variables that replace the throwaway keys in client() and aws(),
    # e.g. {"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}.
    client_keys: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers on its own port.

        The port was free when it was picked, but on a busy machine another
        process may bind it before the server does. Such a server exits, and
        it is started again on a new port, with the clients made anew.
        """
        for _ in range(PORT_ATTEMPTS):
            if self._start_on_port():
                return
            self.port = free_port()
            self._clients.clear()
        raise RuntimeError(f"sageport serve found no free port in {PORT_ATTEMPTS} tries")

    def _start_on_port(self) -> bool:
        """Start the server on ``self.port``; return False if that port was taken."""
        self.log_path = self.data_dir.parent / f"server-{self.port}-{time.time_ns()}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sageport",
                "serve",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "debug",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=client_environment(self.url) | self.extra_environment,
        )
        log.close()
        # Until the server logs that it listens, another process may hold the port.
        listening = f"Listening on {self.url}"
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.output()
                if self.process.returncode == EXIT_CANNOT_LISTEN and "already in use" in output:
                    return False
                raise RuntimeError(f"sageport serve exited early:\n{output}")
            if listening in self.output():
                try:
                    with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as response:
                        if response.status == 200:
                            return True
                except OSError:
                    pass
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise RuntimeError(
            f"sageport serve did not answer within {SERVER_START_TIMEOUT} s:\n{self.output()}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def instance_pids(self) -> list[int]:
        """Return the PIDs of this server's live instance processes, in order.

        A killed instance stays a zombie until the server reaps it, and may
        vanish between listing and reading its command line; neither counts.
        """
        assert self.process is not None
        pids = []
        for child in psutil.Process(self.process.pid).children():
            try:
                if "sageport.runtime" in " ".join(child.cmdline()):
                    pids.append(child.pid)
            except psutil.NoSuchProcess:  # ZombieProcess is a NoSuchProcess
                continue
        return sorted(pids)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, service: str, **config: Any) -> Any:
        """Return a boto3 client for this server; plain clients are made once and reused."""
        if not config:
            cached = self._clients.get(service)
            if cached is None:
                cached = self._clients[service] = self._new_client(service)
            return cached
        return self._new_client(service, **config)

    def _new_client(self, service: str, **config: Any) -> Any:
        environment = client_environment(self.url) | self.client_keys
        return boto3.session.Session(
            aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=environment.get("AWS_SESSION_TOKEN"),
            region_name="us-east-1",
        ).client(
            service,
            endpoint_url=self.url,
            config=Config(retries={"total_max_attempts": 1}, **config),
        )

    def aws(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real AWS CLI from the project's environment."""
        aws = Path(sys.executable).parent / "aws"
        return subprocess.run(
            [str(aws), *args],
            env=client_environment(self.url) | self.client_keys,
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )

    def sageport(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sageport", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )


def wait_until(condition: Callable[[], object], timeout: float = 30) -> bool:
    """Poll ``condition`` every 50 ms; return whether it held within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def started(server: Server) -> Iterator[Server]:
    """Start ``server``, yield it, then stop it if it is still running; for fixtures."""
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()


# Appends a line to the file that the request body names, then keeps its
# worker busy until the test creates that file's ".go" file (30 s at most), so
# that further requests queue in the server however slowly they arrive.
COUNTING_MODEL = """
import os
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    path = data.decode()
    with open(path, "a") as calls:
        calls.write("call\\n")
    deadline = time.monotonic() + 30
    while not os.path.exists(path + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)
    return b"done", "text/plain"
"""

# What the server logs, at debug level, for an invocation whose caller left
# before it reached an instance.
DROPPED = "its caller disconnected before it reached an instance"


def send_and_hang_up(
    server: Server, path: str, body: bytes, headers: dict[str, str], count: int
) -> None:
    """Send ``count`` raw POST requests, each closing its connection without reading a byte."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{head}"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request)


def write_model(directory: Path, inference_py: str, files: dict[str, bytes] | None = None) -> Path:
    """Package ``code/inference.py`` (and extra files) as ``model.tar.gz``; return its path."""
    source = directory / "source"
    (source / "code").mkdir(parents=True, exist_ok=True)
    (source / "code" / "inference.py").write_text(inference_py)
    for name, content in (files or {}).items():
        (source / name).write_bytes(content)
    archive = directory / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return archive


def deploy(
    server: Server,
    name: str,
    model_data: str,
    *,
    environment: dict[str, str] | None = None,
    instance_count: int = 1,
    wait: bool = True,
) -> dict[str, Any]:
    """Create model, endpoint config and endpoint with boto3; wait for InService if asked."""
    create_config(server, name, model_data, environment=environment, instance_count=instance_count)
    sagemaker = server.client("sagemaker")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        return wait_for_status(server, name, {"InService", "Failed"})
    return dict(sagemaker.describe_endpoint(EndpointName=name))


def create_config(
    server: Server,
    name: str,
    model_data: str,
    *,
    environment: dict[str, str] | None = None,
    instance_count: int = 1,
) -> None:
    """Create a model and an endpoint config with one variant, both called ``name``."""
    sagemaker = server.client("sagemaker")
    container: dict[str, Any] = {"Image": "sageport/sklearn", "ModelDataUrl": model_data}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer=container,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": instance_count,
                "InstanceType": "ml.m5.large",
            }
        ],
    )


def wait_for_status(
    server: Server, name: str, statuses: set[str], timeout: float = 60
) -> dict[str, Any]:
    sagemaker = server.client("sagemaker")
    deadline = time.monotonic() + timeout
    while True:
        description = dict(sagemaker.describe_endpoint(EndpointName=name))
        if description["EndpointStatus"] in statuses or time.monotonic() > deadline:
            return description
        time.sleep(0.05)


@contextlib.contextmanager
def trickling_http_server(interval: float, count: int) -> Iterator[str]:
    """Serve a loopback URL that promises 10 MB but sends one byte every ``interval`` s.

    It sends at most ``count`` bytes, so a client that never gives up still
    finishes. Yields the URL of model.tar.gz on it.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "10000000")
            self.end_headers()
            for _ in range(count):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(interval)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}/model.tar.gz"
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)
