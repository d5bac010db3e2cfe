"""Faults under load: instance kills, hung instances, back-pressure, graceful shutdown."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.harness import (
    COUNTING_MODEL,
    DROPPED,
    Server,
    deploy,
    send_and_hang_up,
    started,
    wait_until,
    write_model,
)

ECHO_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return b"ok", "text/plain"
"""

# Signals through a file that the request reached the model, then keeps the
# request until the test creates the marker's ".go" file (30 s at most), so the
# test, not the machine's speed, decides how long the request stays in flight.
SLOW_MODEL = """
import os
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    marker = data.decode()
    if marker:
        open(marker, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
            time.sleep(0.01)
    return b"done", "text/plain"
"""


@pytest.fixture
def tuned_server(tmp_path: Path) -> Iterator[Server]:
    """A server that checks instance health five times a second."""
    yield from started(Server(tmp_path / "data", extra_args=["--health-check-interval", "0.2"]))


@pytest.fixture
def queueless_server(tmp_path: Path) -> Iterator[Server]:
    """A server that queues no request beyond one per worker."""
    yield from started(Server(tmp_path / "data", extra_args=["--max-queued-requests", "0"]))


def outcome(server: Server, name: str, body: bytes = b"") -> str:
    """Invoke once and name the result: "ok" or the AWS error code."""
    runtime = server.client("sagemaker-runtime")
    try:
        runtime.invoke_endpoint(EndpointName=name, Body=body or b"x", ContentType="text/plain")
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_instance_killed_under_load(tuned_server: Server, tmp_path: Path) -> None:
    deploy(tuned_server, "killed", str(write_model(tmp_path, ECHO_MODEL)), instance_count=2)
    victim, survivor = tuned_server.instance_pids()
    results: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            results[outcome(tuned_server, "killed")] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: results["ok"] >= 50)
        os.killpg(victim, signal.SIGKILL)
        replaced = wait_until(
            lambda: len(set(tuned_server.instance_pids()) - {victim, survivor}) == 1
        )
        served_after = results["ok"]
        wait_until(lambda: results["ok"] >= served_after + 50)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert replaced
    assert results["ok"] >= served_after + 50
    # Only requests the killed instance held may fail, and each with an AWS error.
    assert set(results) <= {"ok", "ModelError", "ServiceUnavailable"}
    assert results["ModelError"] + results["ServiceUnavailable"] <= 4
    assert survivor in tuned_server.instance_pids()


def test_lone_instance_comes_back(tuned_server: Server, tmp_path: Path) -> None:
    deploy(tuned_server, "lone", str(write_model(tmp_path, ECHO_MODEL)))
    (victim,) = tuned_server.instance_pids()

    os.killpg(victim, signal.SIGKILL)
    # The call waits while the supervisor starts the instance again.
    while_down = outcome(tuned_server, "lone")
    back = wait_until(lambda: outcome(tuned_server, "lone") == "ok")

    assert while_down == "ok"
    assert back
    assert victim not in tuned_server.instance_pids()


def test_hung_instance_is_replaced(tuned_server: Server, tmp_path: Path) -> None:
    deploy(tuned_server, "hung", str(write_model(tmp_path, ECHO_MODEL)))
    (victim,) = tuned_server.instance_pids()

    # A stopped process group accepts connections (the kernel queues them) but
    # never responds, which is what a hung model server looks like from outside.
    os.killpg(victim, signal.SIGSTOP)
    replaced = wait_until(lambda: tuned_server.instance_pids() not in ([], [victim]), timeout=60)

    assert replaced
    assert wait_until(lambda: outcome(tuned_server, "hung") == "ok")
    assert "failed 3 health checks in a row" in tuned_server.output()


PID_MODEL = """
import os

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return str(os.getpid()).encode(), "text/plain"
"""


def worker_pids(instance: int) -> set[int]:
    return {child.pid for child in psutil.Process(instance).children() if not is_gone(child.pid)}


