"""Shared pieces of the benchmarks: the model, pinned servers, Sageport deploys and wrk runs.

Every server the benchmarks start listens on 127.0.0.1 and runs in its own
process group, so stopping it by the group id of the process we started also
stops the workers it forked. Servers under test are pinned to ``SERVER_CPU``
and the load generator to ``LOAD_CPU`` with ``taskset``; child processes
inherit the affinity.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
EXAMPLE = REPO / "examples" / "sklearn-iris"
CACHE_DIR = Path(os.environ.get("SAGEPORT_BENCH_CACHE", Path.home() / ".cache" / "sageport-bench"))
HOST = "127.0.0.1"
SERVER_CPU = 0
LOAD_CPU = 1
WRK_SCRIPT = BENCHMARKS / "wrk_post.lua"
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 20.0
ENDPOINT_NAME = "iris"

# Peers send usage statistics unless these are set, and this machine reaches no such host.
QUIET_ENVIRONMENT = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "KSERVE_TELEMETRY_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def new_run_dir(prefix: str) -> Path:
    """Create and print a run directory named ``prefix`` and the time, under the cache."""
    run_dir = CACHE_DIR / "runs" / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    print(f"Run directory: {run_dir}")
    return run_dir


def require_tools(*names: str) -> None:
    """Exit with a message naming each missing program and how to install it."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(
            f"missing programs: {', '.join(missing)}. Install them first, e.g. "
            "`apt-get install -y wrk util-linux`."
        )
    if (os.cpu_count() or 1) < 2:
        sys.exit("the benchmarks pin the server and wrk to two different CPUs; this machine has 1")


# --- The model --------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """The example model, trained once per run, in the forms each server reads."""

    archive: Path
    model_dir: Path
    joblib_path: Path


def train_model(work_dir: Path) -> ModelFiles:
    """Train the example model into ``work_dir`` and unpack its archive beside it."""
    archive = work_dir / "model.tar.gz"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "--output", str(archive)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    model_dir = work_dir / "model"
    model_dir.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(model_dir, filter="data")
    return ModelFiles(archive, model_dir, model_dir / "model.joblib")


def payload_rows(count: int) -> list[list[float]]:
    """Return ``count`` iris flowers (four measurements each), cycling through the data set."""
    from sklearn.datasets import load_iris

    data = load_iris().data.tolist()
    return [[float(value) for value in data[index % len(data)]] for index in range(count)]


# --- Processes ----------------------------------------------------------------


@dataclass
class Started:
    """A server process we started, pinned to one CPU, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tree(self) -> list[psutil.Process]:
        """Return the process and all its descendants that are still alive."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """Return the user and system CPU time used so far by the live process tree."""
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def affinities(self) -> set[tuple[int, ...]]:
        found: set[tuple[int, ...]] = set()
        for process in self.tree():
            try:
                found.add(tuple(process.cpu_affinity() or []))
            except psutil.NoSuchProcess:
                continue
        return found

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Send SIGTERM to the process group we created, then SIGKILL after a grace period."""
        if self.process.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_SECONDS)
        # Workers that outlived their parent are still in its group.
        _signal_group(self.pid, signal.SIGKILL)


def _signal_group(group_id: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group_id, sig)


