"""Console sign-in under --auth sigv4, without a browser: credentials, the session cookie,
CSRF tokens, sign-out, deleted keys, and what must never reach the log or the HTML."""

from __future__ import annotations

import http.client
import io
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sageport.auth.keys import KeyRing, create_key, credentials_path
from sageport.console.signin import SIGN_IN_FAILED, ConsoleSignIn
from tests.console.conftest import SignInServer
from tests.harness import Server


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    server: Server,
    method: str,
    path: str,
    payload: object = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
) -> Response:
    """Send one request without following redirects or keeping cookies."""
    body = raw_body if raw_body is not None else None
    if payload is not None:
        body = json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json"} if body is not None else {}
    all_headers.update(headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()


@dataclass
class Signed:
    """A signed-in session: its cookie header, its CSRF token and the raw Set-Cookie."""

    cookie: str
    csrf_token: str
    set_cookie: str

    def headers(self, csrf: bool = True) -> dict[str, str]:
        headers = {"Cookie": self.cookie}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf_token
        return headers


def sign_in(server: Server, credentials: dict[str, Any], **headers: str) -> Signed:
    response = request(server, "POST", "/console/api/session", credentials, headers)
    assert response.status == 200, response.body
    set_cookie = response.headers["Set-Cookie"]
    return Signed(set_cookie.split(";")[0], response.json()["csrf_token"], set_cookie)


def key_credentials(signin: SignInServer) -> dict[str, str]:
    return {
        "access_key_id": signin.key.access_key_id,
        "secret_access_key": signin.key.secret_access_key,
    }


def altered(secret: str) -> str:
    """Return ``secret`` with its last character changed; random secrets may end in any one."""
    return secret[:-1] + ("y" if secret.endswith("x") else "x")


def call_count(signin: SignInServer) -> int:
    return len(signin.calls_file.read_text().splitlines())


def invoke(signin: SignInServer, headers: dict[str, str]) -> Response:
    path = f"/console/api/endpoints/{signin.endpoint}/invocations"
    envelope = {"body": '{"hello": 1}', "content_type": "application/json"}
    return request(signin.server, "POST", path, envelope, headers)


class Stream(io.StringIO):
    """A stderr stand-in that is a terminal or a redirected file."""

    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize("terminal", [True, False])
def test_token_printed_only_to_terminal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, terminal: bool
) -> None:
    sign_in = ConsoleSignIn(KeyRing(credentials_path(tmp_path)), port=8765)
    stderr = Stream(terminal)

    with caplog.at_level(logging.INFO, logger="sageport.console"):
        sign_in.publish_token(tmp_path, stderr)
    written = (tmp_path / "console-token").read_text()
    mode = (tmp_path / "console-token").stat().st_mode & 0o777
    sign_in.withdraw_token()

    assert written == sign_in.console_token + "\n"
    assert mode == 0o600
    assert (sign_in.console_token in stderr.getvalue()) is terminal
    assert sign_in.console_token not in caplog.text
    assert "Console sign-in token written to" in caplog.text
    assert not (tmp_path / "console-token").exists()


def test_token_file_private_and_unlogged(signin_server: SignInServer) -> None:
    path = signin_server.server.data_dir / "console-token"

    assert path.stat().st_mode & 0o777 == 0o600
    assert len(signin_server.console_token) >= 40
    assert signin_server.console_token not in signin_server.server.output()
    assert f"Console sign-in token written to {path}" in signin_server.server.output()


def test_key_sign_in_sets_strict_cookie(signin_server: SignInServer) -> None:
    server = signin_server.server

    response = request(server, "POST", "/console/api/session", key_credentials(signin_server))
    payload = response.json()
    attributes = [part.strip() for part in response.headers["Set-Cookie"].split(";")]

    assert response.status == 200
    assert payload["auth"] == "sigv4"
    assert payload["signed_in"] is True
    assert payload["user"] == f"alice (access key ...{signin_server.key.access_key_id[-4:]})"
    assert len(payload["csrf_token"]) >= 40
    assert payload["expires_at"] > time.time() + 7 * 3600
    assert attributes[0].startswith(f"sageport_session_{server.port}=")
    assert len(attributes[0].split("=", 1)[1]) >= 40
    assert sorted(attributes[1:]) == ["HttpOnly", "Max-Age=28800", "Path=/", "SameSite=Strict"]
    assert response.headers["Cache-Control"] == "no-store"


def test_cookie_secure_behind_https_proxy(signin_server: SignInServer) -> None:
    signed = sign_in(
        signin_server.server, key_credentials(signin_server), **{"X-Forwarded-Proto": "https"}
    )

    assert "Secure" in [part.strip() for part in signed.set_cookie.split(";")]


