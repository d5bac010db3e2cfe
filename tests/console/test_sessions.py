"""The console's in-memory session store, on a clock the tests move by hand."""

from __future__ import annotations

from sageport.console.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_session_found_by_cookie_only() -> None:
    store = SessionStore(clock=Clock())

    cookie, session = store.create("AKSPEXAMPLE", b"digest", "alice")

    assert store.get(cookie) is session
    assert store.get(cookie + "x") is None
    assert session.csrf_token != cookie


def test_session_ends_after_lifetime() -> None:
    clock = Clock()
    store = SessionStore(lifetime=100, idle_timeout=60, clock=clock)
    cookie, _ = store.create(None, None, "the console token")

    for _ in range(3):
        clock.now += 30
        assert store.get(cookie) is not None
    clock.now += 10

    assert store.get(cookie) is None
    assert len(store) == 0


def test_idle_session_ends() -> None:
    clock = Clock()
    store = SessionStore(lifetime=1000, idle_timeout=60, clock=clock)
    cookie, _ = store.create(None, None, "the console token")

    clock.now += 60

    assert store.get(cookie) is None


def test_oldest_unused_session_dropped_at_bound() -> None:
    store = SessionStore(max_sessions=2, clock=Clock())
    first, _ = store.create(None, None, "one")
    second, _ = store.create(None, None, "two")
    store.get(first)

    third, _ = store.create(None, None, "three")

    assert store.get(second) is None
    assert store.get(first) is not None
    assert store.get(third) is not None


def test_end_for_key_ends_only_that_key() -> None:
    store = SessionStore(clock=Clock())
    first, _ = store.create("AKSPONE", b"1", "one")
    second, _ = store.create("AKSPONE", b"1", "one again")
    other, _ = store.create("AKSPTWO", b"2", "two")

    ended = store.end_for_key("AKSPONE")

    assert ended == 2
    assert store.get(first) is None
    assert store.get(second) is None
    assert store.get(other) is not None


def test_end_removes_session() -> None:
    store = SessionStore(clock=Clock())
    cookie, _ = store.create(None, None, "one")

    assert store.end(cookie) is True
    assert store.end(cookie) is False
    assert store.get(cookie) is None
