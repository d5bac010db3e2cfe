"""Access keys: the credentials file in the data directory, and keys from the environment.

The file is ``credentials.json``, mode 0600, always replaced whole through a
rename so that a reader never sees half of it::

    {"AccessKeys": [{"UserName": "alice", "AccessKeyId": "AKSP...",
                     "SecretAccessKey": "...", "Status": "Active",
                     "CreateDate": "2025-01-31T12:00:00+00:00"}]}

A key may also carry ``SessionToken``; requests signed with that key must then
send the token in ``X-Amz-Security-Token``, as clients holding temporary
credentials do.

``SAGEPORT_ACCESS_KEYS`` adds keys that live only in the server's
environment: entries separated by spaces or commas, each
``ACCESS_KEY_ID:SECRET_ACCESS_KEY`` or ``ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger("sageport.auth")

CREDENTIALS_FILE = "credentials.json"
ENVIRONMENT_VARIABLE = "SAGEPORT_ACCESS_KEYS"

# The running server stats the file at most this often, in seconds, so a key
# created or deleted with ``sageport keys`` takes effect within about a second.
RELOAD_INTERVAL = 1.0

# AWS access key ids are 16-128 word characters; secrets and session tokens
# are base64-like. A colon would break the environment format.
_ACCESS_KEY_ID = re.compile(r"\w{16,128}")
_SECRET = re.compile(r"[^\s:,]{16,1024}")
_SESSION_TOKEN = re.compile(r"[^\s:,]{1,4096}")
_ENVIRONMENT_SEPARATORS = re.compile(r"[\s,]+")

# Generated ids start like AWS ids (AKIA...) but with "SP", so a Sageport key
# is never mistaken for an AWS one. 16 base32 characters carry 80 random bits.
_ID_PREFIX = "AKSP"


class KeyFileError(Exception):
    """The credentials file or the environment variable cannot be read as access keys."""


@dataclass(frozen=True)
class AccessKey:
    """An access key pair; the secret and session token stay out of ``repr``."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    user_name: str = "sageport"
    status: str = "Active"
    create_date: datetime = field(default_factory=lambda: datetime.now(UTC))
    session_token: str | None = field(default=None, repr=False)
    source: str = "file"

    @property
    def active(self) -> bool:
        return self.status == "Active"

    def metadata(self) -> dict[str, str]:
        """Describe the key without its secret, as ``aws iam list-access-keys`` does."""
        return {
            "UserName": self.user_name,
            "AccessKeyId": self.access_key_id,
            "Status": self.status,
            "CreateDate": self.create_date.isoformat(timespec="seconds"),
        }

    def to_json(self) -> dict[str, str]:
        """Describe the key with its secret, for the file and for ``keys create``."""
        document = self.metadata()
        document["SecretAccessKey"] = self.secret_access_key
        if self.session_token is not None:
            document["SessionToken"] = self.session_token
        return document


def credentials_path(data_dir: Path) -> Path:
    return data_dir / CREDENTIALS_FILE


def generate_key(user_name: str, with_session_token: bool = False) -> AccessKey:
    """Make a new random key pair (and session token, if asked)."""
    key_id = _ID_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode("ascii")
    secret = base64.b64encode(secrets.token_bytes(30)).decode("ascii")
    token = secrets.token_urlsafe(48) if with_session_token else None
    return AccessKey(key_id, secret, user_name=user_name, session_token=token)


def load_keys(path: Path) -> list[AccessKey]:
    """Read the credentials file; a missing file has no keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(f"Cannot read {path}: {exc.strerror}.") from None

    try:
        document = json.loads(text)
        return [_key_from_json(entry) for entry in document["AccessKeys"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(
            f"{path} is not a valid credentials file ({exc!r}). Fix or delete it, then "
            "create keys with 'sageport keys create'."
        ) from None


def save_keys(path: Path, keys: list[AccessKey]) -> None:
    """Replace the credentials file atomically, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"AccessKeys": [key.to_json() for key in keys]}
    encoded = (json.dumps(document, indent=2) + "\n").encode("utf-8")

    # mkstemp creates the file with mode 0600 before anything is written.
    descriptor, temporary = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(encoded)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock so that two ``sageport keys`` commands do not lose an update."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def create_key(path: Path, user_name: str, with_session_token: bool = False) -> AccessKey:
    """Add a new key to the credentials file and return it."""
    with locked(path):
        keys = load_keys(path)
        key = generate_key(user_name, with_session_token)
        save_keys(path, [*keys, key])
    return key