def test_console_token_signs_in(signin_server: SignInServer) -> None:
    server = signin_server.server
    signed = sign_in(server, {"console_token": signin_server.console_token})

    described = request(server, "GET", "/console/api/session", headers=signed.headers(csrf=False))
    listed = request(server, "GET", "/console/api/endpoints", headers=signed.headers(csrf=False))

    assert described.status == 200
    assert described.json()["user"] == "the console token"
    assert described.json()["csrf_token"] == signed.csrf_token
    assert listed.status == 200
    assert listed.json()["total"] == 1


@pytest.mark.parametrize(
    "case",
    ["wrong secret", "unknown key", "bad console token", "unwanted session token", "empty body"],
)
def test_failed_sign_ins_look_alike(signin_server: SignInServer, case: str) -> None:
    key = signin_server.key
    credentials: dict[str, Any] = {
        "wrong secret": {
            "access_key_id": key.access_key_id,
            "secret_access_key": altered(key.secret_access_key),
        },
        "unknown key": {
            "access_key_id": "AKSPNOSUCHKEY0000000",
            "secret_access_key": key.secret_access_key,
        },
        "bad console token": {"console_token": altered(signin_server.console_token)},
        "unwanted session token": {**key_credentials(signin_server), "session_token": "abc"},
        "empty body": {},
    }[case]

    response = request(signin_server.server, "POST", "/console/api/session", credentials)

    assert response.status == 401
    assert response.json() == {"error": {"code": "SignInFailed", "message": SIGN_IN_FAILED}}
    assert "Set-Cookie" not in response.headers


