"""Fixtures that start ``python -m sageport.runtime`` on a Unix socket and talk HTTP to it."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 40.0


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP/1.1 client connection over a Unix socket."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.socket_path))
        self.sock = sock


@dataclass
class Reply:
    """A whole HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def exchange(
    conn: UnixHTTPConnection,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """Send one request on ``conn`` and read the whole response."""
    conn.request(method, path, body=body, headers=dict(headers or {}))
    response = conn.getresponse()
    payload = response.read()
    return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, payload)


@dataclass
class RuntimeProcess:
    """A runtime started by a test, stopped by its fixture."""

    process: subprocess.Popen[bytes]
    socket_path: Path
    failure_file: Path
    log_file: Path
    extra_pids: list[int] = field(default_factory=list)

    def connect(self, timeout: float = 30.0) -> UnixHTTPConnection:
        return UnixHTTPConnection(self.socket_path, timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request on a fresh connection."""
        conn = self.connect()
        try:
            return exchange(conn, method, path, body, headers)
        finally:
            conn.close()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_ready(self) -> None:
        """Wait until the socket accepts connections, or fail with the runtime's log."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"runtime exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.connect(str(self.socket_path))
                return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
        pytest.fail(f"runtime not ready after {START_TIMEOUT_SECONDS} s:\n{self.log()}")

    def wait_exit(self, timeout: float = START_TIMEOUT_SECONDS) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_SECONDS)
        for pid in self.extra_pids:
            kill_if_alive(pid)


StartRuntime = Callable[..., RuntimeProcess]


def kill_if_alive(pid: int) -> None:
    """SIGKILL ``pid`` if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def write_model(root: Path, source: str) -> Path:
    """Write a model directory whose code/inference.py contains ``source``; return the directory."""
    model_dir = root / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent(source))
    return model_dir


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths are limited to about 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="sprt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_runtime(socket_dir: Path) -> Iterator[StartRuntime]:
    """Return a function that starts a runtime for a model directory."""
    started: list[RuntimeProcess] = []

    def start(
        model_dir: Path,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> RuntimeProcess:
        index = len(started)
        socket_path = socket_dir / f"rt{index}.sock"
        failure_file = socket_dir / f"failure{index}.txt"
        log_file = socket_dir / f"runtime{index}.log"
        command = [
            sys.executable,
            "-m",
            "sageport.runtime",
            "--model-dir",
            str(model_dir),
            "--unix-socket",
            str(socket_path),
            "--failure-file",
            str(failure_file),
            *extra_args,
        ]
        environment = {**os.environ, **(env or {})}
        with log_file.open("wb") as log:
            process = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        runtime = RuntimeProcess(process, socket_path, failure_file, log_file)
        started.append(runtime)
        if wait:
            runtime.wait_ready()
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture(scope="session")
def iris_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn LogisticRegression trained on iris, served with only model_fn."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    model_dir = write_model(
        tmp_path_factory.mktemp("iris"),
        """
        import os

        import joblib


        def model_fn(model_dir):
            return joblib.load(os.path.join(model_dir, "model.joblib"))
        """,
    )
    joblib.dump(model, model_dir / "model.joblib")
    return model_dir
