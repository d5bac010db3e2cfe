"""The async invocation queue: order, claims, restarts, expiry and abandoned endpoints."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sageport.control.plane import ENDPOINT
from sageport.dataplane.asynchronous import AsyncInvocations
from sageport.dataplane.routing import EndpointRoute, RoutingTable
from sageport.store import AsyncInvocationRow, Record, Store


def queued(store: Store, inference_id: str, *, endpoint: str = "ep", expires: float = 0) -> int:
    now = time.time()
    return store.enqueue_invocation(
        AsyncInvocationRow(
            inference_id=inference_id,
            endpoint_name=endpoint,
            received=now,
            expires=expires or now + 3600,
            request={"Id": inference_id},
        )
    )


def test_claim_takes_oldest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    for inference_id in ("a", "b", "c"):
        queued(store, inference_id)

    first = store.claim_invocations("ep", 2, time.time())
    second = store.claim_invocations("ep", 2, time.time())

    assert [row.inference_id for row in first] == ["a", "b"]
    assert [row.attempts for row in first] == [1, 1]
    assert [row.inference_id for row in second] == ["c"]
    assert store.claim_invocations("ep", 2, time.time()) == []


def test_claim_is_per_endpoint(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    queued(store, "a", endpoint="one")
    queued(store, "b", endpoint="two")

    endpoints = sorted(store.endpoints_with_queued_invocations(time.time()))
    claimed = store.claim_invocations("two", 5, time.time())

    assert endpoints == ["one", "two"]
    assert [row.inference_id for row in claimed] == ["b"]
    assert store.endpoints_with_queued_invocations(time.time()) == ["one"]


def test_release_delays_and_keeps_attempts(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    seq = queued(store, "a")
    store.claim_invocations("ep", 1, time.time())

    store.release_invocation(seq, time.time() + 60)

    assert store.claim_invocations("ep", 1, time.time()) == []
    [row] = store.claim_invocations("ep", 1, time.time() + 61)
    assert row.attempts == 1


def test_running_rows_survive_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    queued(store, "a")
    queued(store, "b")
    store.claim_invocations("ep", 1, time.time())
    store.close()

    reopened = Store(tmp_path / "store.db")
    requeued = reopened.requeue_running_invocations()
    claimed = reopened.claim_invocations("ep", 5, time.time())

    assert requeued == 1
    assert [(row.inference_id, row.attempts) for row in claimed] == [("a", 2), ("b", 1)]


def test_finish_removes_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    seq = queued(store, "a")
    store.claim_invocations("ep", 1, time.time())

    store.finish_invocation(seq)
    store.requeue_running_invocations()

    assert store.endpoints_with_queued_invocations(time.time()) == []


def test_expired_only_skips_live_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    queued(store, "live")
    queued(store, "expired", expires=time.time() - 1)

    claimed = store.claim_invocations("ep", 5, time.time(), expired_only=True)

    assert [row.inference_id for row in claimed] == ["expired"]


def run_worker_until(invocations: AsyncInvocations, path: Path) -> str:
    async def run() -> str:
        invocations.start()
        try:
            deadline = time.monotonic() + 30
            while not path.exists():
                assert time.monotonic() < deadline, f"{path} was not written"
                await asyncio.sleep(0.02)
            return path.read_text()
        finally:
            await invocations.stop()

    return asyncio.run(run())


def async_row(tmp_path: Path, inference_id: str, *, expires: float) -> AsyncInvocationRow:
    return AsyncInvocationRow(
        inference_id=inference_id,
        endpoint_name="ep",
        received=expires - 60,
        expires=expires,
        request={
            "InputLocation": f"file://{tmp_path}/input",
            "Headers": {},
            "OutputLocation": f"file://{tmp_path}/out/{inference_id}.out",
            "FailureLocation": f"file://{tmp_path}/errors/{inference_id}-error.out",
            "InvocationTimeoutSeconds": 900,
        },
    )


def test_expired_request_writes_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    now = time.time()
    store.insert(Record(ENDPOINT, "ep", now, now, {}, {"EndpointConfig": {}}, status="InService"))
    routing = RoutingTable()
    # Starting after a restart: live rows wait, expired ones fail.
    routing.starting.add("ep")
    store.enqueue_invocation(async_row(tmp_path, "late", expires=now - 1))
    invocations = AsyncInvocations(store, routing, "123456789012")

    failure = run_worker_until(invocations, tmp_path / "errors" / "late-error.out")

    assert failure == (
        "The request expired: it waited in the queue for longer than RequestTTLSeconds (60 s) "
        "before endpoint ep could take it."
    )
    assert not (tmp_path / "out").exists()


def test_deleted_endpoint_fails_queued_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    store.enqueue_invocation(async_row(tmp_path, "orphan", expires=time.time() + 3600))
    invocations = AsyncInvocations(store, RoutingTable(), "123456789012")

    failure = run_worker_until(invocations, tmp_path / "errors" / "orphan-error.out")

    assert failure == "Endpoint ep was deleted or failed before it could process the request."


def test_missing_input_file_writes_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    now = time.time()
    store.insert(Record(ENDPOINT, "ep", now, now, {}, {"EndpointConfig": {}}, status="InService"))
    routing = RoutingTable()
    routing.put(EndpointRoute("ep", [], "arn:aws:logs:us-east-1:123456789012:log-group:ep"))
    store.enqueue_invocation(async_row(tmp_path, "input-missing", expires=now + 3600))
    invocations = AsyncInvocations(store, routing, "123456789012")

    failure = run_worker_until(invocations, tmp_path / "errors" / "input-missing-error.out")

    assert failure == f"Could not find the input at file://{tmp_path}/input: no such file."


def test_thrice_interrupted_request_fails(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    now = time.time()
    store.insert(Record(ENDPOINT, "ep", now, now, {}, {"EndpointConfig": {}}, status="InService"))
    routing = RoutingTable()
    routing.put(EndpointRoute("ep", [], "arn:aws:logs:us-east-1:123456789012:log-group:ep"))
    row = async_row(tmp_path, "crashy", expires=now + 3600)
    row.attempts = 3
    store.enqueue_invocation(row)
    invocations = AsyncInvocations(store, routing, "123456789012")

    failure = run_worker_until(invocations, tmp_path / "errors" / "crashy-error.out")

    assert failure == (
        "The invocation was interrupted 3 times by the Sageport server stopping while it ran, "
        "so it was not tried again. Check the server's log for a crash around those times."
    )
