"""The SQLite store: hosting resources, running instances and queued async invocations.

Each resource (model, endpoint config, endpoint) is one row holding the
document that its Describe operation returns, plus a private ``spec`` document
for what only Sageport needs (an endpoint's snapshot of its config and models).
Names are unique per kind case-insensitively, as SageMaker's are, so rows are
keyed by the lower-cased name and keep the original spelling for display.

Calls are synchronous and short. The control plane is not the hot path, and a
WAL-mode SQLite write takes well under a millisecond on local disk, so the
event loop calls the store directly instead of hopping to a thread.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

# Each migration is a list of statements, run one by one inside a transaction
# (sqlite3's executescript would commit the open transaction first).
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE resources (
            kind TEXT NOT NULL,
            name_key TEXT NOT NULL,
            name TEXT NOT NULL,
            created REAL NOT NULL,
            modified REAL NOT NULL,
            status TEXT,
            doc TEXT NOT NULL,
            spec TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (kind, name_key)
        )""",
        """CREATE TABLE instances (
            instance_id TEXT PRIMARY KEY,
            endpoint_key TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started REAL NOT NULL
        )""",
    ],
    # InvokeEndpointAsync's queue. A row lives from the 202 response until its
    # output or failure is written; ``seq`` orders the queue.
    2: [
        """CREATE TABLE async_invocations (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            inference_id TEXT NOT NULL,
            endpoint_name TEXT NOT NULL,
            status TEXT NOT NULL,
            received REAL NOT NULL,
            expires REAL NOT NULL,
            not_before REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            request TEXT NOT NULL,
            body BLOB
        )""",
        """CREATE INDEX async_invocations_by_endpoint
            ON async_invocations (endpoint_name, status, seq)""",
    ],
}

# Statuses of a queued async invocation.
QUEUED = "queued"
RUNNING = "running"


def now() -> float:
    """Return the current time in epoch seconds, rounded to the millisecond.

    Responses carry times with millisecond precision, so stored times are
    rounded the same way: a time a client read back then compares equal in
    CreationTimeBefore and CreationTimeAfter filters.
    """
    return round(time.time(), 3)


class AlreadyExists(Exception):
    """A resource of that kind and name (in any case) is already stored."""


@dataclass
class Record:
    """One stored resource."""

    kind: str
    name: str
    created: float
    modified: float
    doc: dict[str, Any]
    spec: dict[str, Any] = field(default_factory=dict)
    status: str | None = None


@dataclass
class AsyncInvocationRow:
    """An accepted InvokeEndpointAsync request that has no output or failure written yet."""

    inference_id: str
    endpoint_name: str
    received: float
    # Epoch seconds after which the request fails as expired (RequestTTLSeconds).
    expires: float
    # The worker's inputs: locations, forwarded headers, timeout.
    request: dict[str, Any]
    # The inline Body, when the request had one instead of an InputLocation.
    body: bytes | None = None
    # Epoch seconds before which the worker does not take the row (a retry delay).
    not_before: float = 0.0
    # Times processing started without finishing: a server that died mid-invocation.
    attempts: int = 0
    seq: int = 0


@dataclass
class InstanceRow:
    """An instance process that a server started, for cleanup after a crash."""

    instance_id: str
    endpoint_key: str
    pid: int
    started: float


