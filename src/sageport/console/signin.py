"""Console sign-in while ``--auth sigv4`` is on: credentials, session cookies and CSRF tokens.

A user signs in with an access key pair from the same key ring SigV4 uses, or
with the console token that the server makes at start. Either way the server
sets an HttpOnly, SameSite=Strict session cookie (Secure over https) and
returns a CSRF token that the page sends back in ``X-CSRF-Token`` on every
POST. Secrets and tokens are compared as SHA-256 digests with
``hmac.compare_digest``, so the comparison's time does not depend on how
much of a secret matches. Every failed sign-in gets the same error, and an
unknown access key is compared against a random secret, so the response does
not reveal which key ids exist. Failed sign-ins are rate-limited per client
address and for the whole server (``sign_in_limits``).

The console token is never logged: it goes to a file readable only by the
server's user, and to stderr only when stderr is a terminal (see
``publish_token``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, TextIO

from sageport.auth.keys import AccessKey, KeyRing
from sageport.console.bodies import read_json_object
from sageport.console.responses import (
    CsrfRejected,
    NotSignedIn,
    SignInFailed,
    TooManySignInAttempts,
    send_json,
)
from sageport.console.sessions import Session, SessionStore, digest
from sageport.console.sign_in_limits import Lockout, SignInLimiter
from sageport.protocol.asgi import Headers, Receive, Scope, Send, header

logger = logging.getLogger("sageport.console")

SIGN_IN_PAGE = "/console/signin"
CSRF_HEADER = b"x-csrf-token"
TOKEN_FILE = "console-token"  # noqa: S105
# A sign-in body contains an access key pair and a session token of a few hundred bytes each.
MAX_SIGN_IN_BODY = 16 * 1024
SIGN_IN_FAILED = (
    "Sign-in failed: the access key ID, secret access key and session token, "
    "or the console token, are not valid."
)


class ConsoleSignIn:
    """Signs console users in and out and finds the session of each request."""

    def __init__(
        self,
        keys: KeyRing,
        port: int,
        sessions: SessionStore | None = None,
        console_token: str | None = None,
        limiter: SignInLimiter | None = None,
    ) -> None:
        self._keys = keys
        self.sessions = sessions or SessionStore()
        self._limiter = limiter or SignInLimiter()
        self.console_token = console_token or secrets.token_urlsafe(32)
        self._token_digest = digest(self.console_token)
        # Browsers do not separate cookies by port, so two servers on one host
        # each need a cookie name of their own.
        self.cookie_name = f"sageport_session_{port}"
        # Unknown access keys are compared against this, which no client can know.
        self._decoy_digest = digest(secrets.token_urlsafe(30))
        self._token_path: Path | None = None

    def authenticate(self, scope: Scope) -> Session | None:
        """Return the live session of the request's cookie, or None.

        A session signed in with an access key ends once that key is deleted,
        made inactive or given another secret. The key ring rereads the
        credentials file at most once a second, so that takes about a second.
        """
        cookie = self._cookie(scope)
        if cookie is None:
            return None
        session = self.sessions.get(cookie)
        if session is None or session.access_key_id is None:
            return session

        key = self._keys.lookup(session.access_key_id)
        if key is None or not key.active or digest(key.secret_access_key) != session.secret_digest:
            ended = self.sessions.end_for_key(session.access_key_id)
            logger.info(
                "Ended %d console sessions of %s: its access key was deleted or changed",
                ended,
                session.label,
            )
            return None
        return session

    def require(self, scope: Scope, state_changing: bool) -> Session:
        """Return the request's session; raise NotSignedIn or CsrfRejected."""
        session = self.authenticate(scope)
        if session is None:
            raise NotSignedIn(
                f"You are not signed in, or your session has ended. Sign in at {SIGN_IN_PAGE}."
            )
        if state_changing:
            _check_csrf(scope, session)
        return session

    async def sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the credentials in the body, start a session and set its cookie.

        Raises TooManySignInAttempts, before the body is read, while the
        client's address or the server has failed to sign in too often.
        """
        client = _client(scope)
        address = _client_address(scope)
        lockout = self._limiter.check(address)
        if lockout is not None:
            logger.debug("Console sign-in from %s rejected: too many failures", client)
            raise TooManySignInAttempts(_lockout_message(lockout), lockout.retry_after)

        body = await read_json_object(scope, receive, MAX_SIGN_IN_BODY, "The sign-in request")
        access_key_id, secret_digest, label, reason = self._check_credentials(body)
        if reason is not None:
            self._record_failure(client, address, reason)
            raise SignInFailed(SIGN_IN_FAILED)

        cookie, session = self.sessions.create(access_key_id, secret_digest, label)
        logger.info("Console sign-in from %s as %s", client, label)
        set_cookie = self._set_cookie(scope, cookie, int(self.sessions.lifetime))
        await send_json(send, 200, describe(session), [(b"set-cookie", set_cookie)])

    def _record_failure(self, client: str, address: str | None, reason: str) -> None:
        address_locked, server_locked = self._limiter.record_failure(address)
        consequence = ""
        if server_locked:
            consequence = "; the server now rejects sign-ins from every address for a while"
        elif address_locked:
            consequence = "; the server now rejects sign-ins from this address for a while"
        logger.warning("Console sign-in from %s failed: %s%s", client, reason, consequence)

    async def sign_out(self, scope: Scope, send: Send, session: Session) -> None:
        """End the request's session and clear its cookie."""
        cookie = self._cookie(scope)
        if cookie is not None:
            self.sessions.end(cookie)
        logger.info("Console sign-out of %s", session.label)
        cleared: Headers = [(b"set-cookie", self._set_cookie(scope, "", 0))]
        await send_json(send, 200, {"signed_in": False}, cleared)

    def _check_credentials(
        self, body: dict[str, Any]
    ) -> tuple[str | None, bytes | None, str, str | None]:
        """Return (access key id, secret digest, label, failure reason or None)."""
        if "console_token" in body:
            token = body["console_token"]
            received = digest(token) if isinstance(token, str) else self._decoy_digest
            if not hmac.compare_digest(received, self._token_digest):
                return None, None, "", "wrong console token"
            return None, None, "the console token", None

        key_id, secret, session_token = (
            body.get("access_key_id"),
            body.get("secret_access_key"),
            body.get("session_token") or None,
        )
        if not isinstance(key_id, str) or not isinstance(secret, str):
            return None, None, "", "no access key ID and secret access key in the request"
        if session_token is not None and not isinstance(session_token, str):
            return None, None, "", "a session token that is not a string"

        # Every path below does the same digest and comparison work, so a
        # response's timing does not tell whether the key id exists.
        key = self._keys.lookup(key_id)
        known = key is not None and key.active
        expected = digest(key.secret_access_key) if key is not None and known else None
        secret_matches = hmac.compare_digest(digest(secret), expected or self._decoy_digest)
        token_matches = _session_token_matches(key if known else None, session_token)

        if key is None or expected is None:
            return None, None, "", "unknown or inactive access key"
        if not secret_matches:
            return None, None, "", f"wrong secret access key for {label_of(key)}"
        if not token_matches:
            return None, None, "", f"missing or wrong session token for {label_of(key)}"
        return key.access_key_id, expected, label_of(key), None

    def _cookie(self, scope: Scope) -> str | None:
        prefix = self.cookie_name.encode("ascii") + b"="
        for name, value in scope["headers"]:
            if name != b"cookie":
                continue
            for pair in bytes(value).split(b";"):
                stripped = pair.strip()
                if stripped.startswith(prefix) and len(stripped) > len(prefix):
                    return stripped[len(prefix) :].decode("latin-1")
        return None

    def _set_cookie(self, scope: Scope, value: str, max_age: int) -> bytes:
        attributes = [
            f"{self.cookie_name}={value}",
            "Path=/",
            f"Max-Age={max_age}",
            "HttpOnly",
            "SameSite=Strict",
        ]
        if _is_https(scope):
            attributes.append("Secure")
        return "; ".join(attributes).encode("ascii")

    def publish_token(self, data_dir: Path, stderr: TextIO) -> None:
        """Write the console token to ``DATA_DIR/console-token`` (mode 0600) and show it.

        The token is printed to ``stderr`` only when that is a terminal: when
        stderr is redirected it is the server's log, and the log never contains
        a token. The log records where the file is.
        """
        path = data_dir / TOKEN_FILE
        _write_private_file(path, self.console_token + "\n")
        self._token_path = path
        logger.info(
            "Console sign-in token written to %s (readable by its owner only); "
            "a new one is made at every start",
            path,
        )
        if stderr.isatty():
            stderr.write(
                "\nConsole sign-in token, valid until this server stops (also in "
                f"{path}):\n\n    {self.console_token}\n\n"
            )
            stderr.flush()

    def withdraw_token(self) -> None:
        """Delete the token file, unless a newer server has replaced it."""
        path = self._token_path
        if path is None:
            return
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8").strip() == self.console_token:
                path.unlink()
        self._token_path = None


