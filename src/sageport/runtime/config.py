"""Command line and environment of the runtime, read once at start-up.

The command line sets where the model is and where to listen. The
environment carries the SageMaker container settings that a model's
``Environment`` map can set, with the defaults of the SageMaker inference
toolkit (v1.10).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sageport.runtime.errors import StartupError
from sageport.runtime.liveness import HEARTBEAT_INTERVAL_SECONDS

DEFAULT_MODEL_DIR = "/opt/ml/model"
DEFAULT_PORT = 8080
DEFAULT_PROGRAM = "inference.py"
DEFAULT_ACCEPT = "application/json"
DEFAULT_TIMEOUT_SECONDS = 60.0
# A worker beats every second while outside the model, so ten missed beats
# mean it is stuck, not just slow to be scheduled.
DEFAULT_HEARTBEAT_TIMEOUT_SECONDS = 10.0
MIN_HEARTBEAT_TIMEOUT_SECONDS = 2 * HEARTBEAT_INTERVAL_SECONDS
DEFAULT_MAX_PAYLOAD_MB = 6
# SageMaker sends SIGKILL 30 s after SIGTERM, so waiting longer gains nothing.
GRACEFUL_STOP_SECONDS = 30.0


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything the supervisor and the workers need to start."""

    model_dir: Path
    code_dir: Path
    program: str
    unix_socket: Path | None
    host: str
    port: int
    failure_file: Path | None
    parent_pid: int | None
    workers: int
    timeout_seconds: float
    default_accept: str
    log_level: int
    max_payload_bytes: int
    graceful_stop_seconds: float = GRACEFUL_STOP_SECONDS
    # SAGEPORT_WORKER_HEARTBEAT_TIMEOUT: see runtime/liveness.py.
    heartbeat_timeout_seconds: float = DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
    # SAGEMAKER_MULTI_MODEL=true: load models by name on request (runtime/multimodel.py).
    multi_model: bool = False

    @property
    def address(self) -> str:
        """The listening address in a form fit for logs."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        return f"{self.host}:{self.port}"


def build_parser() -> argparse.ArgumentParser:
    """Build the parser for ``python -m sageport.runtime``."""
    parser = argparse.ArgumentParser(
        prog="python -m sageport.runtime",
        description="Serve a SageMaker model directory over GET /ping and POST /invocations.",
    )

    parser.add_argument(
        "--model-dir",
        default=DEFAULT_MODEL_DIR,
        help="the unpacked model data; user code is read from its code/ folder "
        f"(default {DEFAULT_MODEL_DIR})",
    )

    where = parser.add_mutually_exclusive_group()
    where.add_argument("--unix-socket", help="listen on this Unix socket path")
    where.add_argument("--port", type=int, help="listen on this TCP port")
    parser.add_argument(
        "--host",
        help="TCP address to bind: 127.0.0.1 with --port, else 0.0.0.0 with "
        f"SAGEMAKER_BIND_TO_PORT (default {DEFAULT_PORT})",
    )

    parser.add_argument(
        "--failure-file",
        help="write a one-line reason here when the model cannot be loaded",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="exit when this process exits (Linux: PR_SET_PDEATHSIG)",
    )

    # SageMaker starts containers as `docker run IMAGE serve`.
    parser.add_argument("command", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    return parser


def load_config(args: argparse.Namespace, environ: Mapping[str, str]) -> RuntimeConfig:
    """Combine parsed arguments and the environment; raise StartupError on bad values."""
    model_dir = Path(args.model_dir).absolute()
    host, port = _listen_address(args, environ)
    return RuntimeConfig(
        model_dir=model_dir,
        code_dir=_code_dir(model_dir, environ),
        program=environ.get("SAGEMAKER_PROGRAM") or DEFAULT_PROGRAM,
        unix_socket=Path(args.unix_socket).absolute() if args.unix_socket else None,
        host=host,
        port=port,
        failure_file=Path(args.failure_file) if args.failure_file else None,
        parent_pid=args.parent_pid,
        workers=_positive_int(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", 1),
        timeout_seconds=_timeout_seconds(environ),
        default_accept=environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT,
        log_level=_log_level(environ),
        max_payload_bytes=_positive_int(
            environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", DEFAULT_MAX_PAYLOAD_MB
        )
        * 1024
        * 1024,
        multi_model=environ.get("SAGEMAKER_MULTI_MODEL", "").strip().lower() == "true",
        heartbeat_timeout_seconds=_heartbeat_timeout_seconds(environ),
    )


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> RuntimeConfig:
    """Parse ``argv`` (without the program name) and ``environ`` into a RuntimeConfig."""
    return load_config(build_parser().parse_args(argv), environ)


def _listen_address(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, int]:
    if args.port is not None:
        return args.host or "127.0.0.1", args.port
    port = _positive_int(environ, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT)
    return args.host or "0.0.0.0", port


def _code_dir(model_dir: Path, environ: Mapping[str, str]) -> Path:
    # The SDK sets SAGEMAKER_SUBMIT_DIRECTORY to an s3:// URI of sourcedir.tar.gz
    # unless it repacked the code into the model data, so only a local
    # directory that exists is used.
    submit_dir = environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit_dir and "://" not in submit_dir and os.path.isdir(submit_dir):
        return Path(submit_dir).absolute()
    return model_dir / "code"


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise StartupError(f"invalid {name} {raw!r}: expected a positive integer")
    return value


def _timeout_seconds(environ: Mapping[str, str]) -> float:
    # SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS is accepted as a second spelling, and
    # SAGEMAKER_MODEL_SERVER_TIMEOUT wins when both are set.
    for name in ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS"):
        value = _positive_seconds(environ, name)
        if value is not None:
            return value
    return DEFAULT_TIMEOUT_SECONDS


def _heartbeat_timeout_seconds(environ: Mapping[str, str]) -> float:
    name = "SAGEPORT_WORKER_HEARTBEAT_TIMEOUT"
    value = _positive_seconds(environ, name)
    if value is None:
        return DEFAULT_HEARTBEAT_TIMEOUT_SECONDS
    if value < MIN_HEARTBEAT_TIMEOUT_SECONDS:
        raise StartupError(
            f"invalid {name} {environ[name].strip()!r}: expected at least "
            f"{MIN_HEARTBEAT_TIMEOUT_SECONDS:g} seconds, twice the interval between heartbeats"
        )
    return value


def _positive_seconds(environ: Mapping[str, str], name: str) -> float | None:
    """Return the number of seconds in ``environ[name]``, or None when it is unset or empty."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise StartupError(f"invalid {name} {raw!r}: expected a positive number of seconds")
    return value


def _log_level(environ: Mapping[str, str]) -> int:
    raw = environ.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "").strip()
    if not raw:
        return logging.INFO
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    if isinstance(level, int):
        return level
    raise StartupError(
        f"invalid SAGEMAKER_CONTAINER_LOG_LEVEL {raw!r}: expected a logging level number such as 20"
    )
