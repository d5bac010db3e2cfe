"""The process backend: each instance is a child process serving the container contract.

An instance runs ``python -m sageport.runtime`` (the built-in runtime) on a Unix
socket, with its output appended to a log file per instance. The server is the
parent; the runtime has the kernel kill it if the server dies, and the
store keeps every pid so a server restarted after ``kill -9`` can stop any
survivor before starting afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

logger = logging.getLogger("sageport.hosting")

# Variables an instance inherits from the server. Everything else, AWS
# credentials and Sageport's own settings above all, stays out unless the
# model's container Environment sets it.
_INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TMPDIR",
    "TZ",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)

# How much of a log's end goes into a FailureReason when the instance wrote
# no reason of its own; FailureReason is at most 1024 characters.
LOG_TAIL_CHARS = 600
PING_INTERVAL = 0.05
PING_TIMEOUT = 2.0
# SageMaker sends SIGTERM, then SIGKILL 30 seconds later.
STOP_GRACE = 30.0


class InstanceStartError(Exception):
    """An instance did not become healthy; ``str()`` is the endpoint's FailureReason."""


@dataclass
class InstanceSpec:
    """The command, environment and file locations of one instance."""

    instance_id: str
    endpoint_name: str
    variant_name: str
    model_dir: Path
    socket_path: Path
    log_path: Path
    failure_file: Path
    environment: dict[str, str] = field(default_factory=dict)
    # A server of the user's own, started as ``COMMAND serve``; empty means
    # the built-in runtime.
    command: tuple[str, ...] = ()
    # The TCP port a server of the user's own listens on (the built-in runtime
    # uses ``socket_path``).
    port: int | None = None
    # The interpreter for the built-in runtime: the model's own environment
    # when it has a requirements.txt.
    python: str = sys.executable
    # Seconds to pass the first /ping: the production variant's
    # ContainerStartupHealthCheckTimeoutInSeconds, else --startup-timeout.
    startup_timeout: float = 600.0

    @property
    def address(self) -> str:
        """Where the instance listens: a Unix socket path or ``127.0.0.1:PORT``."""
        return str(self.socket_path) if self.port is None else f"127.0.0.1:{self.port}"

    @property
    def workers(self) -> int:
        return worker_count(self.environment)

    @property
    def timeout(self) -> float:
        return invocation_timeout(self.environment)


def worker_count(environment: dict[str, str]) -> int:
    """Return the number of runtime workers the container's environment requests."""
    try:
        return max(1, int(environment.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1")))
    except ValueError:
        return 1


def invocation_timeout(environment: dict[str, str]) -> float:
    """Return the seconds an invocation may take, from the variable the runtime reads too."""
    raw = environment.get(
        "SAGEMAKER_MODEL_SERVER_TIMEOUT",
        environment.get("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "60"),
    )
    try:
        return max(1.0, float(raw))
    except ValueError:
        return 60.0


class InstanceProcess:
    """A running instance process."""

    def __init__(self, spec: InstanceSpec, process: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.process = process
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait_healthy(self, timeout: float) -> None:
        """Poll ``/ping`` until it returns 200; raise InstanceStartError otherwise."""
        deadline = time.monotonic() + timeout
        connector: aiohttp.BaseConnector
        if self.spec.port is None:
            connector = aiohttp.UnixConnector(path=str(self.spec.socket_path))
            ping_url = "http://instance/ping"
        else:
            connector = aiohttp.TCPConnector()
            ping_url = f"http://{self.spec.address}/ping"
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.monotonic() < deadline:
                if self.process.returncode is not None:
                    raise InstanceStartError(self._exit_reason())
                if await _ping(session, ping_url):
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.process.wait(), PING_INTERVAL)

        raise InstanceStartError(
            f"The instance for production variant {self.spec.variant_name} did not pass the "
            f"/ping health check within {timeout:g} seconds. See `sageport logs "
            f"{self.spec.endpoint_name}` for its output, and raise the variant's "
            "ContainerStartupHealthCheckTimeoutInSeconds (or --startup-timeout) if the "
            "model needs longer to load."
        )

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Send SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                logger.warning(
                    "Instance %s of endpoint %s ignored SIGTERM for %g s; killing it",
                    self.spec.instance_id,
                    self.spec.endpoint_name,
                    grace,
                )
                # The whole process group: workers included, stopped ones too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.spec.socket_path.unlink()

    def _exit_reason(self) -> str:
        prefix = (
            f"The instance for production variant {self.spec.variant_name} exited with "
            f"status {self.process.returncode} during start-up"
        )
        try:
            reason = self.spec.failure_file.read_text(errors="replace").strip()
        except FileNotFoundError:
            reason = _log_tail(self.spec.log_path)
        if reason:
            return f"{prefix}: {reason}"
        return f"{prefix}. See `sageport logs {self.spec.endpoint_name}` for its output."


def _log_tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    """Return the end of an instance's log as one line, for a server that wrote no reason."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - limit))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())[-limit:]


class ProcessBackend:
    """Starts instances as child processes of the server."""

    async def start(self, spec: InstanceSpec) -> InstanceProcess:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            spec.failure_file.unlink()

        command, environment = _command(spec)
        with spec.log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=environment,
                cwd=spec.model_dir,
                start_new_session=True,
            )
        logger.info(
            "Started instance %s (pid %d) for endpoint %s, variant %s",
            spec.instance_id,
            process.pid,
            spec.endpoint_name,
            spec.variant_name,
        )
        return InstanceProcess(spec, process)


def _command(spec: InstanceSpec) -> tuple[list[str], dict[str, str]]:
    """Build the command line and environment that start an instance."""
    environment = instance_environment(spec.environment)
    if not spec.command:
        command = [
            spec.python, "-m", "sageport.runtime",
            "--model-dir", str(spec.model_dir),
            "--unix-socket", str(spec.socket_path),
            "--failure-file", str(spec.failure_file),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        return command, environment

    # SageMaker starts a container as `ENTRYPOINT serve`, listening on
    # SAGEMAKER_BIND_TO_PORT, with the model data in /opt/ml/model; here the
    # model directory is given by SM_MODEL_DIR instead.
    environment["SAGEMAKER_BIND_TO_PORT"] = str(spec.port)
    environment["SM_MODEL_DIR"] = str(spec.model_dir)
    environment["SAGEPORT_MODEL_DIR"] = str(spec.model_dir)
    launcher = [sys.executable, "-m", "sageport.runtime.launch", "--parent-pid", str(os.getpid())]
    return [*launcher, "--", *spec.command, "serve"], environment


def instance_environment(container_environment: dict[str, str]) -> dict[str, str]:
    """Build an instance's environment: a minimal base plus the container's own."""
    environment = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(container_environment)
    return environment


def kill_orphan(pid: int, started: float) -> bool:
    """Kill a process left by a server that died, if it is still that process.

    The start time guards against a reused pid: a process that started after the
    instance was recorded is someone else's and is left alone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if "sageport.runtime" not in _cmdline(pid):
        return False
    boot_time = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    process_start = boot_time + int(stat.rsplit(")", 1)[1].split()[19]) / ticks
    if process_start > started + 5:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


async def _ping(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)) as response:
            return response.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False
