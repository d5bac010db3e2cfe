"""Console sessions: kept in the server's memory only, so they all end when it stops.

A session is found by the SHA-256 of its cookie value, so the dictionary
never contains a usable cookie and a lookup's timing depends on a hash the
caller cannot choose. Each session has an absolute lifetime and an idle
timeout, and the store keeps at most ``MAX_SESSIONS``, dropping the least
recently used one when a sign-in would pass that bound.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# A working day: after it the user signs in again, whatever they did.
SESSION_LIFETIME = 8 * 3600.0
# A session unused for an hour ends, so a console left open on a shared desk stops working.
IDLE_TIMEOUT = 3600.0
MAX_SESSIONS = 1000


@dataclass
class Session:
    """A signed-in browser: who signed in, its CSRF token and its deadlines (monotonic seconds)."""

    # The access key the user signed in with, or None for the console token.
    access_key_id: str | None
    # SHA-256 of that key's secret at sign-in, so a key whose secret changes ends the session.
    secret_digest: bytes | None
    # Name shown on the page and in the log: the user name and the key's last four characters.
    label: str
    csrf_token: str
    created_at: float
    expires_at: float
    last_used_at: float
    # Wall-clock expiry, seconds since the epoch, for the page to show.
    expires_at_epoch: float


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class SessionStore:
    """The sessions of one server process, keyed by the digest of the cookie value."""

    def __init__(
        self,
        lifetime: float = SESSION_LIFETIME,
        idle_timeout: float = IDLE_TIMEOUT,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self._idle_timeout = idle_timeout
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[bytes, Session] = OrderedDict()

    def create(
        self, access_key_id: str | None, secret_digest: bytes | None, label: str
    ) -> tuple[str, Session]:
        """Start a session; return the cookie value, which the store does not keep, and it."""
        now = self._clock()
        self._drop_expired(now)
        while len(self._sessions) >= self._max_sessions:
            self._sessions.popitem(last=False)

        cookie = secrets.token_urlsafe(32)
        session = Session(
            access_key_id=access_key_id,
            secret_digest=secret_digest,
            label=label,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.lifetime,
            last_used_at=now,
            expires_at_epoch=time.time() + self.lifetime,
        )
        self._sessions[digest(cookie)] = session
        return cookie, session

    def get(self, cookie: str) -> Session | None:
        """Return the live session for a cookie value and mark it used, or None."""
        key = digest(cookie)
        session = self._sessions.get(key)
        if session is None:
            return None

        now = self._clock()
        if now >= session.expires_at or now - session.last_used_at >= self._idle_timeout:
            del self._sessions[key]
            return None
        session.last_used_at = now
        self._sessions.move_to_end(key)
        return session

    def end(self, cookie: str) -> bool:
        """End the session of a cookie value; return whether there was one."""
        return self._sessions.pop(digest(cookie), None) is not None

    def end_for_key(self, access_key_id: str) -> int:
        """End every session signed in with an access key; return how many ended."""
        ended = [
            key for key, session in self._sessions.items() if session.access_key_id == access_key_id
        ]
        for key in ended:
            del self._sessions[key]
        return len(ended)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drop_expired(self, now: float) -> None:
        expired = [
            key
            for key, session in self._sessions.items()
            if now >= session.expires_at or now - session.last_used_at >= self._idle_timeout
        ]
        for key in expired:
            del self._sessions[key]