def start_pinned(
    name: str,
    command: Sequence[str],
    log_dir: Path,
    environment: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Started:
    """Start ``command`` pinned to SERVER_CPU in a new process group, output to a log file."""
    log_path = log_dir / f"{name}.log"
    env = {**os.environ, **QUIET_ENVIRONMENT, **(environment or {})}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    return Started(name, process, log_path)


def wait_until_ready(
    server: Started,
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str = "application/json",
    timeout: float = START_TIMEOUT_SECONDS,
) -> bytes:
    """Poll ``url`` until it returns 200 and return the body; raise RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with status {server.process.returncode}:\n"
                f"{server.log_tail()}"
            )
        request = urllib.request.Request(url, data=body, method=method)
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.1)
    raise RuntimeError(
        f"{server.name} did not respond to {url} within {timeout:g} s ({last_error}):\n"
        f"{server.log_tail()}"
    )


# --- Sageport -------------------------------------------------------------------


def start_sageport(data_dir: Path, log_dir: Path) -> tuple[Started, str]:
    """Start ``sageport serve`` pinned to SERVER_CPU; return it and its base URL."""
    port = free_port()
    server = start_pinned(
        "sageport",
        [
            sys.executable,
            "-m",
            "sageport",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        log_dir,
        environment={"SAGEPORT_HOST": HOST},
    )
    url = f"http://{HOST}:{port}"
    wait_until_ready(server, f"{url}/ping")
    return server, url


def sagemaker_client(url: str) -> Any:
    """Return a boto3 SageMaker client for ``url`` with throwaway keys and no AWS files."""
    return _local_session().client(
        "sagemaker", endpoint_url=url, config=Config(retries={"total_max_attempts": 1})
    )


def sagemaker_runtime_client(url: str, read_timeout_seconds: float) -> Any:
    """Return a SageMaker Runtime client for ``url`` that never retries, so every failure shows."""
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=2,
        read_timeout=read_timeout_seconds,
    )
    return _local_session().client("sagemaker-runtime", endpoint_url=url, config=config)


def _local_session() -> boto3.session.Session:
    # Without these, botocore would read the user's AWS files and could ask
    # the instance metadata address for credentials.
    os.environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return boto3.session.Session(
        aws_access_key_id="AKIDSAGEPORTBENCH",
        aws_secret_access_key="sageport-bench-secret",
        region_name="us-east-1",
    )


def create_endpoint(client: Any, name: str, archive: Path) -> None:
    """Create the model, endpoint config and endpoint ``name`` without waiting."""
    client.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sageport/sklearn", "ModelDataUrl": f"file://{archive}"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)


def wait_in_service(client: Any, name: str, poll_seconds: float, timeout: float = 120.0) -> str:
    """Poll DescribeEndpoint until the endpoint leaves Creating; return its final status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        description = client.describe_endpoint(EndpointName=name)
        status = str(description["EndpointStatus"])
        if status == "Failed":
            raise RuntimeError(f"endpoint {name} failed: {description.get('FailureReason')}")
        if status != "Creating":
            return status
        time.sleep(poll_seconds)
    raise RuntimeError(f"endpoint {name} was still Creating after {timeout:g} s")


def instance_processes(server: Started) -> list[list[psutil.Process]]:
    """Return each runtime instance under ``server`` as [master, *workers]."""
    instances = []
    for child in psutil.Process(server.pid).children():
        try:
            if "sageport.runtime" in " ".join(child.cmdline()):
                instances.append([child, *child.children(recursive=True)])
        except psutil.NoSuchProcess:
            continue
    return instances


# --- wrk ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One URL to load, with the body file and Content-Type to POST."""

    url: str
    body_path: Path
    content_type: str


@dataclass(frozen=True)
class WrkResult:
    """The summary of one wrk run; latencies in microseconds."""

    requests: int
    duration_us: int
    p50_us: float
    p99_us: float
    mean_us: float
    errors: dict[str, int]

    @property
    def requests_per_second(self) -> float:
        return self.requests * 1_000_000 / self.duration_us if self.duration_us else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_wrk(
    target: Target, connections: int, seconds: float, timeout_seconds: float = 2.0
) -> WrkResult:
    """Run wrk pinned to LOAD_CPU against ``target`` and parse the summary our Lua script prints."""
    command = [
        "taskset",
        "-c",
        str(LOAD_CPU),
        "wrk",
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{timeout_seconds:g}s",
        "--script",
        str(WRK_SCRIPT),
        target.url,
        "--",
        str(target.body_path),
        target.content_type,
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            summary = json.loads(line.removeprefix("WRK_JSON "))
            return WrkResult(
                requests=int(summary["requests"]),
                duration_us=int(summary["duration_us"]),
                p50_us=float(summary["p50_us"]),
                p99_us=float(summary["p99_us"]),
                mean_us=float(summary["mean_us"]),
                errors={key: int(value) for key, value in summary["errors"].items()},
            )
    raise RuntimeError(
        f"wrk printed no summary (exit {completed.returncode}):\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
    )
