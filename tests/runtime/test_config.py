"""The command line and the environment the runtime reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sageport.runtime.config import parse_config
from sageport.runtime.errors import StartupError


def test_defaults_follow_sagemaker(tmp_path: Path) -> None:
    config = parse_config(["--model-dir", str(tmp_path), "serve"], {})
    assert config.code_dir == tmp_path / "code"
    assert config.program == "inference.py"
    assert (config.host, config.port) == ("0.0.0.0", 8080)
    assert config.unix_socket is None
    assert config.workers == 1
    assert config.timeout_seconds == 60.0
    assert config.default_accept == "application/json"
    assert config.log_level == 20
    assert config.max_payload_bytes == 6 * 1024 * 1024
    assert config.heartbeat_timeout_seconds == 10.0


def test_environment_overrides(tmp_path: Path) -> None:
    environ = {
        "SAGEMAKER_BIND_TO_PORT": "9090",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "2.5",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "10",
        "SAGEMAKER_SUBMIT_DIRECTORY": str(tmp_path),
    }
    config = parse_config(["--model-dir", "/models/m"], environ)
    assert config.port == 9090
    assert config.program == "serve.py"
    assert config.workers == 3
    assert config.timeout_seconds == 2.5
    assert config.default_accept == "text/csv"
    assert config.log_level == 10
    assert config.code_dir == tmp_path


def test_submit_directory_on_s3_is_ignored() -> None:
    environ = {"SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/sourcedir.tar.gz"}
    config = parse_config(["--model-dir", "/models/m"], environ)
    assert config.code_dir == Path("/models/m/code")


def test_port_option_binds_loopback() -> None:
    config = parse_config(["--model-dir", "/m", "--port", "7000"], {})
    assert (config.host, config.port) == ("127.0.0.1", 7000)
    assert config.address == "127.0.0.1:7000"


def test_unix_socket_option(tmp_path: Path) -> None:
    config = parse_config(["--unix-socket", str(tmp_path / "s.sock"), "--parent-pid", "42"], {})
    assert config.unix_socket == tmp_path / "s.sock"
    assert config.parent_pid == 42
    assert config.address == f"unix:{tmp_path / 's.sock'}"


def test_socket_options_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse_config(["--unix-socket", "/tmp/s", "--port", "1"], {})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0", "expected a positive integer"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "many", "expected a positive integer"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "-1", "expected a positive number of seconds"),
        ("SAGEMAKER_CONTAINER_LOG_LEVEL", "loud", "expected a logging level number"),
        ("SAGEPORT_WORKER_HEARTBEAT_TIMEOUT", "0", "expected a positive number of seconds"),
        ("SAGEPORT_WORKER_HEARTBEAT_TIMEOUT", "soon", "expected a positive number of seconds"),
        ("SAGEPORT_WORKER_HEARTBEAT_TIMEOUT", "1.5", "expected at least 2 seconds"),
    ],
)
def test_invalid_environment(name: str, value: str, message: str) -> None:
    with pytest.raises(StartupError, match=message):
        parse_config(["--model-dir", "/m"], {name: value})


def test_heartbeat_timeout_from_environment() -> None:
    environ = {"SAGEPORT_WORKER_HEARTBEAT_TIMEOUT": "2.5"}
    config = parse_config(["--model-dir", "/m"], environ)
    assert config.heartbeat_timeout_seconds == 2.5
