"""Start-up failures, timeouts, worker replacement and stopping, on real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.harness import wait_until
from tests.runtime.conftest import (
    Reply,
    RuntimeProcess,
    StartRuntime,
    exchange,
    kill_if_alive,
    write_model,
)

SLEEPY = """
import os
import time


def model_fn(model_dir):
    return model_dir


def transform_fn(model, input_data, content_type, accept):
    command = input_data.decode()
    if command.startswith("sleep "):
        open(os.path.join(model, "busy"), "w").close()
        time.sleep(float(command.split()[1]))
    if command == "hold":
        # Busy until the test creates the file "go" (30 s at most).
        open(os.path.join(model, "busy"), "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(model, "go")) and time.monotonic() < deadline:
            time.sleep(0.01)
    if command == "exit":
        os._exit(1)
    return str(os.getpid()), "text/plain"
"""


def invoke(runtime: RuntimeProcess, command: str) -> Reply:
    headers = {"Content-Type": "application/octet-stream"}
    return runtime.request("POST", "/invocations", command.encode(), headers)


def is_gone(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return status == "zombie"


def test_model_fn_raising_exits_3(start_runtime: StartRuntime, tmp_path: Path) -> None:
    source = """
    def model_fn(model_dir):
        raise ValueError("the weights file model.joblib is missing")
    """
    runtime = start_runtime(write_model(tmp_path, source), wait=False)
    assert runtime.wait_exit() == 3
    assert runtime.failure_file.read_text() == (
        "model_fn raised ValueError: the weights file model.joblib is missing\n"
    )
    log = runtime.log()
    assert "Traceback (most recent call last):" in log
    assert 'raise ValueError("the weights file model.joblib is missing")' in log


def test_missing_code_exits_3(start_runtime: StartRuntime, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    runtime = start_runtime(model_dir, wait=False)
    assert runtime.wait_exit() == 3
    assert runtime.failure_file.read_text().startswith(
        f"user code not found: {model_dir}/code/inference.py does not exist;"
    )


def test_missing_model_dir_exits_3(start_runtime: StartRuntime, tmp_path: Path) -> None:
    runtime = start_runtime(tmp_path / "absent", wait=False)
    assert runtime.wait_exit() == 3
    assert runtime.failure_file.read_text() == f"model directory {tmp_path}/absent does not exist\n"


def test_one_failing_worker_fails_start(start_runtime: StartRuntime, tmp_path: Path) -> None:
    source = """
    import os

    def model_fn(model_dir):
        marker = os.path.join(model_dir, "first")
        try:
            os.mkdir(marker)
        except FileExistsError:
            raise RuntimeError("second worker refuses") from None
        return None

    def transform_fn(model, data, content_type, accept):
        return data
    """
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    runtime = start_runtime(write_model(tmp_path, source), env, wait=False)
    assert runtime.wait_exit() == 3
    assert (
        runtime.failure_file.read_text() == "model_fn raised RuntimeError: second worker refuses\n"
    )


def test_connections_refused_while_loading(start_runtime: StartRuntime, tmp_path: Path) -> None:
    # model_fn loads until the test creates the gate file (30 s at most), so the
    # probe below always finds the model still loading.
    source = """
    import os
    import time

    def model_fn(model_dir):
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(model_dir, "gate")) and time.monotonic() < deadline:
            time.sleep(0.01)

    def transform_fn(model, data, content_type, accept):
        return data
    """
    model_dir = write_model(tmp_path, source)
    runtime = start_runtime(model_dir, wait=False)
    try:
        assert wait_until(runtime.socket_path.exists)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with probe, pytest.raises(ConnectionRefusedError):
            probe.connect(str(runtime.socket_path))
    finally:
        (model_dir / "gate").touch()
    runtime.wait_ready()
    assert runtime.request("GET", "/ping").status == 200


def test_timeout_kill_then_next_succeeds(start_runtime: StartRuntime, tmp_path: Path) -> None:
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"}
    runtime = start_runtime(write_model(tmp_path, SLEEPY), env)
    first_pid = int(invoke(runtime, "hello").body)

    with pytest.raises((ConnectionError, OSError)):
        invoke(runtime, "sleep 30")

    reply = invoke(runtime, "hello")
    assert reply.status == 200
    assert int(reply.body) != first_pid
    assert is_gone(first_pid)
    assert "longer than SAGEMAKER_MODEL_SERVER_TIMEOUT (1 s); killing it" in runtime.log()


def test_stopped_idle_worker_is_replaced(start_runtime: StartRuntime, tmp_path: Path) -> None:
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEPORT_WORKER_HEARTBEAT_TIMEOUT": "2"}
    runtime = start_runtime(write_model(tmp_path, SLEEPY), env)
    headers = {"Content-Type": "application/octet-stream"}
    connection = runtime.connect(timeout=30)
    try:
        victim = int(exchange(connection, "POST", "/invocations", b"hello", headers).body)
        os.kill(victim, signal.SIGSTOP)
        runtime.extra_pids.append(victim)

        # The stopped worker has this connection and never reads the request
        # sent on it. The client learns so when the supervisor kills the worker.
        with pytest.raises(ConnectionError):
            exchange(connection, "POST", "/invocations", b"hello", headers)
    finally:
        connection.close()
    replies = [invoke(runtime, "hello") for _ in range(4)]
    # A killed worker is a zombie until the supervisor reaps it, and only then
    # does the supervisor log the replacement, so wait for that line.
    replaced = wait_until(lambda: f"Starting a replacement for worker {victim}" in runtime.log())

    assert replaced
    assert is_gone(victim)
    assert [reply.status for reply in replies] == [200] * 4
    assert victim not in {int(reply.body) for reply in replies}
    assert "has sent no heartbeat for" in runtime.log()


def test_long_call_is_no_stall(start_runtime: StartRuntime, tmp_path: Path) -> None:
    env = {"SAGEPORT_WORKER_HEARTBEAT_TIMEOUT": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30"}
    runtime = start_runtime(write_model(tmp_path, SLEEPY), env)

    # A model call, and then idle time, each longer than the heartbeat timeout.
    during_call = invoke(runtime, "sleep 3")
    time.sleep(3)
    after_idle = invoke(runtime, "hello")

    assert during_call.status == 200
    assert after_idle.status == 200
    assert during_call.body == after_idle.body
    assert "heartbeat" not in runtime.log()


def test_crashed_worker_is_replaced(start_runtime: StartRuntime, tmp_path: Path) -> None:
    runtime = start_runtime(write_model(tmp_path, SLEEPY))
    with pytest.raises((ConnectionError, OSError)):
        invoke(runtime, "exit")
    reply = invoke(runtime, "hello")
    assert reply.status == 200
    assert "exited with status 1; starting a replacement in 0.1 s" in runtime.log()


def test_two_workers_serve_two_connections(start_runtime: StartRuntime, tmp_path: Path) -> None:
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    runtime = start_runtime(write_model(tmp_path, SLEEPY), env)
    headers = {"Content-Type": "application/octet-stream"}
    first, second = runtime.connect(), runtime.connect()
    try:
        # A worker serves one connection until it closes, so the second
        # connection must reach the other worker.
        first_pid = exchange(first, "POST", "/invocations", b"hello", headers).body
        second_pid = exchange(second, "POST", "/invocations", b"hello", headers).body
        assert first_pid != second_pid
        assert exchange(first, "POST", "/invocations", b"hello", headers).body == first_pid
    finally:
        first.close()
        second.close()


def test_sigterm_finishes_request_in_flight(start_runtime: StartRuntime, tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, SLEEPY)
    runtime = start_runtime(model_dir)
    replies: list[Reply] = []
    thread = threading.Thread(target=lambda: replies.append(invoke(runtime, "hold")))
    thread.start()
    assert wait_until((model_dir / "busy").exists)
    runtime.process.send_signal(signal.SIGTERM)
    # The request ends only after the runtime began stopping: it has logged so
    # and removed its socket, the step just before it signals the workers.
    stopping = wait_until(lambda: "Stopping" in runtime.log() and not runtime.socket_path.exists())
    (model_dir / "go").touch()
    thread.join(30)

    assert stopping
    assert [reply.status for reply in replies] == [200]
    assert replies[0].headers["connection"] == "close"
    assert runtime.wait_exit() == 0
    assert not runtime.socket_path.exists()


def test_sigint_stops_idle_runtime(start_runtime: StartRuntime, tmp_path: Path) -> None:
    runtime = start_runtime(write_model(tmp_path, SLEEPY))
    runtime.process.send_signal(signal.SIGINT)
    assert runtime.wait_exit() == 0
    assert "Stopped" in runtime.log()


def test_parent_death_kills_runtime(socket_dir: Path, tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, SLEEPY)
    socket_path = socket_dir / "orphan.sock"
    launcher = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'sageport.runtime', '--model-dir', "
        f"{str(model_dir)!r}, '--unix-socket', {str(socket_path)!r}, "
        "'--parent-pid', str(os.getpid())])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE)
    runtime_pid = 0
    try:
        assert parent.stdout is not None
        runtime_pid = int(parent.stdout.readline())
        runtime = RuntimeProcess(parent, socket_path, socket_dir / "unused", socket_dir / "unused")
        assert wait_until(lambda: _connects(socket_path))
        worker_pid = int(invoke(runtime, "hello").body)

        parent.kill()
        parent.wait(30)
        assert wait_until(lambda: is_gone(runtime_pid))
        assert wait_until(lambda: is_gone(worker_pid))
    finally:
        parent.kill()
        parent.wait(30)
        if runtime_pid:
            kill_if_alive(runtime_pid)


def _connects(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


def test_stale_socket_file_is_replaced(start_runtime: StartRuntime, tmp_path: Path) -> None:
    model_dir = write_model(tmp_path, SLEEPY)
    first = start_runtime(model_dir)
    first_worker = int(invoke(first, "hello").body)
    first.process.kill()
    first.process.wait(30)
    assert wait_until(lambda: is_gone(first_worker))
    assert first.socket_path.exists()
    # The second runtime started by the fixture binds rt1.sock, so a dead socket file waits there.
    os.rename(first.socket_path, first.socket_path.with_name("rt1.sock"))

    second = start_runtime(model_dir)
    assert invoke(second, "hello").status == 200
