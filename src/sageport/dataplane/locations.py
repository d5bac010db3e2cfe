"""Read and write the objects of async invocations: ``s3://`` and ``file://`` URIs.

InvokeEndpointAsync reads its input from ``InputLocation`` and writes the
model's response, or the reason it failed, under the endpoint config's
``S3OutputPath`` and ``S3FailurePath``. SageMaker takes only S3 URIs there.
Sageport also takes ``file://`` URIs on this machine, so that async inference
works without an S3 store.

S3 is reached with boto3 and the server's own credentials, so
``AWS_ENDPOINT_URL_S3`` points it at an S3-compatible store, as for model data.
Every function here blocks, so async callers run them with
``asyncio.to_thread``. Every failure raises :class:`LocationError`, whose text
is written to the failure location.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from sageport.hosting.artifacts import split_s3_url

SCHEMES = ("s3", "file")

# Seconds, as for model data downloads.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

_s3_lock = threading.Lock()
_s3_client: Any = None


class LocationError(Exception):
    """A location that is invalid, missing, unreadable or unwritable.

    ``str()`` names the location and states what failed.
    """


def check_location(uri: str, member: str) -> None:
    """Raise LocationError unless Sageport can read or write ``uri``."""
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise LocationError(
            f"{member} {uri} is not supported: Sageport reads and writes s3:// and "
            "file:// URIs only. Use s3://bucket/key or file:///absolute/path."
        )
    if parts.scheme == "s3" and not parts.netloc:
        raise LocationError(f"{member} {uri} has no bucket. Use s3://bucket/key.")
    if parts.scheme == "file":
        _file_path(uri, member)


def join_location(base: str, *names: str) -> str:
    """Append path segments to an ``s3://`` or ``file://`` URI, with one ``/`` between each.

    An S3 key is literal, as in SageMaker's own locations. A ``file://`` URL's
    path is percent-decoded when it is read, so names are percent-encoded
    here: the file written is then named exactly as the name reads.
    """
    encode = urlsplit(base).scheme == "file"
    location = base.rstrip("/")
    for name in names:
        segment = name.strip("/")
        location += "/" + (quote(segment, safe="/") if encode else segment)
    return location


def read_location(uri: str, max_bytes: int) -> bytes:
    """Return the content of the object or file at ``uri``, at most ``max_bytes`` long."""
    check_location(uri, "InputLocation")
    if urlsplit(uri).scheme == "file":
        return _read_file(_file_path(uri, "InputLocation"), uri, max_bytes)
    return _read_s3(uri, max_bytes)


def write_location(uri: str, data: bytes, content_type: str, *, within: str | None = None) -> None:
    """Store ``data`` at ``uri``, replacing what is there.

    A file appears whole or not at all: it is written beside its final name,
    flushed to disk, then renamed into place. A ``file://`` path with a ``.``
    or ``..`` segment is rejected, and so is one outside ``within`` (the
    configured output path it was built from), links resolved.
    """
    check_location(uri, "The output location")
    if urlsplit(uri).scheme == "file":
        path = _file_path(uri, "The output location")
        _check_confined(path, uri, within)
        _write_file(path, uri, data)
    else:
        _write_s3(uri, data, content_type)


# file:// URIs.


def _file_path(uri: str, member: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise LocationError(
            f"{member} {uri} names the host {parts.netloc!r}, but a file:// URI can only "
            "point to this machine. Use file:///absolute/path."
        )
    path = unquote(parts.path)
    if not path.startswith("/") or path == "/":
        raise LocationError(f"{member} {uri} has no absolute path. Use file:///absolute/path.")
    return Path(path)


def _check_confined(path: Path, uri: str, within: str | None) -> None:
    # Requests are validated when they are queued. This second check guards
    # against rows queued by older versions and any path-building mistake.
    if {".", ".."} & set(path.parts):
        raise LocationError(
            f"Could not write {uri}: its path has a '.' or '..' segment, which could leave "
            "the configured output path."
        )
    if within is None:
        return
    root = os.path.realpath(_file_path(within, "The output path"))
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise LocationError(
            f"Could not write {uri}: it resolves to {real}, outside the configured output "
            f"path {within}."
        )


def _read_file(path: Path, uri: str, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise LocationError(f"Could not find the input at {uri}: no such file.") from None
    except IsADirectoryError:
        raise LocationError(f"Could not read the input at {uri}: it is a directory.") from None
    except OSError as exc:
        raise LocationError(f"Could not read the input at {uri}: {exc.strerror or exc}.") from exc
    _check_size(len(data), uri, max_bytes)
    return data


def _write_file(path: Path, uri: str, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, partial = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".partial", dir=path.parent
        )
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LocationError(
            f"Could not write {uri}: {exc.strerror or exc}. Check that the directory is "
            "writable by the user that runs Sageport."
        ) from exc


# s3:// URIs.


def _client() -> Any:
    # One client for every thread: boto3 clients are thread-safe once made,
    # but making them from the shared default session is not.
    global _s3_client  # noqa: PLW0603 - made on first use, not at import time
    with _s3_lock:
        if _s3_client is None:
            _s3_client = boto3.session.Session().client(
                "s3",
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=READ_TIMEOUT,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        return _s3_client


def _bucket_and_key(uri: str) -> tuple[str, str]:
    bucket, key = split_s3_url(uri)
    if not key:
        raise LocationError(f"{uri} names a bucket but no object key. Use s3://bucket/key.")
    return bucket, key


def _read_s3(uri: str, max_bytes: int) -> bytes:
    bucket, key = _bucket_and_key(uri)
    try:
        response = _client().get_object(Bucket=bucket, Key=key)
        _check_size(int(response.get("ContentLength", 0)), uri, max_bytes)
        with response["Body"] as body:
            data: bytes = body.read(max_bytes + 1)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error("read the input at", uri, exc) from exc
    _check_size(len(data), uri, max_bytes)
    return data


def _write_s3(uri: str, data: bytes, content_type: str) -> None:
    bucket, key = _bucket_and_key(uri)
    try:
        _client().put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except (ClientError, BotoCoreError) as exc:
        raise _s3_error("write", uri, exc) from exc


def _s3_error(action: str, uri: str, exc: ClientError | BotoCoreError) -> LocationError:
    if isinstance(exc, NoCredentialsError):
        return LocationError(
            f"Could not {action} {uri}: no AWS credentials found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for the Sageport server."
        )
    if not isinstance(exc, ClientError):
        return LocationError(
            f"Could not {action} {uri}: {exc}. Check that S3 (or the store that "
            "AWS_ENDPOINT_URL_S3 names) is reachable from the Sageport server."
        )
    code = str(exc.response.get("Error", {}).get("Code", ""))
    if code in ("404", "NoSuchKey"):
        return LocationError(f"Could not {action} {uri}: no such object.")
    if code == "NoSuchBucket":
        return LocationError(f"Could not {action} {uri}: no such bucket.")
    if code in ("403", "AccessDenied"):
        return LocationError(
            f"Could not {action} {uri}: access denied. Give the Sageport server's credentials "
            "s3:GetObject on inputs and s3:PutObject on the output and failure paths."
        )
    return LocationError(f"Could not {action} {uri}: {exc}.")


def _check_size(size: int, uri: str, max_bytes: int) -> None:
    if size > max_bytes:
        raise LocationError(
            f"The input at {uri} is larger than {max_bytes:,} bytes, the maximum for an "
            "asynchronous invocation. Send a smaller input."
        )
