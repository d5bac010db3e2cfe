"""Restarts: SIGTERM stops cleanly, and a server killed with SIGKILL comes back whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness import (
    Server,
    deploy,
    free_port,
    started,
    wait_for_status,
    write_model,
)

ECHO_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return b"echo:" + data, "text/plain"
"""


def running(pid: int) -> bool:
    """Say whether ``pid`` is a live process; a zombie has already ended."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if running(pid)]
        time.sleep(0.05)
    return alive


def invoke_echo(server: Server, name: str) -> bytes:
    runtime = server.client("sagemaker-runtime")
    body: bytes = runtime.invoke_endpoint(EndpointName=name, Body=b"hi", ContentType="text/plain")[
        "Body"
    ].read()
    return body


def invoke_when_ready(server: Server, name: str, timeout: float = 30) -> bytes:
    runtime = server.client("sagemaker-runtime")
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke_echo(server, name)
        except runtime.exceptions.ServiceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run_directory(server: Server) -> Path:
    """Return the directory of the Unix socket that the server's first instance listens on."""
    arguments = psutil.Process(server.instance_pids()[0]).cmdline()
    return Path(arguments[arguments.index("--unix-socket") + 1]).parent


def test_sigterm_stops_instances_and_exits_zero(fresh_server: Server, tmp_path: Path) -> None:
    deploy(fresh_server, "graceful", str(write_model(tmp_path, ECHO_MODEL)))
    pids = fresh_server.instance_pids()

    code = fresh_server.stop(signal.SIGTERM)

    assert code == 0
    assert len(pids) == 1
    assert wait_gone(pids) == []


def test_kill_9_then_restart_restores_endpoints(fresh_server: Server, tmp_path: Path) -> None:
    archive = write_model(tmp_path, ECHO_MODEL)
    deploy(fresh_server, "survivor", str(archive), instance_count=2)
    deploy(fresh_server, "broken", f"file://{tmp_path}/missing.tar.gz")
    old_pids = fresh_server.instance_pids()

    fresh_server.stop(signal.SIGKILL)
    orphans = wait_gone(old_pids)
    fresh_server.start()
    restored = wait_for_status(fresh_server, "survivor", {"InService", "Failed"})
    # The endpoint stays InService across the restart. Its instances take a
    # moment to start, and invocations wait for them, up to a few seconds.
    answer = invoke_when_ready(fresh_server, "survivor")
    broken = fresh_server.client("sagemaker").describe_endpoint(EndpointName="broken")

    assert len(old_pids) == 2
    assert orphans == []
    assert restored["EndpointStatus"] == "InService"
    assert answer == b"echo:hi"
    assert broken["EndpointStatus"] == "Failed"
    assert len(fresh_server.instance_pids()) == 2
    assert not set(fresh_server.instance_pids()) & set(old_pids)


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[Server]:
    """A server whose invocations wait up to 60 s for instances that are starting.

    The wait is generous so that a slow machine still starts an instance in time.
    """
    yield from started(Server(tmp_path / "data", extra_args=["--instance-ready-wait", "60"]))


def test_first_invoke_after_restart_waits(patient_server: Server, tmp_path: Path) -> None:
    deploy(patient_server, "eager", str(write_model(tmp_path, ECHO_MODEL)))
    old_pids = patient_server.instance_pids()

    patient_server.stop(signal.SIGKILL)
    wait_gone(old_pids)
    patient_server.start()
    # The first call once /ping returns 200, with no retry.
    answer = invoke_echo(patient_server, "eager")
    status = patient_server.client("sagemaker").describe_endpoint(EndpointName="eager")

    assert answer == b"echo:hi"
    assert status["EndpointStatus"] == "InService"


