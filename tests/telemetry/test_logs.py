"""Reading instance log files: names are checked, and no file outside the logs directory is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from sageport.telemetry.logs import InvalidEndpointName, instance_logs


def write_log(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_instance_logs_lists_files(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    write_log(logs_dir / "echo" / "AllTraffic" / "i-1.log", "ready\n")

    found = instance_logs(logs_dir, "Echo")

    assert [(log.variant, log.instance_id) for log in found] == [("AllTraffic", "i-1")]


@pytest.mark.parametrize(
    "name", ["../secret", "..", "a/b", "..%2Fsecret", "-echo", "", "e" * 64, "echo.log"]
)
def test_instance_logs_rejects_invalid_name(tmp_path: Path, name: str) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    write_log(tmp_path / "secret" / "v" / "x.log", "SECRET")

    with pytest.raises(InvalidEndpointName) as excinfo:
        instance_logs(logs_dir, name)

    assert "Invalid endpoint name" in str(excinfo.value)


def test_instance_logs_skips_links_out(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    outside = write_log(tmp_path / "secret.log", "SECRET")
    inside = write_log(logs_dir / "echo" / "v" / "i-1.log", "ready\n")
    (logs_dir / "echo" / "v" / "i-2.log").symlink_to(outside)
    (logs_dir / "echo" / "w").symlink_to(tmp_path, target_is_directory=True)

    found = instance_logs(logs_dir, "echo")

    assert [log.path for log in found] == [inside]
