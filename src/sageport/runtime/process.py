"""Process helpers shared by the supervisor and the workers: exit codes and parent death."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
# The model cannot be loaded, and the failure file contains the reason.
EXIT_MODEL_FAILURE = 3

# FailureReason in DescribeEndpoint is at most 1024 characters long.
MAX_REASON_CHARS = 1000
_PR_SET_PDEATHSIG = 1

logger = logging.getLogger("sageport.runtime")


def die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; return False if it already has.

    PR_SET_PDEATHSIG fires when the thread that forked this process exits,
    so the parent must start instances from a thread that lives as long as it.
    Elsewhere than Linux this only checks that the parent is still there.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(error))

    # The parent may have exited before prctl ran; then nothing would kill us.
    return os.getppid() == parent_pid


def one_line(reason: str) -> str:
    """Collapse ``reason`` to one line of at most MAX_REASON_CHARS characters."""
    line = " ".join(reason.split())
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 3] + "..."
    return line


def write_failure_file(path: Path | None, reason: str) -> None:
    """Replace the failure file with ``reason`` on one line, so readers never see half of it."""
    if path is None:
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(one_line(reason) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        logger.error("Writing the failure file %s failed: %s", path, exc)