def test_session_token_key_needs_token(signin_server: SignInServer) -> None:
    server = signin_server.server
    key = create_key(credentials_path(server.data_dir), "carol", with_session_token=True)
    credentials = {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    time.sleep(1.2)  # the server rereads the credentials file at most once a second

    without = request(server, "POST", "/console/api/session", credentials)
    with_token = request(
        server, "POST", "/console/api/session", {**credentials, "session_token": key.session_token}
    )

    assert without.status == 401
    assert without.json()["error"]["message"] == SIGN_IN_FAILED
    assert with_token.status == 200


def test_cross_origin_sign_in_rejected(signin_server: SignInServer) -> None:
    response = request(
        signin_server.server,
        "POST",
        "/console/api/session",
        key_credentials(signin_server),
        {"Origin": "http://attacker.example"},
    )

    assert response.status == 403
    assert response.json()["error"]["code"] == "CrossOriginRejected"
    assert "Set-Cookie" not in response.headers


def test_signed_out_api_is_401(signin_server: SignInServer) -> None:
    server = signin_server.server
    stale = {"Cookie": f"sageport_session_{server.port}=not-a-session"}

    for path in ("/console/api/endpoints", "/console/api/settings", "/console/api/session"):
        response = request(server, "GET", path, headers=stale)
        assert response.status == 401, path
        assert response.json()["error"]["code"] == "NotSignedIn", path
    posted = invoke(signin_server, stale)
    assert posted.status == 401
    assert posted.json()["error"]["code"] == "NotSignedIn"


def test_signed_out_pages_redirect(signin_server: SignInServer) -> None:
    server = signin_server.server

    home = request(server, "GET", "/")
    endpoint = request(server, "GET", "/console/endpoints/guarded?tab=test")
    form = request(server, "GET", "/console/signin")
    script = request(server, "GET", "/console/static/js/signin.js")

    assert home.status == 303
    assert home.headers["Location"] == "/console/signin?next=%2F"
    assert endpoint.status == 303
    assert endpoint.headers["Location"] == (
        "/console/signin?next=%2Fconsole%2Fendpoints%2Fguarded%3Ftab%3Dtest"
    )
    assert form.status == 200
    assert b'src="/console/static/js/app.js"' in form.body
    assert script.status == 200


@pytest.mark.parametrize("csrf", [None, "wrong-token", ""])
def test_invoke_without_csrf_rejected(signin_server: SignInServer, csrf: str | None) -> None:
    signed = sign_in(signin_server.server, key_credentials(signin_server))
    headers = signed.headers(csrf=False)
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    before = call_count(signin_server)

    response = invoke(signin_server, headers)

    assert response.status == 403
    assert response.json()["error"]["code"] == "InvalidCsrfToken"
    assert call_count(signin_server) == before


def test_csrf_of_another_session_rejected(signin_server: SignInServer) -> None:
    first = sign_in(signin_server.server, key_credentials(signin_server))
    second = sign_in(signin_server.server, key_credentials(signin_server))
    before = call_count(signin_server)

    response = invoke(signin_server, {"Cookie": first.cookie, "X-CSRF-Token": second.csrf_token})

    assert response.status == 403
    assert call_count(signin_server) == before


def test_invoke_with_csrf_reaches_model(signin_server: SignInServer) -> None:
    signed = sign_in(signin_server.server, key_credentials(signin_server))
    before = call_count(signin_server)

    response = invoke(signin_server, signed.headers())

    assert response.status == 200
    assert response.json()["status"] == "Complete"
    assert json.loads(response.json()["body"]["text"])["echo"] == {"hello": 1}
    assert call_count(signin_server) == before + 1


def test_sign_out_ends_session(signin_server: SignInServer) -> None:
    server = signin_server.server
    signed = sign_in(server, key_credentials(signin_server))

    unprotected = request(server, "POST", "/console/api/signout", {}, signed.headers(csrf=False))
    still_in = request(server, "GET", "/console/api/session", headers=signed.headers())
    signed_out = request(server, "POST", "/console/api/signout", {}, signed.headers())
    after = request(server, "GET", "/console/api/endpoints", headers=signed.headers())
    cleared = [part.strip() for part in signed_out.headers["Set-Cookie"].split(";")]

    assert unprotected.status == 403
    assert still_in.status == 200
    assert signed_out.status == 200
    assert cleared[0] == f"sageport_session_{server.port}="
    assert "Max-Age=0" in cleared
    assert after.status == 401


def test_deleted_key_ends_its_sessions(signin_server: SignInServer) -> None:
    server = signin_server.server
    key = create_key(credentials_path(server.data_dir), "dave")
    time.sleep(1.2)  # the server rereads the credentials file at most once a second
    signed = sign_in(
        server, {"access_key_id": key.access_key_id, "secret_access_key": key.secret_access_key}
    )
    other = sign_in(server, key_credentials(signin_server))
    assert request(server, "GET", "/console/api/endpoints", headers=signed.headers()).status == 200

    deleted = subprocess.run(
        [
            *(sys.executable, "-m", "sageport", "keys", "delete", key.access_key_id),
            *("--data-dir", str(server.data_dir)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    deadline = time.monotonic() + 30
    status = 200
    while status == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        status = request(server, "GET", "/console/api/endpoints", headers=signed.headers()).status

    assert deleted.returncode == 0, deleted.stderr
    assert status == 401
    assert request(server, "GET", "/console/api/endpoints", headers=other.headers()).status == 200
    assert "Ended 1 console sessions of dave" in server.output()


def test_no_secret_in_log_or_html(signin_server: SignInServer) -> None:
    server = signin_server.server
    by_key = sign_in(server, key_credentials(signin_server))
    by_token = sign_in(server, {"console_token": signin_server.console_token})
    request(server, "POST", "/console/api/session", {"console_token": "x" * 43})
    for signed in (by_key, by_token):
        assert invoke(signin_server, signed.headers()).status == 200
    pages = [
        request(server, "GET", path, headers=by_key.headers()).body.decode()
        for path in ("/", "/console/endpoints/guarded?tab=test", "/console/signin")
    ]
    for signed in (by_key, by_token):
        request(server, "POST", "/console/api/signout", {}, signed.headers())
    log = server.output()

    secrets = {
        "secret access key": signin_server.key.secret_access_key,
        "console token": signin_server.console_token,
        "key session cookie": by_key.cookie.split("=", 1)[1],
        "token session cookie": by_token.cookie.split("=", 1)[1],
        "key CSRF token": by_key.csrf_token,
        "token CSRF token": by_token.csrf_token,
    }
    for name, secret in secrets.items():
        assert secret not in log, name
        for html in pages:
            assert secret not in html, name
    assert "Console sign-in from 127.0.0.1" in log
    assert "failed: wrong console token" in log


def test_none_mode_console_stays_open(console_server: Server) -> None:
    described = request(console_server, "GET", "/console/api/session")
    form = request(console_server, "GET", "/console/signin")
    home = request(console_server, "GET", "/")

    assert described.status == 200
    assert described.json() == {"auth": "none", "signed_in": False}
    assert form.status == 303
    assert form.headers["Location"] == "/"
    assert home.status == 200


@pytest.mark.parametrize("depth", [65, 5000, 200_000])
def test_deeply_nested_envelope_rejected(
    console_server: Server, behaviour_endpoint: str, depth: int
) -> None:
    body = b'{"body": "x", "headers": ' + b"[" * depth + b"]" * depth + b"}"
    path = f"/console/api/endpoints/{behaviour_endpoint}/invocations"

    response = request(console_server, "POST", path, raw_body=body)
    alive = request(console_server, "GET", "/console/api/settings")

    assert response.status == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert response.json()["error"]["message"].startswith("The test request is invalid.")
    assert alive.status == 200


def test_empty_envelope_rejected(console_server: Server, behaviour_endpoint: str) -> None:
    path = f"/console/api/endpoints/{behaviour_endpoint}/invocations"

    response = request(console_server, "POST", path, raw_body=b"  ")

    assert response.status == 400
    assert response.json()["error"]["message"].startswith("The test request is empty")