def delete_key(path: Path, access_key_id: str) -> bool:
    """Remove a key from the credentials file; return whether it was there."""
    with locked(path):
        keys = load_keys(path)
        remaining = [key for key in keys if key.access_key_id != access_key_id]
        if len(remaining) == len(keys):
            return False
        save_keys(path, remaining)
    return True


def parse_environment_keys(value: str) -> list[AccessKey]:
    """Parse ``SAGEPORT_ACCESS_KEYS``; the messages never include a secret."""
    keys = []
    for position, entry in enumerate(_ENVIRONMENT_SEPARATORS.split(value.strip()), start=1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise KeyFileError(
                f"Entry {position} of {ENVIRONMENT_VARIABLE} is invalid: expected "
                "ACCESS_KEY_ID:SECRET_ACCESS_KEY or ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN."
            )
        key_id, secret = parts[0], parts[1]
        token = parts[2] if len(parts) == 3 else None
        _check_key_fields(key_id, secret, token, f"entry {position} of {ENVIRONMENT_VARIABLE}")
        keys.append(
            AccessKey(
                key_id, secret, user_name="environment", session_token=token, source="environment"
            )
        )
    return keys


def _key_from_json(entry: dict[str, Any]) -> AccessKey:
    key_id = entry["AccessKeyId"]
    secret = entry["SecretAccessKey"]
    token = entry.get("SessionToken")
    _check_key_fields(key_id, secret, token, f"key {key_id!r}")
    return AccessKey(
        key_id,
        secret,
        user_name=str(entry.get("UserName", "sageport")),
        status=str(entry.get("Status", "Active")),
        create_date=datetime.fromisoformat(entry["CreateDate"]),
        session_token=token,
    )


def _check_key_fields(key_id: object, secret: object, token: object, where: str) -> None:
    if not isinstance(key_id, str) or not _ACCESS_KEY_ID.fullmatch(key_id):
        raise KeyFileError(f"The access key id of {where} must be 16-128 letters, digits or _.")
    if not isinstance(secret, str) or not _SECRET.fullmatch(secret):
        raise KeyFileError(
            f"The secret access key of {where} must be 16-1024 characters without spaces, "
            "commas or colons."
        )
    if token is not None and (not isinstance(token, str) or not _SESSION_TOKEN.fullmatch(token)):
        raise KeyFileError(
            f"The session token of {where} must be 1-4096 characters without spaces, "
            "commas or colons."
        )


class KeyRing:
    """The keys a running server accepts: the file's, reread when it changes, plus fixed ones.

    Lookups stat the file at most once per ``RELOAD_INTERVAL`` and reread it
    only when its modification time, size or inode changed. A file that cannot
    be read counts as having no keys, so a broken edit never keeps a deleted
    key working.
    """

    def __init__(
        self,
        path: Path,
        fixed_keys: tuple[AccessKey, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._fixed = {key.access_key_id: key for key in fixed_keys}
        self._clock = clock
        self._lock = threading.Lock()
        self._file_keys: dict[str, AccessKey] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = -RELOAD_INTERVAL
        self._refresh()

    def lookup(self, access_key_id: str) -> AccessKey | None:
        """Return the key with this id, or None; the fixed keys win over the file's."""
        if self._clock() - self._checked_at >= RELOAD_INTERVAL:
            self._refresh()
        return self._fixed.get(access_key_id) or self._file_keys.get(access_key_id)

    def count(self) -> int:
        if self._clock() - self._checked_at >= RELOAD_INTERVAL:
            self._refresh()
        return len(self._fixed.keys() | self._file_keys.keys())

    def _refresh(self) -> None:
        with self._lock:
            self._checked_at = self._clock()
            try:
                status = self._path.stat()
            except FileNotFoundError:
                self._replace({}, None)
                return
            except OSError as exc:
                logger.error("Cannot stat %s: %s; accepting no keys from it", self._path, exc)
                self._replace({}, None)
                return

            signature = (status.st_mtime_ns, status.st_size, status.st_ino)
            if signature == self._signature:
                return
            if stat.S_IMODE(status.st_mode) & 0o077:
                logger.warning(
                    "%s is readable by other users (mode %o); run 'chmod 600' on it",
                    self._path,
                    stat.S_IMODE(status.st_mode),
                )
            try:
                keys = load_keys(self._path)
            except KeyFileError as exc:
                logger.error("%s Accepting no keys from it until it is fixed.", exc)
                keys = []
            self._replace({key.access_key_id: key for key in keys}, signature)

    def _replace(self, keys: dict[str, AccessKey], signature: tuple[int, int, int] | None) -> None:
        if signature != self._signature:
            logger.info("Loaded %d access keys from %s", len(keys), self._path)
        self._file_keys = keys
        self._signature = signature