def describe(session: Session) -> dict[str, Any]:
    """Return the session as the page reads it from ``GET /console/api/session``."""
    return {
        "auth": "sigv4",
        "signed_in": True,
        "user": session.label,
        "csrf_token": session.csrf_token,
        "expires_at": session.expires_at_epoch,
    }


def label_of(key: AccessKey) -> str:
    """Name a key for the page and the log by its user name and last four characters.

    Key ids are not secret, but showing only their end keeps the log and the
    page free of anything a user might paste into a credentials file.
    """
    return f"{key.user_name} (access key ...{key.access_key_id[-4:]})"


def _check_csrf(scope: Scope, session: Session) -> None:
    received = header(scope, CSRF_HEADER)
    if received is None:
        raise CsrfRejected(
            "The request has no X-CSRF-Token header. Reload the console page, which "
            "reads the token from GET /console/api/session, and try again."
        )
    if not hmac.compare_digest(digest(received.decode("latin-1")), digest(session.csrf_token)):
        raise CsrfRejected(
            "The X-CSRF-Token header does not match this session. Reload the console page "
            "and try again."
        )


def _session_token_matches(key: AccessKey | None, received: str | None) -> bool:
    # A key with a session token requires it, as SigV4 does. A key without
    # one rejects any token, so a value typed into the wrong field fails.
    expected = key.session_token if key is not None else None
    matches = hmac.compare_digest(
        digest(received or ""), digest(expected) if expected is not None else digest("")
    )
    return matches and (expected is None) == (received is None)


def _is_https(scope: Scope) -> bool:
    # X-Forwarded-Proto comes from a TLS proxy in front of the server. A client
    # that forges it only makes its own cookie Secure, which its browser then
    # withholds over plain http, so trusting it cannot weaken anything.
    forwarded = (header(scope, b"x-forwarded-proto") or b"").split(b",")[0].strip().lower()
    return scope.get("scheme") == "https" or forwarded == b"https"


def _lockout_message(lockout: Lockout) -> str:
    where = "on this server" if lockout.server_wide else "from your address"
    unit = "second" if lockout.retry_after == 1 else "seconds"
    return f"Too many failed sign-ins {where}. Wait {lockout.retry_after} {unit}, then try again."


def _client_address(scope: Scope) -> str | None:
    # uvicorn 0.55 puts X-Forwarded-For's client here in place of the peer
    # only when the peer is in FORWARDED_ALLOW_IPS ("127.0.0.1,::1" unless
    # set), so a TLS proxy on the same host is limited per real client.
    client = scope.get("client")
    return str(client[0]) if client else None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown address"


def _write_private_file(path: Path, text: str) -> None:
    # mkstemp creates the file with mode 0600 before anything is written, and
    # the rename replaces any older file, even one with looser permissions.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".console-token-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
