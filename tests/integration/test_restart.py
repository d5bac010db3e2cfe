"""Restarts: SIGTERM stops cleanly, and a server killed with SIGKILL comes back whole."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
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
    create_config,
    deploy,
    free_port,
    started,
    trickling_http_server,
    wait_for_status,
    wait_until,
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


# Writes a file when model_fn starts, then takes far longer than any test waits.
HANGING_LOAD_MODEL = """
import os
import time

def model_fn(model_dir):
    open(os.environ["LOADING_FILE"], "w").close()
    time.sleep(3600)
"""

SHUTDOWN_NOISE = ("Task exception was never retrieved", "Unclosed", "Traceback")


@pytest.mark.parametrize("operation", ["create", "update"])
def test_sigterm_during_start_is_quiet(
    fresh_server: Server, tmp_path: Path, operation: str
) -> None:
    loading = tmp_path / "loading"
    hanging = write_model(tmp_path / "hanging", HANGING_LOAD_MODEL)
    create_config(fresh_server, "hanging", str(hanging), environment={"LOADING_FILE": str(loading)})
    sagemaker = fresh_server.client("sagemaker")
    if operation == "create":
        sagemaker.create_endpoint(EndpointName="starting", EndpointConfigName="hanging")
    else:
        deploy(fresh_server, "starting", str(write_model(tmp_path / "echo", ECHO_MODEL)))
        sagemaker.update_endpoint(EndpointName="starting", EndpointConfigName="hanging")
    assert wait_until(loading.exists)
    pids = fresh_server.instance_pids()

    code = fresh_server.stop(signal.SIGTERM)

    assert code == 0
    assert wait_gone(pids) == []
    log = fresh_server.output()
    for noise in SHUTDOWN_NOISE:
        assert noise not in log, log


def test_sigterm_during_download_exits(fresh_server: Server) -> None:
    # The download would last five minutes; the server must not wait for it.
    with trickling_http_server(interval=1.0, count=300) as url:
        create_config(fresh_server, "slow", url)
        fresh_server.client("sagemaker").create_endpoint(
            EndpointName="slow", EndpointConfigName="slow"
        )
        assert wait_until(lambda: "Fetching model data from" in fresh_server.output())

        code = fresh_server.stop(signal.SIGTERM, timeout=60)

    assert code == 0
    for noise in SHUTDOWN_NOISE:
        assert noise not in fresh_server.output()


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


def test_busy_port_refused_before_instances_start(fresh_server: Server, tmp_path: Path) -> None:
    deploy(fresh_server, "recoverable", str(write_model(tmp_path, ECHO_MODEL)))
    assert fresh_server.stop(signal.SIGTERM) == 0

    with socket.socket() as occupant:
        occupant.bind(("127.0.0.1", 0))
        occupant.listen()
        port = occupant.getsockname()[1]
        second = subprocess.run(
            [sys.executable, "-m", "sageport", "serve", "--port", str(port),
             "--data-dir", str(fresh_server.data_dir)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    errors = [line for line in second.stderr.splitlines() if "Error" in line]
    assert second.returncode == 5
    assert errors == [
        f"Error: Cannot listen on 127.0.0.1:{port}: the address is already in use. Stop the "
        "program that uses it, or choose another --port (or SAGEPORT_PORT)."
    ]
    assert "Traceback" not in second.stderr
    assert "Started instance" not in second.stderr
    assert "Deploying endpoint" not in second.stderr


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


def test_restart_caps_stored_instance_count(tmp_path: Path) -> None:
    generous = Server(tmp_path / "data", extra_args=["--max-instances-per-variant", "2"])
    generous.start()
    try:
        deploy(generous, "capped", str(write_model(tmp_path, ECHO_MODEL)))
        generous.client("sagemaker").update_endpoint_weights_and_capacities(
            EndpointName="capped",
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
        scaled = wait_for_status(generous, "capped", {"InService"})
    finally:
        generous.stop()
    strict = Server(tmp_path / "data", extra_args=["--max-instances-per-variant", "1"])

    for _ in started(strict):
        answer = invoke_when_ready(strict, "capped")
        restored = strict.client("sagemaker").describe_endpoint(EndpointName="capped")
        pids = strict.instance_pids()
        log = strict.output()

    assert scaled["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert answer == b"echo:hi"
    assert restored["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert len(pids) == 1
    assert "asks for 2 instances, more than the limit of 1; starting 1" in log
