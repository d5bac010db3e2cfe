"""Limits on failed console sign-ins: the token buckets with a fake clock, sign-in itself
in-process with that clock, and a real server behind a proxy on the same host."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from sageport.auth.keys import AccessKey, KeyRing, create_key, credentials_path
from sageport.console.responses import SignInFailed, TooManySignInAttempts, send_error
from sageport.console.sign_in_limits import FailureRate, Lockout, SignInLimiter, address_key
from sageport.console.signin import ConsoleSignIn
from sageport.protocol.asgi import Message
from tests.console.conftest import SignInServer
from tests.console.test_signin import key_credentials, request


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, max_addresses: int = 100) -> SignInLimiter:
    return SignInLimiter(
        per_address=FailureRate(burst=3, refill_seconds=10.0),
        server_wide=FailureRate(burst=5, refill_seconds=2.0),
        max_addresses=max_addresses,
        clock=clock,
    )


def test_address_locked_after_burst() -> None:
    clock = FakeClock()
    limits = limiter(clock)

    results = [limits.record_failure("192.0.2.1") for _ in range(3)]

    assert results == [(False, False), (False, False), (True, False)]
    assert limits.check("192.0.2.1") == Lockout(server_wide=False, retry_after=10)
    assert limits.check("192.0.2.2") is None


def test_address_regains_one_attempt_per_refill() -> None:
    clock = FakeClock()
    limits = limiter(clock)
    for _ in range(3):
        limits.record_failure("192.0.2.1")

    clock.now += 9.5
    still_locked = limits.check("192.0.2.1")
    clock.now += 0.5
    unlocked = limits.check("192.0.2.1")
    emptied_again = limits.record_failure("192.0.2.1")

    assert still_locked == Lockout(server_wide=False, retry_after=1)
    assert unlocked is None
    assert emptied_again == (True, False)
    assert limits.check("192.0.2.1") == Lockout(server_wide=False, retry_after=10)


def test_server_wide_limit_covers_all_addresses() -> None:
    clock = FakeClock()
    limits = limiter(clock)

    for number in range(5):
        limits.record_failure(f"192.0.2.{number}")

    assert limits.check("198.51.100.7") == Lockout(server_wide=True, retry_after=2)
    clock.now += 2
    assert limits.check("198.51.100.7") is None


def test_ipv6_network_shares_a_bucket() -> None:
    clock = FakeClock()
    limits = limiter(clock)

    for suffix in ("1", "2", "3"):
        limits.record_failure(f"2001:db8:1:2::{suffix}")

    assert limits.check("2001:db8:1:2:ffff::9") is not None
    assert limits.check("2001:db8:1:3::1") is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8::1", "2001:db8::/64"),
        ("not-an-address", "not-an-address"),
        (None, "unknown"),
    ],
)
def test_address_key(address: str | None, key: str) -> None:
    assert address_key(address) == key


def test_tracked_addresses_bounded() -> None:
    clock = FakeClock()
    limits = SignInLimiter(
        per_address=FailureRate(burst=1, refill_seconds=10.0),
        server_wide=FailureRate(burst=1000, refill_seconds=1.0),
        max_addresses=2,
        clock=clock,
    )

    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        limits.record_failure(address)

    # The oldest address is forgotten; the two most recent stay locked.
    assert limits.check("192.0.2.1") is None
    assert limits.check("192.0.2.2") is not None
    assert limits.check("192.0.2.3") is not None


# In-process sign-in: the ASGI handler of ConsoleSignIn with a fake clock.


def sign_in_call(
    sign_in: ConsoleSignIn, credentials: dict[str, Any], address: str
) -> tuple[int, dict[bytes, bytes], Any]:
    """Run one sign-in request; return its status, headers and JSON body."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/console/api/session",
        "scheme": "http",
        "headers": [(b"content-type", b"application/json")],
        "client": (address, 50000),
    }
    body = json.dumps(credentials).encode()
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        try:
            await sign_in.sign_in(scope, receive, send)
        except (SignInFailed, TooManySignInAttempts) as exc:
            await send_error(send, exc)

    asyncio.run(run())
    start, content = sent
    return start["status"], dict(start["headers"]), json.loads(content["body"])


