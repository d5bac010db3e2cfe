"""Recent response bodies, kept in memory so the browser can fetch a large body on demand.

The invocation API sends the browser a bounded preview; the whole body stays
here under a random id for the download link. Entries are evicted oldest first
past a byte budget, and a server restart discards them all.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

MAX_TOTAL_BYTES = 256 * 2**20
MAX_ENTRIES = 200


@dataclass(frozen=True)
class StoredResult:
    """One response body and its content type."""

    body: bytes
    content_type: str


class ResultStore:
    """An in-memory LRU of response bodies, bounded by count and total size."""

    def __init__(self, max_bytes: int = MAX_TOTAL_BYTES, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, StoredResult] = OrderedDict()
        self._size = 0
        self._max_bytes = max_bytes
        self._max_entries = max_entries

    def put(self, body: bytes, content_type: str) -> str:
        """Store a body; return its id."""
        result_id = secrets.token_urlsafe(12)
        self._entries[result_id] = StoredResult(body, content_type)
        self._size += len(body)
        while self._entries and (
            self._size > self._max_bytes or len(self._entries) > self._max_entries
        ):
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted.body)
        return result_id

    def get(self, result_id: str) -> StoredResult | None:
        return self._entries.get(result_id)
