"""Test response bodies kept for download links: bounded on disk, and still there after a
server restart."""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.request
from pathlib import Path

from sageport.console.results import ResultStore
from tests.console.conftest import TargetServer
from tests.console.test_api import invoke
from tests.harness import Server


def put(store: ResultStore, body: bytes, content_type: str = "text/plain") -> str:
    result_id = asyncio.run(store.put(body, content_type))
    assert result_id is not None
    return result_id


def get(store: ResultStore, result_id: str) -> tuple[bytes, str] | None:
    stored = asyncio.run(store.get(result_id))
    return None if stored is None else (stored.body, stored.content_type)


def test_store_returns_body_and_type(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results")

    result_id = put(store, b"line one\nline two", "application/json")

    assert get(store, result_id) == (b"line one\nline two", "application/json")
    assert (tmp_path / "results" / result_id).stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "results").stat().st_mode & 0o777 == 0o700


def test_store_drops_oldest_past_count(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, max_entries=2)

    first, second, third = (put(store, body) for body in (b"1", b"2", b"3"))

    assert get(store, first) is None
    assert not store.exists(first)
    assert not (tmp_path / first).exists()
    assert get(store, second) == (b"2", "text/plain")
    assert get(store, third) == (b"3", "text/plain")


def test_store_drops_oldest_past_size(tmp_path: Path) -> None:
    # Each file is the 11-byte "text/plain\n" header plus its body.
    store = ResultStore(tmp_path, max_bytes=50)

    first = put(store, b"a" * 20)
    second = put(store, b"b" * 20)

    assert not store.exists(first)
    assert store.exists(second)


def test_store_reloads_after_restart(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    older = put(store, b"older")
    newer = put(store, b"newer")
    os.utime(tmp_path / older, (1000, 1000))
    (tmp_path / ".partial-abc").write_bytes(b"unfinished")
    (tmp_path / "notes.txt").write_bytes(b"not a result")

    reopened = ResultStore(tmp_path, max_entries=1)

    assert get(reopened, older) is None
    assert get(reopened, newer) == (b"newer", "text/plain")
    assert not (tmp_path / ".partial-abc").exists()
    assert (tmp_path / "notes.txt").exists()
    assert len(reopened) == 1


def test_store_rejects_paths_as_ids(tmp_path: Path) -> None:
    directory = tmp_path / "results"
    store = ResultStore(directory)
    (tmp_path / "secret.txt").write_text("x")

    assert get(store, "../secret.txt") is None
    assert not store.exists("../secret.txt")


def test_deleted_file_counts_as_gone(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    result_id = put(store, b"body")

    (tmp_path / result_id).unlink()

    assert not store.exists(result_id)
    assert get(store, result_id) is None


def status_of(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_download_link_survives_restart(tmp_path: Path, target_server: TargetServer) -> None:
    server = Server(
        tmp_path / "data",
        extra_environment={"SAGEPORT_ALLOW_TEST_TARGET": target_server.origin},
    )
    server.start()
    try:
        status, card = invoke(
            server, "any", body="kept across restarts", custom_url=target_server.origin + "/kept"
        )
        assert status == 200
        assert card["status"] == "Complete"
        link = server.url + card["body"]["download"]
        before = status_of(link)

        assert server.stop() == 0
        server.start()
        after = status_of(link)
        head = status_of(server.url + card["body"]["url"], "HEAD")
        unknown = status_of(server.url + "/console/api/results/AAAAAAAAAAAAAAAA", "HEAD")
    finally:
        server.stop()

    assert before[0] == 200
    assert b"kept across restarts" in before[1]
    assert after == before
    assert head == (200, b"")
    assert unknown == (404, b"")
