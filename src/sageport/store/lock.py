"""One server per data directory.

Two servers on one data directory would each take the other's instances for
ones a crashed server left behind, and kill them. ``lock_data_directory``
takes an exclusive ``flock`` on ``<data-dir>/serve.lock`` for the life of the
process; the kernel drops it when the process ends, even by ``kill -9``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "serve.lock"


class DataDirectoryInUse(Exception):
    """Another running server holds the data directory's lock."""


def lock_data_directory(data_dir: Path) -> IO[str]:
    """Lock ``data_dir`` for this process; keep the returned file open to keep the lock."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise DataDirectoryInUse(
            f"Another sageport serve (pid {holder}) is using the data directory {data_dir}. "
            "Stop it first, or give this server another --data-dir."
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock
