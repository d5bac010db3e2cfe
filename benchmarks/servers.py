"""The servers that load.py compares, each started pinned and checked with one real request.

Sageport and its runtime come from this checkout. KServe, MLflow and BentoML
are installed from PyPI into their own virtual environments under the cache
directory, with the scikit-learn version of this checkout so that every
server loads the same ``model.joblib``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import benchlib
from benchlib import HOST, ModelFiles, Started

PEER_SERVERS = benchlib.BENCHMARKS / "peer_servers"
Rows = list[list[float]]


class ServerUnavailable(Exception):
    """A server could not be installed or started, with the reason in ``str()`` for the report."""


@dataclass
class RunningServer:
    """A server under test: its processes, the URL to POST to and how it wants the rows."""

    name: str
    processes: Started
    url: str
    encode: Callable[[Rows], bytes]
    content_type: str = "application/json"
    helpers: list[Started] = field(default_factory=list)

    def stop(self) -> None:
        self.processes.stop()
        for helper in self.helpers:
            helper.stop()


def json_rows(rows: Rows) -> bytes:
    return json.dumps(rows).encode()


def check_answer(server: RunningServer, rows: Rows) -> None:
    """Send one request and raise ServerUnavailable unless the response contains predictions."""
    try:
        answer = benchlib.wait_until_ready(
            server.processes,
            server.url,
            method="POST",
            body=server.encode(rows),
            content_type=server.content_type,
        )
    except RuntimeError as exc:
        raise ServerUnavailable(f"no prediction: {exc}") from None
    if b"setosa" not in answer and b"versicolor" not in answer and b"virginica" not in answer:
        raise ServerUnavailable(f"unexpected response {answer[:200]!r}")


# --- Sageport and its runtime ---------------------------------------------------------------


def start_instance(model: ModelFiles, log_dir: Path) -> RunningServer:
    """Start one built-in runtime instance on TCP, the floor for the InvokeEndpoint path."""
    port = benchlib.free_port()
    processes = benchlib.start_pinned(
        "instance",
        [
            sys.executable,
            "-m",
            "sageport.runtime",
            "--model-dir",
            str(model.model_dir),
            "--port",
            str(port),
            "--host",
            HOST,
        ],
        log_dir,
    )
    return RunningServer("instance", processes, f"http://{HOST}:{port}/invocations", json_rows)


def start_sageport(model: ModelFiles, log_dir: Path) -> RunningServer:
    """Start ``sageport serve``, deploy the model with boto3 and wait for InService."""
    processes, url = benchlib.start_sageport(log_dir / "sageport-data", log_dir)
    try:
        client = benchlib.sagemaker_client(url)
        benchlib.create_endpoint(client, benchlib.ENDPOINT_NAME, model.archive)
        benchlib.wait_in_service(client, benchlib.ENDPOINT_NAME, poll_seconds=0.05)
    except Exception:
        processes.stop()
        raise
    invoke_url = f"{url}/endpoints/{benchlib.ENDPOINT_NAME}/invocations"
    return RunningServer("sageport", processes, invoke_url, json_rows)


def deployed_sageport(run_dir: Path, rows: int) -> tuple[RunningServer, benchlib.Target]:
    """Start Sageport with the example model deployed and checked; return it and the wrk target.

    The target posts ``rows`` iris rows. The caller must stop the server.
    """
    model = benchlib.train_model(run_dir)
    server = start_sageport(model, run_dir)
    try:
        payload = benchlib.payload_rows(rows)
        check_answer(server, payload)
        body_path = run_dir / "body.json"
        body_path.write_bytes(server.encode(payload))
    except BaseException:
        server.stop()
        raise
    return server, benchlib.Target(server.url, body_path, server.content_type)


# --- Peers ----------------------------------------------------------------------------------


def peer_python(name: str) -> Path:
    return benchlib.CACHE_DIR / name / "bin" / "python"


def install_peer(name: str, packages: list[str], log_dir: Path, *, model: bool = True) -> Path:
    """Create the virtual environment ``name`` once and return its Python.

    With ``model``, scikit-learn is pinned to this checkout's version so the
    environment loads the same ``model.joblib``. A marker file records the
    package list, so a changed list installs again.
    """
    venv = benchlib.CACHE_DIR / name
    python = venv / "bin" / "python"
    if model:
        packages = [*packages, f"scikit-learn=={metadata.version('scikit-learn')}"]
    wanted = " ".join(packages)
    marker = venv / ".sageport-bench-packages"
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python

    uv = shutil.which("uv")
    if uv is None:
        raise ServerUnavailable("uv is not on PATH; it creates the peers' environments")
    log_path = log_dir / f"install-{name}.log"
    with log_path.open("wb") as log:
        steps = [[uv, "pip", "install", "--python", str(python), *packages]]
        if not python.exists():
            steps.insert(0, [uv, "venv", "--quiet", "--python", "3.11", str(venv)])
        for step in steps:
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                tail = " | ".join(log_path.read_text(errors="replace").splitlines()[-3:])
                raise ServerUnavailable(f"installing {wanted} failed ({log_path}): {tail}")
    marker.write_text(wanted)
    return python


def start_kserve(model: ModelFiles, log_dir: Path) -> RunningServer:
    python = install_peer("kserve", ["kserve"], log_dir)
    port, grpc_port = benchlib.free_port(), benchlib.free_port()
    processes = benchlib.start_pinned(
        "kserve",
        [
            str(python),
            str(PEER_SERVERS / "kserve_server.py"),
            str(model.joblib_path),
            str(port),
            str(grpc_port),
        ],
        log_dir,
    )
    url = f"http://{HOST}:{port}/v1/models/iris:predict"
    return RunningServer(
        "kserve", processes, url, lambda rows: json.dumps({"instances": rows}).encode()
    )


def start_mlflow(model: ModelFiles, log_dir: Path) -> RunningServer:
    python = install_peer("mlflow", ["mlflow"], log_dir)
    saved = log_dir / "mlflow-model"
    subprocess.run(
        [str(python), str(PEER_SERVERS / "mlflow_save.py"), str(model.joblib_path), str(saved)],
        check=True,
        capture_output=True,
        env={**benchlib.QUIET_ENVIRONMENT, "PATH": str(python.parent)},
    )
    port = benchlib.free_port()
    processes = benchlib.start_pinned(
        "mlflow",
        [
            str(python.parent / "mlflow"),
            "models",
            "serve",
            "--model-uri",
            str(saved),
            "--env-manager",
            "local",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        log_dir,
        # `mlflow models serve` starts its server through the venv's executables.
        environment={"PATH": f"{python.parent}:/usr/bin:/bin"},
    )
    url = f"http://{HOST}:{port}/invocations"
    return RunningServer(
        "mlflow", processes, url, lambda rows: json.dumps({"inputs": rows}).encode()
    )


def start_bentoml(model: ModelFiles, log_dir: Path) -> RunningServer:
    python = install_peer("bentoml", ["bentoml"], log_dir)
    port = benchlib.free_port()
    processes = benchlib.start_pinned(
        "bentoml",
        [
            str(python.parent / "bentoml"),
            "serve",
            "bentoml_service:Iris",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        log_dir,
        environment={
            "PATH": f"{python.parent}:/usr/bin:/bin",
            "SAGEPORT_BENCH_MODEL": str(model.joblib_path),
            "BENTOML_HOME": str(log_dir / "bentoml-home"),
        },
        cwd=PEER_SERVERS,
    )
    url = f"http://{HOST}:{port}/predict"
    return RunningServer(
        "bentoml", processes, url, lambda rows: json.dumps({"rows": rows}).encode()
    )


STARTERS: dict[str, Callable[[ModelFiles, Path], RunningServer]] = {
    "instance": start_instance,
    "sageport": start_sageport,
    "kserve": start_kserve,
    "mlflow": start_mlflow,
    "bentoml": start_bentoml,
}
PEERS = ("kserve", "mlflow", "bentoml")
