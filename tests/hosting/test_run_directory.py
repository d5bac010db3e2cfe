"""Tests for the run directory of instance sockets (sageport.hosting.run_directory)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sageport.hosting.run_directory import (
    OWNER_FILE,
    RECORD_FILE,
    create_run_directory,
    remove_run_directory,
)


@pytest.fixture
def created_dirs() -> Iterator[list[Path]]:
    """Collect the temporary directories a test makes, and remove them afterwards."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)


def test_stale_run_dir_removed(tmp_path: Path, created_dirs: list[Path]) -> None:
    data_dir = tmp_path / "data"
    stale = create_run_directory(data_dir)
    (stale / "i-1.sock").touch()
    created_dirs.append(stale)

    fresh = create_run_directory(data_dir)
    created_dirs.append(fresh)

    assert not stale.exists()
    assert fresh.is_dir()
    assert (data_dir / RECORD_FILE).read_text() == str(fresh)
    assert (fresh / OWNER_FILE).read_text() == str(data_dir)


def test_other_data_dirs_run_dir_kept(tmp_path: Path, created_dirs: list[Path]) -> None:
    other = create_run_directory(tmp_path / "other")
    created_dirs.append(other)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # A record that points at a run directory another data directory owns.
    (data_dir / RECORD_FILE).write_text(str(other))

    created_dirs.append(create_run_directory(data_dir))

    assert other.is_dir()
    assert (other / OWNER_FILE).read_text() == str(tmp_path / "other")


def test_recorded_symlink_not_followed(tmp_path: Path, created_dirs: list[Path]) -> None:
    data_dir = tmp_path / "data"
    target = create_run_directory(data_dir)
    created_dirs.append(target)
    link = Path(tempfile.mktemp(prefix="sageport-"))
    link.symlink_to(target, target_is_directory=True)
    created_dirs.append(link)
    (data_dir / RECORD_FILE).write_text(str(link))

    created_dirs.append(create_run_directory(data_dir))

    assert link.is_symlink()
    assert target.is_dir()


def test_clean_shutdown_removes_record(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_dir = create_run_directory(data_dir)

    remove_run_directory(data_dir, run_dir)

    assert not run_dir.exists()
    assert not (data_dir / RECORD_FILE).exists()