def test_store_survives_restart(fresh_server: Server) -> None:
    sagemaker = fresh_server.client("sagemaker")
    sagemaker.create_model(
        ModelName="kept",
        PrimaryContainer={
            "Image": "x",
            "ModelDataUrl": "file:///models/kept.tar.gz",
            "Environment": {"A": "1"},
        },
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    before = sagemaker.describe_model(ModelName="kept")

    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    after = fresh_server.client("sagemaker").describe_model(ModelName="kept")

    del before["ResponseMetadata"], after["ResponseMetadata"]
    assert json.dumps(after, default=str) == json.dumps(before, default=str)
    assert os.path.exists(fresh_server.data_dir / "sageport.db")


def test_kill_9_under_load_loses_nothing(fresh_server: Server, tmp_path: Path) -> None:
    archive = write_model(tmp_path, ECHO_MODEL)
    names = ["loaded-a", "loaded-b"]
    for name in names:
        deploy(fresh_server, name, str(archive), instance_count=2)
    sagemaker = fresh_server.client("sagemaker")
    before = {
        "models": sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoints": sorted(e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]),
    }
    old_pids = fresh_server.instance_pids()
    served = {"count": 0}
    stop = threading.Event()

    def load(name: str) -> None:
        runtime = fresh_server.client("sagemaker-runtime")
        while not stop.is_set():
            try:
                runtime.invoke_endpoint(EndpointName=name, Body=b"x", ContentType="text/plain")
                served["count"] += 1
            except Exception:  # noqa: BLE001 - the server is being killed; any error is expected
                time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(name,)) for name in names * 2]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while served["count"] < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        fresh_server.stop(signal.SIGKILL)
        orphans = wait_gone(old_pids)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    with sqlite3.connect(fresh_server.data_dir / "sageport.db") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    fresh_server.start()
    sagemaker = fresh_server.client("sagemaker")
    after = {
        "models": sorted(m["ModelName"] for m in sagemaker.list_models()["Models"]),
        "configs": sorted(
            c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]
        ),
        "endpoints": sorted(e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]),
    }
    answers = [invoke_when_ready(fresh_server, name) for name in names]
    statuses = [
        wait_for_status(fresh_server, name, {"InService"})["EndpointStatus"] for name in names
    ]

    assert served["count"] >= 100
    assert orphans == []
    assert integrity == "ok"
    assert after == before
    assert answers == [b"echo:hi", b"echo:hi"]
    assert statuses == ["InService", "InService"]
    assert not set(fresh_server.instance_pids()) & set(old_pids)


def test_second_server_on_same_data_dir_refused(fresh_server: Server, tmp_path: Path) -> None:
    deploy(fresh_server, "guarded", str(write_model(tmp_path, ECHO_MODEL)))
    pids = fresh_server.instance_pids()

    second = subprocess.run(
        [sys.executable, "-m", "sageport", "serve", "--port", str(free_port()),
         "--data-dir", str(fresh_server.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert second.returncode == 4
    assert "Another sageport serve" in second.stderr
    assert f"pid {fresh_server.process.pid if fresh_server.process else ''}" in second.stderr
    assert fresh_server.instance_pids() == pids
    assert invoke_echo(fresh_server, "guarded") == b"echo:hi"


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[Server]:
    """A server on a data directory of its own, beside ``fresh_server``."""
    yield from started(Server(tmp_path / "second-data"))


def test_kill_9_then_restart_removes_run_dir(
    fresh_server: Server, second_server: Server, tmp_path: Path
) -> None:
    archive = write_model(tmp_path, ECHO_MODEL)
    deploy(fresh_server, "sockets", str(archive))
    deploy(second_server, "neighbour", str(archive))
    old_run_dir = run_directory(fresh_server)
    neighbour_run_dir = run_directory(second_server)
    old_pids = fresh_server.instance_pids()

    fresh_server.stop(signal.SIGKILL)
    wait_gone(old_pids)
    left_behind = old_run_dir.is_dir()
    fresh_server.start()
    answer = invoke_when_ready(fresh_server, "sockets")
    new_run_dir = run_directory(fresh_server)
    neighbour_kept = neighbour_run_dir.is_dir()
    neighbour_answer = invoke_echo(second_server, "neighbour")
    second_server.stop()

    assert left_behind
    assert not old_run_dir.exists()
    assert new_run_dir.is_dir()
    assert new_run_dir != old_run_dir
    assert answer == b"echo:hi"
    assert neighbour_kept
    assert neighbour_answer == b"echo:hi"
    # A server stopped by SIGTERM removes its own run directory.
    assert not neighbour_run_dir.exists()


def test_restart_keeps_other_data_dirs_run_dir(
    fresh_server: Server, second_server: Server, tmp_path: Path
) -> None:
    deploy(second_server, "other", str(write_model(tmp_path, ECHO_MODEL)))
    other_run_dir = run_directory(second_server)
    other_pids = second_server.instance_pids()
    second_server.stop(signal.SIGKILL)
    wait_gone(other_pids)

    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    other_run_dir_kept = other_run_dir.is_dir()
    # Left by the killed server, whose data directory no server uses again.
    shutil.rmtree(other_run_dir, ignore_errors=True)

    assert other_run_dir_kept