def is_gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_stopped_worker_is_replaced(server: Server, tmp_path: Path) -> None:
    model = str(write_model(tmp_path, PID_MODEL))
    deploy(server, "stopped-worker", model, environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    (instance,) = server.instance_pids()
    runtime = server.client("sagemaker-runtime")

    def served_by() -> int:
        response = runtime.invoke_endpoint(
            EndpointName="stopped-worker", Body=b"x", ContentType="text/plain"
        )
        return int(response["Body"].read())

    # The front door keeps its connection to the worker that served this call,
    # so the next call is sent to that worker after it is stopped.
    victim = served_by()
    os.kill(victim, signal.SIGSTOP)
    try:
        after_stop = [served_by() for _ in range(5)]
        replaced = wait_until(lambda: is_gone(victim) and len(worker_pids(instance)) == 2)
    finally:
        if not is_gone(victim):
            os.kill(victim, signal.SIGKILL)

    assert victim not in after_stop
    assert replaced
    assert server.instance_pids() == [instance]
    logs = server.sageport("logs", "stopped-worker", "--data-dir", str(server.data_dir)).stdout
    assert f"Worker {victim} has sent no heartbeat" in logs
    assert "reset the connection before reading the request" in server.output()


def test_full_instance_sheds_load(queueless_server: Server, tmp_path: Path) -> None:
    deploy(queueless_server, "busy", str(write_model(tmp_path, SLOW_MODEL)))
    marker = tmp_path / "started"
    first: list[str] = []
    thread = threading.Thread(
        target=lambda: first.append(outcome(queueless_server, "busy", str(marker).encode()))
    )
    thread.start()
    assert wait_until(marker.exists)

    runtime = queueless_server.client("sagemaker-runtime")
    try:
        with pytest.raises(runtime.exceptions.ServiceUnavailable) as excinfo:
            runtime.invoke_endpoint(EndpointName="busy", Body=b"", ContentType="text/plain")
    finally:
        Path(f"{marker}.go").touch()
        thread.join(timeout=30)

    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "at capacity" in excinfo.value.response["Error"]["Message"]
    assert first == ["ok"]


def test_sigterm_finishes_in_flight_request(tuned_server: Server, tmp_path: Path) -> None:
    deploy(tuned_server, "draining", str(write_model(tmp_path, SLOW_MODEL)))
    marker = tmp_path / "started"
    result: list[str] = []
    thread = threading.Thread(
        target=lambda: result.append(outcome(tuned_server, "draining", str(marker).encode()))
    )
    thread.start()
    assert wait_until(marker.exists)

    # The model finishes only once the server has begun shutting down.
    assert tuned_server.process is not None
    tuned_server.process.send_signal(signal.SIGTERM)
    shutting_down = wait_until(lambda: "Shutting down" in tuned_server.output())
    Path(f"{marker}.go").touch()
    code = tuned_server.process.wait(60)
    thread.join(timeout=30)

    assert shutting_down
    assert result == ["ok"]
    assert code == 0


def test_idle_instance_keeps_passing_checks(tuned_server: Server, tmp_path: Path) -> None:
    deploy(tuned_server, "idle", str(write_model(tmp_path, ECHO_MODEL)))
    (instance,) = tuned_server.instance_pids()

    # The invocation leaves a keep-alive connection to the instance's only
    # worker; health checks must share it rather than queue behind it.
    assert outcome(tuned_server, "idle") == "ok"
    time.sleep(8)

    assert tuned_server.instance_pids() == [instance]
    assert "health checks in a row" not in tuned_server.output()
    assert outcome(tuned_server, "idle") == "ok"


@pytest.mark.parametrize("action", ["invocations", "invocations-response-stream"])
def test_abandoned_queued_requests_never_reach_model(
    server: Server, tmp_path: Path, action: str
) -> None:
    name = f"abandoned-{action}"
    deploy(server, name, str(write_model(tmp_path, COUNTING_MODEL)))
    calls = tmp_path / "calls.txt"
    body = str(calls).encode()
    first: list[str] = []
    dropped_before = server.output().count(DROPPED)
    thread = threading.Thread(target=lambda: first.append(outcome(server, name, body)))
    thread.start()
    assert wait_until(calls.exists)

    # Five callers send a request while the only worker is busy, then hang up.
    # The worker stays busy until the server has dropped all five.
    try:
        send_and_hang_up(server, f"/endpoints/{name}/{action}", body, {}, count=5)
        dropped = wait_until(lambda: server.output().count(DROPPED) - dropped_before == 5)
    finally:
        Path(f"{calls}.go").touch()
        thread.join(timeout=30)
    last = outcome(server, name, body)

    assert dropped
    assert first == ["ok"]
    assert last == "ok"
    assert calls.read_text().count("call") == 2