@pytest.fixture
def key(tmp_path: Path) -> AccessKey:
    return create_key(credentials_path(tmp_path), "alice")


def console_sign_in(tmp_path: Path, clock: FakeClock) -> ConsoleSignIn:
    return ConsoleSignIn(KeyRing(credentials_path(tmp_path)), port=8765, limiter=limiter(clock))


def test_locked_out_even_with_right_secret(tmp_path: Path, key: AccessKey) -> None:
    clock = FakeClock()
    sign_in = console_sign_in(tmp_path, clock)
    right = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    wrong = {**right, "secret_access_key": "guess"}

    failures = [sign_in_call(sign_in, wrong, "192.0.2.1")[0] for _ in range(3)]
    status, headers, payload = sign_in_call(sign_in, right, "192.0.2.1")

    assert failures == [401, 401, 401]
    assert status == 429
    assert headers[b"retry-after"] == b"10"
    assert payload == {
        "error": {
            "code": "TooManySignInAttempts",
            "message": "Too many failed sign-ins from your address. Wait 10 seconds, "
            "then try again.",
        }
    }
    assert sign_in_call(sign_in, right, "192.0.2.9")[0] == 200


def test_right_secret_works_after_lockout(tmp_path: Path, key: AccessKey) -> None:
    clock = FakeClock()
    sign_in = console_sign_in(tmp_path, clock)
    right = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    for _ in range(3):
        sign_in_call(sign_in, {**right, "secret_access_key": "guess"}, "192.0.2.1")

    clock.now += 10
    status, _, payload = sign_in_call(sign_in, right, "192.0.2.1")

    assert status == 200
    assert payload["signed_in"] is True


def test_successful_sign_ins_not_limited(tmp_path: Path, key: AccessKey) -> None:
    clock = FakeClock()
    sign_in = console_sign_in(tmp_path, clock)
    right = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}

    statuses = [sign_in_call(sign_in, right, "192.0.2.1")[0] for _ in range(20)]

    assert statuses == [200] * 20


def test_lockout_logged_without_secret(
    tmp_path: Path, key: AccessKey, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    sign_in = console_sign_in(tmp_path, clock)
    guess = "a-guessed-secret-that-must-not-be-logged"
    wrong = {"access_key_id": key.access_key_id, "secret_access_key": guess}

    with caplog.at_level(logging.DEBUG, logger="sageport.console"):
        for _ in range(4):
            sign_in_call(sign_in, wrong, "192.0.2.1")

    assert "now rejects sign-ins from this address" in caplog.text
    assert "192.0.2.1:50000 rejected: too many failures" in caplog.text
    assert guess not in caplog.text
    assert key.secret_access_key not in caplog.text


# A real server: uvicorn takes the client from X-Forwarded-For when the peer is
# 127.0.0.1, as it is for a TLS proxy on the same host. Each test uses an
# address of its own, so the module's other sign-in tests are not locked out.


def test_server_locks_out_guessing_address(signin_server: SignInServer) -> None:
    server = signin_server.server
    right = key_credentials(signin_server)
    guess = "guessed-secret-5f2c9e"
    wrong = {**right, "secret_access_key": guess}
    guesser = {"X-Forwarded-For": "203.0.113.50"}

    failures = [
        request(server, "POST", "/console/api/session", wrong, guesser).status for _ in range(10)
    ]
    locked = request(server, "POST", "/console/api/session", right, guesser)
    other = request(
        server, "POST", "/console/api/session", right, {"X-Forwarded-For": "203.0.113.51"}
    )

    assert failures == [401] * 10
    assert locked.status == 429
    assert locked.json()["error"]["code"] == "TooManySignInAttempts"
    # The bucket refills while the test runs, so the wait is up to 30 seconds.
    assert re.fullmatch(
        r"Too many failed sign-ins from your address\. Wait (\d+) seconds?, then try again\.",
        locked.json()["error"]["message"],
    )
    assert 1 <= int(locked.headers["Retry-After"]) <= 30
    assert "Set-Cookie" not in locked.headers
    assert other.status == 200
    assert "203.0.113.50" in server.output()
    assert guess not in server.output()
