"""The supervisor (master) process: bind, fork workers, listen, watch, stop.

Start-up: bind the socket without listening, so connections are refused
while the model loads; fork the workers; call ``listen()`` once every worker
reported ready. A worker that fails to load during start-up ends the whole
instance with exit status 3 and a reason in the failure file.

Serving: a few times a second the supervisor reaps exited workers, SIGKILLs
any worker whose model call has run past ``SAGEMAKER_MODEL_SERVER_TIMEOUT``
or that has sent no heartbeat for ``SAGEPORT_WORKER_HEARTBEAT_TIMEOUT``
while outside the model (runtime/liveness.py), and forks replacements (after
a short backoff unless the supervisor killed the worker). Each replacement
runs ``model_fn`` again before it accepts.

Stopping (SIGTERM or SIGINT): close the socket, tell the workers to finish
the request in hand and exit, and SIGKILL any still running after 30 s.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import stat
import sys
import time
from pathlib import Path
from types import FrameType

from sageport.runtime.config import RuntimeConfig, build_parser, load_config
from sageport.runtime.errors import StartupError
from sageport.runtime.liveness import WorkerSlots
from sageport.runtime.loader import import_user_module, locate_program
from sageport.runtime.preload import pickled_modules, preload_modules
from sageport.runtime.process import (
    EXIT_ERROR,
    EXIT_MODEL_FAILURE,
    EXIT_OK,
    die_with_parent,
    one_line,
    write_failure_file,
)

logger = logging.getLogger("sageport.runtime")

WATCHDOG_INTERVAL_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 10.0
# A worker that served this long before dying starts its backoff afresh.
STABLE_WORKER_SECONDS = 30.0
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main(argv: list[str] | None = None) -> int:
    """Run the runtime from the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    if args.parent_pid is not None and not die_with_parent(args.parent_pid):
        logger.error("Parent process %d exited before the runtime started", args.parent_pid)
        return EXIT_ERROR

    failure_file = args.failure_file
    try:
        config = load_config(args, os.environ)
        logging.getLogger().setLevel(config.log_level)
        if config.failure_file is not None:
            config.failure_file.unlink(missing_ok=True)
        check_model_files(config)
    except StartupError as exc:
        logger.error("Cannot start: %s", exc)
        write_failure_file(Path(failure_file) if failure_file else None, str(exc))
        return EXIT_MODEL_FAILURE
    return Supervisor(config).run()


def check_model_files(config: RuntimeConfig) -> None:
    """Raise StartupError when the model directory or the user module is missing."""
    if not config.model_dir.is_dir():
        raise StartupError(f"model directory {config.model_dir} does not exist")
    if config.multi_model:
        # Each model brings its own code when it is loaded, or uses this
        # directory's code if it has some; neither is needed to start.
        return
    locate_program(config.code_dir, config.program)
    if (config.code_dir / "requirements.txt").is_file():
        logger.warning(
            "%s exists but the built-in runtime does not install packages; "
            "install them in the instance's Python environment",
            config.code_dir / "requirements.txt",
        )