class Store:
    """Hosting resources in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL keeps every committed row across a crash of this process;
        # only an OS crash or power loss can drop the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"The store was written by a newer Sageport (schema {version}, "
                f"this one knows {SCHEMA_VERSION}). Upgrade Sageport or use another --data-dir."
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction():
                for statement in _MIGRATIONS[target]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # Resources.

    def insert(self, record: Record) -> None:
        """Store a new resource; raise AlreadyExists when the name is taken."""
        try:
            self._db.execute(
                "INSERT INTO resources (kind, name_key, name, created, modified, status, doc, spec)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.kind,
                    record.name.lower(),
                    record.name,
                    record.created,
                    record.modified,
                    record.status,
                    json.dumps(record.doc),
                    json.dumps(record.spec),
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"{record.kind} {record.name}") from exc

    def get(self, kind: str, name: str) -> Record | None:
        row = self._db.execute(
            "SELECT * FROM resources WHERE kind = ? AND name_key = ?", (kind, name.lower())
        ).fetchone()
        return None if row is None else _to_record(row)

    def list(self, kind: str) -> list[Record]:
        rows = self._db.execute("SELECT * FROM resources WHERE kind = ?", (kind,))
        return [_to_record(row) for row in rows]

    def update(self, record: Record) -> None:
        """Write back a changed record and stamp its modified time."""
        record.modified = now()
        self._db.execute(
            "UPDATE resources SET modified = ?, status = ?, doc = ?, spec = ?"
            " WHERE kind = ? AND name_key = ?",
            (
                record.modified,
                record.status,
                json.dumps(record.doc),
                json.dumps(record.spec),
                record.kind,
                record.name.lower(),
            ),
        )

    def delete(self, kind: str, name: str) -> bool:
        cursor = self._db.execute(
            "DELETE FROM resources WHERE kind = ? AND name_key = ?", (kind, name.lower())
        )
        return cursor.rowcount > 0

    # Instances.

    def add_instance(self, row: InstanceRow) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?)",
            (row.instance_id, row.endpoint_key, row.pid, row.started),
        )

    def remove_instance(self, instance_id: str) -> None:
        self._db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))

    def instances(self) -> Iterator[InstanceRow]:
        for row in self._db.execute("SELECT * FROM instances").fetchall():
            yield InstanceRow(row["instance_id"], row["endpoint_key"], row["pid"], row["started"])

    # Async invocations.

    def enqueue_invocation(self, row: AsyncInvocationRow) -> int:
        """Queue an async invocation; return its sequence number.

        The row is committed when this returns, so it survives a crash of the
        server process.
        """
        cursor = self._db.execute(
            "INSERT INTO async_invocations (inference_id, endpoint_name, status, received,"
            " expires, not_before, attempts, request, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.inference_id,
                row.endpoint_name,
                QUEUED,
                row.received,
                row.expires,
                row.not_before,
                row.attempts,
                json.dumps(row.request),
                row.body,
            ),
        )
        row.seq = int(cursor.lastrowid or 0)
        return row.seq

    def requeue_running_invocations(self) -> int:
        """Put invocations that a previous server was running back in the queue; return how many."""
        cursor = self._db.execute(
            "UPDATE async_invocations SET status = ? WHERE status = ?", (QUEUED, RUNNING)
        )
        return cursor.rowcount

    def endpoints_with_queued_invocations(self, at: float) -> Sequence[str]:
        """Return the endpoint names that have invocations ready to take at time ``at``."""
        rows = self._db.execute(
            "SELECT DISTINCT endpoint_name FROM async_invocations"
            " WHERE status = ? AND not_before <= ?",
            (QUEUED, at),
        )
        return [row["endpoint_name"] for row in rows]

    def claim_invocations(
        self, endpoint_name: str, limit: int, at: float, *, expired_only: bool = False
    ) -> Sequence[AsyncInvocationRow]:
        """Mark up to ``limit`` of an endpoint's queued invocations running, oldest first.

        ``expired_only`` takes only rows whose time to live ended before ``at``.
        Each claimed row's ``attempts`` goes up by one.
        """
        query = (
            "SELECT * FROM async_invocations"
            " WHERE endpoint_name = ? AND status = ? AND not_before <= ?"
        )
        if expired_only:
            query += " AND expires <= ?"
        query += " ORDER BY seq LIMIT ?"
        arguments: tuple[Any, ...] = (endpoint_name, QUEUED, at)
        if expired_only:
            arguments += (at,)

        with self._transaction():
            rows = self._db.execute(query, (*arguments, limit)).fetchall()
            self._db.executemany(
                "UPDATE async_invocations SET status = ?, attempts = attempts + 1 WHERE seq = ?",
                [(RUNNING, row["seq"]) for row in rows],
            )
        claimed = [_to_invocation(row) for row in rows]
        for invocation in claimed:
            invocation.attempts += 1
        return claimed

    def release_invocation(self, seq: int, not_before: float) -> None:
        """Undo a claim: queue the invocation again, to be taken no earlier than ``not_before``."""
        self._db.execute(
            "UPDATE async_invocations SET status = ?, not_before = ?, attempts = attempts - 1"
            " WHERE seq = ?",
            (QUEUED, not_before, seq),
        )

    def finish_invocation(self, seq: int) -> None:
        """Forget an invocation whose output or failure has been written."""
        self._db.execute("DELETE FROM async_invocations WHERE seq = ?", (seq,))


def _to_invocation(row: sqlite3.Row) -> AsyncInvocationRow:
    return AsyncInvocationRow(
        inference_id=row["inference_id"],
        endpoint_name=row["endpoint_name"],
        received=row["received"],
        expires=row["expires"],
        request=json.loads(row["request"]),
        body=row["body"],
        not_before=row["not_before"],
        attempts=row["attempts"],
        seq=row["seq"],
    )


def _to_record(row: sqlite3.Row) -> Record:
    return Record(
        kind=row["kind"],
        name=row["name"],
        created=row["created"],
        modified=row["modified"],
        status=row["status"],
        doc=json.loads(row["doc"]),
        spec=json.loads(row["spec"]),
    )
