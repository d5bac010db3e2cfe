"""FailureReasons for model data that cannot be written into the model directory.

An ``OSError`` from unpacking contains only the kernel's reason (``File
exists``, ``Not a directory``) and a path inside a temporary directory. Most
often the cause is the archive itself: a member written through a symbolic
link that points nowhere, or a file where an earlier member made a directory.
These functions find that cause on disk and return a message that names the
member. Only a full disk or a missing permission gets a hint about the
machine, because only then is the machine the thing to fix.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path, PurePosixPath

_FIX_LINKS = (
    "Rebuild the archive with the linked files in place of the links (tar -h), "
    "or without the broken link."
)
_FIX_MEMBERS = "Rebuild the archive so that no path is both a file and a directory."
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_PERMISSION = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def describe_unwritable_member(name: str, is_dir: bool, root: str, exc: OSError) -> str:
    """Return why archive member ``name`` could not be written under ``root``, and the fix.

    ``root`` is the real path of the model directory being unpacked into, and
    the earlier members are already on disk there.
    """
    where = f"the member {name!r}, which could not be unpacked"
    blocker = _describe_blocking_parent(name, root)
    if blocker is not None:
        return f"{where}: {blocker}"

    target = os.path.join(root, name)
    if not is_dir and os.path.isdir(target) and not os.path.islink(target):
        return f"{where}: an earlier member made {name!r} a directory. {_FIX_MEMBERS}"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{where}: its path is too long for this file system. Shorten the path."
    return f"{where}: {_error_text(exc)}."


def describe_missing_hard_link(name: str, linkname: str) -> str:
    """Return the reason for a hard link whose target is not an earlier archive member."""
    return (
        f"the member {name!r}, which could not be unpacked: it is a hard link to "
        f"{linkname!r}, which is not an earlier member of the archive. {_FIX_LINKS}"
    )


def describe_os_error(exc: OSError, model_dir: Path) -> str:
    """Return what failed and what to do, for an ``OSError`` while fetching model data.

    A file name inside ``model_dir`` (a temporary directory) is shown relative
    to it, as the path inside the model data.
    """
    where = ""
    if exc.filename:
        filename = os.fsdecode(exc.filename)
        if filename.startswith(f"{model_dir}{os.sep}"):
            where = f" on {os.path.relpath(filename, model_dir)!r} in the model data"
        else:
            where = f" on {filename}"
    return _error_text(exc, where)


def _error_text(exc: OSError, where: str = "") -> str:
    """Return the error's text and ``where``, with a hint only when the machine needs fixing."""
    text = f"{exc.strerror or exc}{where}"
    if exc.errno in _DISK_FULL:
        return f"{text}. Free disk space for Sageport's data directory"
    if exc.errno in _NO_PERMISSION:
        return f"{text}. Check the permissions of Sageport's data directory"
    return text


def _describe_blocking_parent(name: str, root: str) -> str | None:
    """Return what stops ``name`` from being created: a parent that is not a directory.

    The parent paths of ``name`` are checked from the top without following
    the last link, so the message names the first one that is a file, a link to a missing
    path, a link to a file or a link loop.
    """
    parts = PurePosixPath(name).parts
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        path = os.path.join(root, parent)
        if os.path.islink(path):
            problem = _describe_link_problem(path, parent)
            if problem is not None:
                return problem
        elif os.path.lexists(path) and not os.path.isdir(path):
            return f"{parent!r} is a file in the archive, not a directory. {_FIX_MEMBERS}"
    return None


def _describe_link_problem(path: str, parent: str) -> str | None:
    link = f"{parent!r} is a symbolic link to {os.readlink(path)!r}"
    try:
        os.stat(path)
    except FileNotFoundError:
        return f"{link}, a path that does not exist in the model data. {_FIX_LINKS}"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{link}, which leads back to itself. {_FIX_LINKS}"
        raise
    if not os.path.isdir(path):
        return f"{link}, which is a file, not a directory. {_FIX_LINKS}"
    return None