def bind_listener(config: RuntimeConfig) -> socket.socket:
    """Bind the server socket without listening, so connections are refused until ready."""
    if config.unix_socket is not None:
        path = config.unix_socket
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        return listener

    family, kind, proto, _, address = socket.getaddrinfo(
        config.host, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(address)
    return listener


class WorkerRecord:
    """The supervisor's view of one worker slot."""

    __slots__ = ("failures", "killed", "pid", "ready", "ready_fd", "restart_at", "started_at")

    def __init__(self) -> None:
        self.pid = 0
        self.ready = False
        self.ready_fd: int | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.failures = 0
        # Set when the supervisor killed the worker, which is replaced at once.
        self.killed = False


class Supervisor:
    """Forks, watches and replaces the workers of one instance."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self.records = [WorkerRecord() for _ in range(config.workers)]
        # Made before fork, so every worker shares it.
        self.slots = WorkerSlots(config.workers)
        self.listener: socket.socket | None = None
        self.listening = False
        self.stopping = False
        self.failure_reason: str | None = None
        self._start_r, self._start_w = os.pipe()
        self._wakeup_r, self._wakeup_w = os.pipe()

    def run(self) -> int:
        """Start the workers, serve until a stop signal, and return the exit status."""
        self._install_signal_handlers()
        logger.info(
            "Starting %d worker(s) for %s on %s",
            self.config.workers,
            self.config.model_dir,
            self.config.address,
        )
        try:
            self.listener = bind_listener(self.config)
        except OSError as exc:
            reason = f"cannot bind {self.config.address}: {exc}"
            logger.error("%s", reason)
            write_failure_file(self.config.failure_file, reason)
            return EXIT_ERROR

        self._preload()
        for index in range(self.config.workers):
            self._spawn(index)
        if not self._wait_until_ready():
            return self._abort_start()

        self.listener.listen(socket.SOMAXCONN)
        self.listening = True
        # Workers that loaded early waited without beating for the others.
        for index in range(self.config.workers):
            self.slots.reset(index, time.monotonic())
        os.close(self._start_w)
        os.close(self._start_r)
        logger.info("Listening on %s", self.config.address)
        self._supervise()
        return self._stop()

    def _preload(self) -> None:
        """Import the worker code and the user module here, before forking.

        Workers then share these pages with the supervisor instead of each
        importing NumPy, scikit-learn and the like again: start-up is faster and
        each worker's unique memory is only what it changes. ``model_fn`` still
        runs in every worker. An import that fails here is left to the workers,
        which report it as the reason the model could not load.
        """
        started = time.monotonic()
        try:
            import sageport.runtime.worker  # noqa: F401 - imported for its side effect

            import_user_module(self.config.code_dir, self.config.program)
        except (StartupError, ImportError) as exc:
            logger.info("Preloading before fork failed; the workers will retry: %s", exc)
            return
        modules = preload_modules(pickled_modules(self.config.model_dir))

        # Objects made so far are never collected; keeping the collector away
        # from them keeps their pages shared with the workers.
        gc.freeze()
        logger.info(
            "Preloaded the inference code and %d modules named in pickles in %d ms",
            len(modules),
            (time.monotonic() - started) * 1000,
        )

    def _install_signal_handlers(self) -> None:
        os.set_blocking(self._wakeup_w, False)
        os.set_blocking(self._wakeup_r, False)
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True

        def child_exited(signum: int, frame: FrameType | None) -> None:
            # Only here so that set_wakeup_fd wakes the loop when a worker exits.
            pass

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGCHLD, child_exited)

    def _spawn(self, index: int) -> None:
        record = self.records[index]
        ready_r, ready_w = os.pipe()
        self.slots.reset(index)

        # Blocking the stop signals across fork keeps the supervisor's handlers
        # from running in a child before it installs its own.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._exit_as_worker(index, ready_w)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

        os.close(ready_w)
        record.pid = pid
        record.ready_fd = ready_r
        record.started_at = time.monotonic()
        record.restart_at = None
        record.killed = False

    def _exit_as_worker(self, index: int, ready_w: int) -> None:
        # Runs in the child: drop the supervisor's descriptors and handlers, then serve.
        status = EXIT_ERROR
        try:
            for signum in _STOP_SIGNALS | {signal.SIGCHLD}:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            for other in self.records:
                if other.ready_fd is not None:
                    os.close(other.ready_fd)
            start_fd = None
            if not self.listening:
                os.close(self._start_w)
                start_fd = self._start_r

            from sageport.runtime.worker import WorkerSetup, run_worker

            assert self.listener is not None
            setup = WorkerSetup(
                self.config,
                index,
                self.listener,
                self.slots.slot(index),
                ready_w,
                start_fd,
                os.getppid(),
            )
            status = run_worker(setup)
        except BaseException:
            logger.exception("Worker %d crashed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)

    def _wait_until_ready(self) -> bool:
        """Wait until every worker is ready; return False if one failed or a stop came first."""
        while not self.stopping:
            self._read_ready_pipes(self._wait_for_events())
            for _, pid, status in self._reap():
                exit_reason = f"worker {pid} exited with {describe_status(status)}"
                self.failure_reason = (
                    self.failure_reason or f"{exit_reason} before the model was loaded"
                )
            if self.failure_reason is not None:
                return False
            if all(record.ready for record in self.records):
                return True
        return False

    def _abort_start(self) -> int:
        self._kill_all()
        if self.failure_reason is None:
            logger.info("Stopped during start-up")
            return EXIT_OK
        write_failure_file(self.config.failure_file, self.failure_reason)
        logger.error("Model failed to load: %s", one_line(self.failure_reason))
        return EXIT_MODEL_FAILURE

    def _supervise(self) -> None:
        while not self.stopping:
            self._read_ready_pipes(self._wait_for_events())
            for record, pid, status in self._reap():
                self._schedule_replacement(record, pid, status)
            self._kill_timed_out_workers()
            self._kill_stalled_workers()
            self._start_due_replacements()

    def _wait_for_events(self, timeout: float = WATCHDOG_INTERVAL_SECONDS) -> set[int]:
        """Sleep until a signal, a worker message or ``timeout``; return the readable pipes."""
        fds = [self._wakeup_r]
        fds.extend(record.ready_fd for record in self.records if record.ready_fd is not None)
        readable, _, _ = select.select(fds, [], [], timeout)
        if self._wakeup_r in readable:
            try:
                while os.read(self._wakeup_r, 512):
                    pass
            except BlockingIOError:
                pass
        return set(readable)

    def _read_ready_pipes(self, readable: set[int]) -> None:
        for record in self.records:
            fd = record.ready_fd
            if fd is None or fd not in readable:
                continue
            # Workers write each message with one write of at most PIPE_BUF bytes.
            message = os.read(fd, 4096)
            os.close(fd)
            record.ready_fd = None
            if message.startswith(b"R"):
                record.ready = True
                if self.listening:
                    logger.info("Replacement worker %d is ready", record.pid)
            elif message.startswith(b"F"):
                reason = message[1:].decode(errors="replace")
                if self.listening:
                    logger.error("Replacement worker %d failed to load the model", record.pid)
                else:
                    self.failure_reason = self.failure_reason or reason

    def _reap(self) -> list[tuple[WorkerRecord, int, int]]:
        """Collect exited workers; return each one's record, pid and wait status."""
        exited = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            record = next((r for r in self.records if r.pid == pid), None)
            if record is None:
                continue
            if record.ready_fd is not None:
                os.close(record.ready_fd)
                record.ready_fd = None
            record.pid = 0
            record.ready = False
            self.slots.reset(self.records.index(record))
            exited.append((record, pid, status))
        return exited

    def _schedule_replacement(self, record: WorkerRecord, pid: int, status: int) -> None:
        now = time.monotonic()
        if record.killed:
            logger.info("Starting a replacement for worker %d, which the supervisor killed", pid)
            record.restart_at = now
            return

        lived = now - record.started_at
        record.failures = 1 if lived >= STABLE_WORKER_SECONDS else record.failures + 1
        delay = min(0.1 * 2 ** (record.failures - 1), MAX_BACKOFF_SECONDS)
        logger.warning(
            "Worker %d exited with %s; starting a replacement in %.1f s",
            pid,
            describe_status(status),
            delay,
        )
        record.restart_at = now + delay

    def _kill_timed_out_workers(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_seconds
        for index, record in enumerate(self.records):
            started = self.slots.call_started(index)
            if not record.pid or record.killed or not started or now - started <= timeout:
                continue
            logger.warning(
                "Worker %d has run one invocation for %.1f s, longer than "
                "SAGEMAKER_MODEL_SERVER_TIMEOUT (%g s); killing it",
                record.pid,
                now - started,
                timeout,
            )
            record.killed = True
            _signal(record.pid, signal.SIGKILL)

    def _kill_stalled_workers(self) -> None:
        now = time.monotonic()
        timeout = self.config.heartbeat_timeout_seconds
        for index, record in enumerate(self.records):
            # A worker still loading its model does not beat yet.
            if not record.pid or not record.ready or record.killed:
                continue
            stalled = self.slots.stalled_for(index, now)
            if stalled <= timeout:
                continue
            logger.warning(
                "Worker %d has sent no heartbeat for %.1f s outside a model call, longer "
                "than SAGEPORT_WORKER_HEARTBEAT_TIMEOUT (%g s); killing it",
                record.pid,
                stalled,
                timeout,
            )
            record.killed = True
            _signal(record.pid, signal.SIGKILL)

    def _start_due_replacements(self) -> None:
        now = time.monotonic()
        for index, record in enumerate(self.records):
            if record.pid == 0 and record.restart_at is not None and now >= record.restart_at:
                self._spawn(index)

    def _stop(self) -> int:
        grace = self.config.graceful_stop_seconds
        logger.info("Stopping: waiting up to %g s for workers to finish their requests", grace)
        self._close_listener()
        for record in self.records:
            if record.pid:
                _signal(record.pid, signal.SIGTERM)

        deadline = time.monotonic() + grace
        while any(record.pid for record in self.records) and time.monotonic() < deadline:
            self._read_ready_pipes(self._wait_for_events(0.1))
            self._reap()
        for record in self.records:
            if record.pid:
                logger.warning("Worker %d did not stop within %g s; killing it", record.pid, grace)
        self._kill_all()
        logger.info("Stopped")
        return EXIT_OK

    def _kill_all(self) -> None:
        self._close_listener()
        for record in self.records:
            if record.pid:
                _signal(record.pid, signal.SIGKILL)
                os.waitpid(record.pid, 0)
                record.pid = 0
            if record.ready_fd is not None:
                os.close(record.ready_fd)
                record.ready_fd = None

    def _close_listener(self) -> None:
        if self.listener is None:
            return
        self.listener.close()
        self.listener = None
        path = self.config.unix_socket
        # New connections should fail at once rather than wait in a dead backlog.
        if path is not None:
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
            except FileNotFoundError:
                pass


def describe_status(status: int) -> str:
    """Describe a wait status as ``status N`` or ``signal NAME``."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
