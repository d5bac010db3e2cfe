"""Liveness fields shared by each worker and its supervisor, to find and kill stuck workers.

Three doubles per worker live in an anonymous shared mapping made before fork.
Each is a ``time.monotonic()`` value, and every process on the machine reads
that clock alike.

- The start of the model call in progress, or 0.0. The supervisor kills a
  worker whose call runs past the model server timeout.
- The start of the multi-model load in progress, or 0.0. The server's load
  deadline bounds loads, not the supervisor.
- The last heartbeat. The worker's serve loop writes it at least every
  ``HEARTBEAT_INTERVAL_SECONDS`` while it waits for a connection or a request
  or sends a response. The supervisor kills a ready worker that is in neither
  a call nor a load and whose heartbeat is older than the heartbeat timeout,
  because it hangs outside the model (for instance, it was sent SIGSTOP).
"""

from __future__ import annotations

import contextlib
import mmap
import time
from collections.abc import Iterator

# How long a worker's socket calls block before the worker beats again.
HEARTBEAT_INTERVAL_SECONDS = 1.0

_CALL, _LOAD, _BEAT = range(3)
_FIELDS = 3


class WorkerSlots:
    """The shared liveness fields of every worker of an instance."""

    def __init__(self, workers: int) -> None:
        self._map = mmap.mmap(-1, 8 * _FIELDS * workers)
        self._values: memoryview[float] = memoryview(self._map).cast("d")

    def slot(self, index: int) -> WorkerSlot:
        """Return the fields of worker ``index``, for that worker to write."""
        return WorkerSlot(self._values, index * _FIELDS)

    def reset(self, index: int, now: float = 0.0) -> None:
        """Clear worker ``index``'s call and load, and set its heartbeat to ``now``."""
        base = index * _FIELDS
        self._values[base + _CALL] = 0.0
        self._values[base + _LOAD] = 0.0
        self._values[base + _BEAT] = now

    def call_started(self, index: int) -> float:
        """Return when worker ``index``'s model call started, or 0.0 if it is in none."""
        return self._values[index * _FIELDS + _CALL]

    def stalled_for(self, index: int, now: float) -> float:
        """Return how long worker ``index`` has gone without a heartbeat outside the model.

        A worker in a model call or a load, or one that has not beaten yet,
        counts as not stalled (0.0). The call field is read before the heartbeat
        because the worker writes them in the other order (see ``end_call``).
        """
        base = index * _FIELDS
        if self._values[base + _CALL] or self._values[base + _LOAD]:
            return 0.0
        beat = self._values[base + _BEAT]
        return now - beat if beat else 0.0


class WorkerSlot:
    """One worker's liveness fields, written by that worker only."""

    __slots__ = ("_base", "_values")

    def __init__(self, values: memoryview[float], base: int) -> None:
        self._values = values
        self._base = base

    def beat(self) -> None:
        self._values[self._base + _BEAT] = time.monotonic()

    def start_call(self) -> None:
        self._values[self._base + _CALL] = time.monotonic()

    def end_call(self) -> None:
        # Beat first: a model call longer than the heartbeat timeout must not
        # leave a stale heartbeat visible once the call field is cleared.
        self.beat()
        self._values[self._base + _CALL] = 0.0

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Mark a multi-model load for the length of the block."""
        self._values[self._base + _LOAD] = time.monotonic()
        try:
            yield
        finally:
            self.beat()
            self._values[self._base + _LOAD] = 0.0
