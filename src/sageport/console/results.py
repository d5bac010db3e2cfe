"""Recent test response bodies, kept on disk so that a card's download link survives a restart.

The invocation API sends the browser a bounded preview, and the whole body
goes to ``DATA_DIR/console-results/ID`` for the download link. The browser
keeps its cards across reloads and server restarts, so the bodies they link
to are kept as long: the store is bounded by count and total size, and drops
the oldest body first past either bound. Only a body that was pushed out that
way is gone, and the console shows a message in place of a broken link.

A file contains the content type, a newline, then the body. Files are
written whole through a rename, readable by the server's user only, so a
crash leaves either no file or a complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("sageport.console")

MAX_TOTAL_BYTES = 256 * 2**20
MAX_ENTRIES = 200
# Ids come from secrets.token_urlsafe(12). Anything else is rejected before it
# reaches the file system, so an id cannot name a path outside the directory.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16}")
_TEMPORARY_PREFIX = ".partial-"


@dataclass(frozen=True)
class StoredResult:
    """One response body and its content type."""

    body: bytes
    content_type: str


class ResultStore:
    """Response bodies in one directory, bounded by count and total size, oldest dropped first."""

    def __init__(
        self, directory: Path, max_bytes: int = MAX_TOTAL_BYTES, max_entries: int = MAX_ENTRIES
    ) -> None:
        self._directory = directory
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        # File sizes by id, oldest first.
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._load()

    async def put(self, body: bytes, content_type: str) -> str | None:
        """Store a body; return its id, or None if it could not be written."""
        result_id = secrets.token_urlsafe(12)
        header = content_type.replace("\r", " ").replace("\n", " ").encode("utf-8") + b"\n"
        try:
            await asyncio.to_thread(self._write, result_id, header + body)
        except OSError as exc:
            logger.error("Could not keep a console response body in %s: %s", self._directory, exc)
            return None

        self._sizes[result_id] = len(header) + len(body)
        self._total += self._sizes[result_id]
        self._evict()
        return result_id

    def exists(self, result_id: str) -> bool:
        """Return whether a body with this id is kept and its file still exists."""
        if result_id not in self._sizes:
            return False
        if (self._directory / result_id).is_file():
            return True
        self._forget(result_id)
        return False

    async def get(self, result_id: str) -> StoredResult | None:
        """Return the body with this id, or None if there is none (any more)."""
        if result_id not in self._sizes:
            return None
        try:
            data = await asyncio.to_thread((self._directory / result_id).read_bytes)
        except FileNotFoundError:
            # Deleted from outside the server, or evicted while it was being read.
            self._forget(result_id)
            return None
        header, _, body = data.partition(b"\n")
        return StoredResult(body, header.decode("utf-8", errors="replace"))

    def __len__(self) -> int:
        return len(self._sizes)

    def _load(self) -> None:
        """Index the bodies a previous run left, oldest first, and delete unfinished writes."""
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        found: list[tuple[float, str, int]] = []
        for entry in os.scandir(self._directory):
            if entry.name.startswith(_TEMPORARY_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
            elif _ID_PATTERN.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                status = entry.stat(follow_symlinks=False)
                found.append((status.st_mtime, entry.name, status.st_size))
        for _, result_id, size in sorted(found):
            self._sizes[result_id] = size
            self._total += size
        self._evict()

    def _write(self, result_id: str, data: bytes) -> None:
        # mkstemp creates the file with mode 0600 before anything is written.
        descriptor, temporary = tempfile.mkstemp(prefix=_TEMPORARY_PREFIX, dir=self._directory)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, self._directory / result_id)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _evict(self) -> None:
        while self._sizes and (
            self._total > self._max_bytes or len(self._sizes) > self._max_entries
        ):
            oldest = next(iter(self._sizes))
            self._forget(oldest)
            with contextlib.suppress(FileNotFoundError):
                (self._directory / oldest).unlink()

    def _forget(self, result_id: str) -> None:
        size = self._sizes.pop(result_id, None)
        if size is not None:
            self._total -= size
