"""The run directory: where a server's instances keep their Unix sockets and failure files.

A Unix socket path is limited to 108 bytes on Linux (``sun_path`` in
``unix(7)``), so the run directory is a short temporary directory rather than
a folder of the data directory. A server stopped by SIGTERM removes it. A
server killed by SIGKILL cannot, so the next server on the same data
directory removes it on start-up.

Each side records the other. ``<data-dir>/run-directory`` contains the path of
the run directory, and the run directory's ``data-dir`` file contains the path
of the data directory. A stale run directory is removed only when both agree,
and only by a server that holds the data directory's lock
(``sageport.store.lock``). The server that made it has therefore ended. Run
directories of servers on other data directories are never touched, whether
those servers are running or not.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

logger = logging.getLogger("sageport.hosting")

RECORD_FILE = "run-directory"
OWNER_FILE = "data-dir"
_PREFIX = "sageport-"


def create_run_directory(data_dir: Path) -> Path:
    """Remove the run directory a killed server on ``data_dir`` left behind, then make a new one.

    The caller must hold the data directory's lock.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_run_directory(data_dir)

    run_dir = Path(tempfile.mkdtemp(prefix=_PREFIX))
    (run_dir / OWNER_FILE).write_text(str(data_dir), encoding="utf-8")
    record = data_dir / RECORD_FILE
    partial = record.with_name(f"{record.name}.partial")
    partial.write_text(str(run_dir), encoding="utf-8")
    partial.replace(record)
    return run_dir


def remove_run_directory(data_dir: Path, run_dir: Path) -> None:
    """Remove this server's run directory and its record, on a clean shutdown."""
    shutil.rmtree(run_dir, ignore_errors=True)
    (data_dir / RECORD_FILE).unlink(missing_ok=True)


def remove_stale_run_directory(data_dir: Path) -> None:
    """Remove the run directory that ``data_dir`` records, if it names ``data_dir`` back."""
    record = data_dir / RECORD_FILE
    try:
        recorded = Path(record.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        return

    if _is_owned_run_directory(recorded, data_dir):
        try:
            shutil.rmtree(recorded)
        except OSError as exc:
            logger.warning("Could not remove the stale run directory %s: %s", recorded, exc)
        else:
            logger.info("Removed the run directory %s left by a previous server", recorded)
    record.unlink(missing_ok=True)


def _is_owned_run_directory(path: Path, data_dir: Path) -> bool:
    # lstat, so that a symbolic link planted at the recorded path is never taken
    # for the run directory.
    if not path.is_absolute() or not path.name.startswith(_PREFIX):
        return False
    try:
        status = path.lstat()
        owner = (path / OWNER_FILE).read_text(encoding="utf-8")
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and owner == str(data_dir)
