"""Model data: fetch what a model's ModelDataUrl points to and unpack it safely.

The reconciler calls :func:`fetch_model_data` in a worker thread before it
starts an instance. Sources are a local absolute path, a ``file://`` URL, an
``s3://`` object or prefix, and an ``https://`` URL (plus ``http://`` on
loopback hosts, for local servers and tests). A tar archive, gzip-compressed or
not, is unpacked into the model directory. A directory or S3 prefix is copied
as is, which is SageMaker's uncompressed ``S3Prefix`` model data. Any other
single file is copied into the model directory under its own name.

Every failure raises :class:`ArtifactError`, whose text is the endpoint's
FailureReason. The work happens in a temporary directory beside the model
directory, which is renamed into place only when everything succeeded, so a
failed fetch never leaves a half-written model directory.
"""

from __future__ import annotations

import copy
import errno
import gzip
import ipaddress
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import boto3
import urllib3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from sageport.hosting.unpack_errors import (
    describe_missing_hard_link,
    describe_os_error,
    describe_unwritable_member,
)

logger = logging.getLogger("sageport.hosting")

DEFAULT_MAX_UNPACKED_BYTES = 10 * 2**30
DEFAULT_MAX_MEMBERS = 100_000
# Seconds for a whole fetch, unless the production variant sets
# ModelDataDownloadTimeoutInSeconds (valid range 60 to 3600).
# NOTE: SageMaker's API reference gives no default for that member, so
# Sageport uses the maximum of its range.
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0

# Seconds. The read timeout is the longest silence between two chunks of a
# download, not a limit on the whole transfer, so large models still arrive.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
MAX_REDIRECTS = 5

_CHUNK_SIZE = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# Python 3.11.4 added extraction filters. Older 3.11 releases rely on the
# checks in this module alone, which reject everything the "data" filter does.
_EXTRACT_OPTIONS: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
_FILTER_ERRORS: Any = getattr(tarfile, "FilterError", ())


class ArtifactError(Exception):
    """A failure to fetch or unpack model data.

    ``str()`` is a complete FailureReason for the user: what failed, on which
    URL, path or archive member, and what to do about it.
    """


def fetch_model_data(
    url: str,
    dest_dir: Path,
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    within: Path | None = None,
    timeout: float | None = None,
) -> None:
    """Fetch the model data at ``url`` and unpack or copy it into ``dest_dir``.

    ``max_unpacked_bytes`` caps the total size of the files written (and of a
    download), and ``max_members`` caps the number of archive members, or of
    files and directories in a directory or S3 prefix. With ``within``, a
    local path or ``file://`` URL must resolve to a path inside that
    directory, and so must every file and directory copied from it, links
    included. With ``timeout``, the fetch fails once that many seconds have
    passed, checked between chunks, files and members. A second call with the
    same URL returns at once when an earlier call completed ``dest_dir``.
    Blocks, so async callers run it with ``asyncio.to_thread``.
    """
    dest_dir = Path(dest_dir)
    shown_url = display_url(url)
    marker = _marker_path(dest_dir)

    if _is_complete(dest_dir, marker, url):
        logger.info("Model data from %s is already in %s", shown_url, dest_dir)
        return

    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    _remove_stale_work_dirs(dest_dir)

    logger.info("Fetching model data from %s into %s", shown_url, dest_dir)
    started = time.monotonic()
    work = Path(
        tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".partial", dir=dest_dir.parent)
    )
    try:
        model_dir = work / "model"
        model_dir.mkdir()
        limits = _Limits(shown_url, max_unpacked_bytes, max_members)
        if timeout is not None:
            limits.timeout = timeout
            limits.deadline = started + timeout
        if within is not None:
            limits.within = os.path.realpath(within)
        _fetch_into(url, shown_url, work, model_dir, limits)
        _move_into_place(model_dir, dest_dir, work)
    finally:
        _remove_tree(work)

    _write_marker(marker, url)
    logger.info(
        "Fetched model data from %s into %s: %d entries, %d bytes in %.1f s",
        shown_url,
        dest_dir,
        limits.members,
        limits.unpacked_bytes,
        time.monotonic() - started,
    )


def split_s3_url(url: str) -> tuple[str, str]:
    """Return the bucket and key of an ``s3://`` URL, taking the key literally.

    urlsplit would cut a key at '?' or '#', which S3 keys may contain.
    """
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key.lstrip("/")


def display_url(url: str) -> str:
    """Return ``url`` without user info, query string or fragment for http(s) URLs.

    A presigned URL carries its signature in the query string, and that must
    stay out of FailureReasons and logs.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host, query="", fragment="").geturl()


@dataclass
class _Limits:
    """Running totals of one fetch, checked against its caps."""

    shown_url: str
    max_unpacked_bytes: int
    max_members: int
    unpacked_bytes: int = 0
    members: int = 0
    # The real path of the directory local model data must stay inside, if any.
    within: str | None = None
    # Seconds for the whole fetch, and the time.monotonic() when they run out.
    timeout: float | None = None
    deadline: float | None = None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise download_timed_out(self.shown_url, self.timeout or 0.0)

    def add_member(self) -> None:
        self.check_deadline()
        self.members += 1
        self.check_members(self.members)

    def check_members(self, count: int) -> None:
        if count > self.max_members:
            raise ArtifactError(
                f"Model data at {self.shown_url} has more than {self.max_members:,} files "
                "and directories, the maximum for one model. Package the model in fewer files."
            )

    def check_within(self, path: Path) -> None:
        if self.within is not None and not _is_inside(str(path), self.within):
            real = os.path.realpath(path)
            through = "," if real == str(path) else f", a link to {real},"
            raise ArtifactError(
                f"Model data at {self.shown_url} leads to {path}{through} which is outside "
                f"{self.within}, the directory it must stay in. Use a path under that "
                "directory, without links that point out of it."
            )

    def add_bytes(self, size: int) -> None:
        self.unpacked_bytes += size
        self.check_size(self.unpacked_bytes)

    def check_size(self, size: int) -> None:
        if size > self.max_unpacked_bytes:
            raise ArtifactError(
                f"Model data at {self.shown_url} is larger than "
                f"{_format_bytes(self.max_unpacked_bytes)}, the maximum size for one model. "
                "Use smaller model data."
            )


def download_timed_out(shown_url: str, timeout: float) -> ArtifactError:
    """Return the error for a fetch that ran past its ModelDataDownloadTimeoutInSeconds."""
    return ArtifactError(
        f"Fetching model data from {shown_url} timed out after {timeout:g} seconds "
        "(ModelDataDownloadTimeoutInSeconds). Check that the source is reachable and fast "
        "enough, or raise ModelDataDownloadTimeoutInSeconds on the production variant "
        "(at most 3600)."
    )


def _fetch_into(url: str, shown_url: str, work: Path, model_dir: Path, limits: _Limits) -> None:
    scheme = urlsplit(url).scheme
    try:
        if url.startswith("/"):
            _copy_local(Path(url), shown_url, model_dir, limits)
        elif scheme == "file":
            _copy_local(_file_url_path(url), shown_url, model_dir, limits)
        elif scheme == "s3":
            _fetch_s3(url, shown_url, work, model_dir, limits)
        elif scheme in ("http", "https"):
            _fetch_http(url, shown_url, work, model_dir, limits)
        else:
            raise ArtifactError(
                f"Model data URL {shown_url} is not supported. Use an absolute path or a "
                "file://, s3:// or https:// URL."
            )
    except OSError as exc:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: {describe_os_error(exc, model_dir)}."
        ) from exc


# Local paths and file:// URLs.


def local_path(url: str) -> Path | None:
    """Return the path that a local path or ``file://`` URL names, or None for other URLs."""
    if url.startswith("/"):
        return Path(url)
    if urlsplit(url).scheme == "file":
        return _file_url_path(url)
    return None


def _file_url_path(url: str) -> Path:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(
            f"Model data URL {url} names the host {parts.netloc!r}, but a file:// URL "
            "can only point to this machine. Use file:///absolute/path."
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ArtifactError(f"Model data URL {url} has a relative path. Use file:///absolute/path.")
    return Path(path)


def _copy_local(source: Path, shown_url: str, model_dir: Path, limits: _Limits) -> None:
    limits.check_within(source)
    try:
        if source.is_dir():
            _copy_directory(source, model_dir, limits)
        elif source.is_file():
            _unpack_or_copy(source, source.name, model_dir, limits)
        elif source.exists():
            raise ArtifactError(
                f"Model data at {shown_url} is not a regular file or directory. "
                "Point ModelDataUrl at a model.tar.gz file or a directory."
            )
        else:
            raise ArtifactError(f"Could not find model data at {shown_url}: no such file.")
    except PermissionError as exc:
        raise ArtifactError(
            f"Could not read model data at {shown_url}: permission denied on {exc.filename}. "
            "Make the files readable by the user that runs Sageport."
        ) from exc


def _copy_directory(source: Path, model_dir: Path, limits: _Limits) -> None:
    # Symbolic links are followed, so the model directory contains the files they
    # point to. A link to a directory that contains it would repeat forever.
    for dirpath, dirnames, filenames in os.walk(source, followlinks=True, onerror=_raise):
        relative = Path(dirpath).relative_to(source)
        for name in dirnames:
            limits.add_member()
            limits.check_within(Path(dirpath) / name)
            _check_not_loop(Path(dirpath) / name, limits.shown_url)
            (model_dir / relative / name).mkdir()
        for name in filenames:
            limits.add_member()
            _copy_file(Path(dirpath) / name, model_dir / relative / name, limits)


def _check_not_loop(directory: Path, shown_url: str) -> None:
    if not directory.is_symlink():
        return
    real = os.path.realpath(directory)
    parent = os.path.realpath(directory.parent)
    if parent == real or parent.startswith(real + os.sep):
        raise ArtifactError(
            f"Model data at {shown_url} contains {directory}, a symbolic link loop: it points "
            f"to {real}, a directory that contains the link. Remove the link from the model "
            "directory."
        )


def _copy_file(source: Path, target: Path, limits: _Limits) -> None:
    limits.check_within(source)
    if not source.is_file():
        raise ArtifactError(
            f"Model data at {limits.shown_url} contains {source}, which is "
            f"{_describe_non_file(source)}. Remove it from the model directory."
        )
    limits.add_bytes(source.stat().st_size)
    shutil.copyfile(source, target)
    shutil.copymode(source, target)


def _describe_non_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to a path that does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"not readable ({exc.strerror or exc})"
    if stat.S_ISFIFO(mode):
        return "a FIFO, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file"
    return "not a regular file"


def _raise(error: OSError) -> None:
    raise error


# Archives.


def _unpack_or_copy(path: Path, name: str, model_dir: Path, limits: _Limits) -> None:
    """Unpack ``path`` if its content is a tar archive, else copy it as ``name``."""
    archive = _open_archive(path, name, limits.shown_url)
    if archive is None:
        limits.add_member()
        _copy_file(path, model_dir / name, limits)
        return

    with archive:
        _extract_archive(archive, model_dir, limits)


def _open_archive(path: Path, name: str, shown_url: str) -> tarfile.TarFile | None:
    with path.open("rb") as file:
        is_gzip = file.read(2) == _GZIP_MAGIC

    try:
        return tarfile.open(path, "r:gz" if is_gzip else "r:")
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        if name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise _invalid_archive(shown_url, exc) from exc
        return None


def _extract_archive(archive: tarfile.TarFile, model_dir: Path, limits: _Limits) -> None:
    root = os.path.realpath(model_dir)
    try:
        _check_totals(archive, limits)
        for member in archive:
            limits.add_member()
            _check_member(member, root, limits.shown_url)
            if member.isreg():
                limits.add_bytes(member.size)
            _extract_member(archive, member, root, limits.shown_url)
    except _FILTER_ERRORS as exc:
        # Unreachable while _check_member rejects a superset of what the data
        # filter rejects, but a newer Python may add rules.
        raise ArtifactError(
            f"Model data at {limits.shown_url} contains an unsafe member: {exc}. "
            "Rebuild the archive without it."
        ) from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _invalid_archive(limits.shown_url, exc) from exc


def _check_totals(archive: tarfile.TarFile, limits: _Limits) -> None:
    """Read the member headers and raise ArtifactError at the first one over a limit.

    Reading headers writes nothing, so an archive of too many members or
    bytes fails before anything is unpacked. tarfile keeps the headers it
    read, so extraction does not read them again.
    """
    size = 0
    for count, member in enumerate(archive, start=1):
        limits.check_members(count)
        if member.isreg():
            size += member.size
            limits.check_size(size)


def _extract_member(
    archive: tarfile.TarFile, member: tarfile.TarInfo, root: str, shown_url: str
) -> None:
    try:
        archive.extract(_sanitized(member), root, **_EXTRACT_OPTIONS)
    except gzip.BadGzipFile:
        # An OSError too, but about reading the archive: _extract_archive reports it.
        raise
    except OSError as exc:
        reason = describe_unwritable_member(member.name, member.isdir(), root, exc)
        raise ArtifactError(f"Model data at {shown_url} contains {reason}") from exc
    except KeyError as exc:
        # tarfile raises KeyError for a hard link to a name no earlier member has.
        reason = describe_missing_hard_link(member.name, member.linkname)
        raise ArtifactError(f"Model data at {shown_url} contains {reason}") from exc


def _invalid_archive(shown_url: str, exc: BaseException) -> ArtifactError:
    detail = str(exc) or type(exc).__name__
    return ArtifactError(
        f"Model data at {shown_url} is not a valid .tar.gz archive: {detail}. "
        "Rebuild it, e.g. with tar -czf model.tar.gz -C model_dir ."
    )


def _check_member(member: tarfile.TarInfo, root: str, shown_url: str) -> None:
    """Raise ArtifactError if extracting ``member`` under ``root`` could be unsafe.

    The danger is writing outside the model directory: through a ``..`` path,
    an absolute path, or a link (made earlier in the same archive) that points
    outside. Links whose targets stay inside are allowed, as in tarfile's
    "data" filter, because real model archives use them for shared weight
    files. ``root`` must be a real path, and members are checked one at a time
    just before extraction so that links on disk resolve as they will be used.
    """
    name = member.name
    if name.startswith("/"):
        raise _unsafe_member(shown_url, name, "its path is absolute", _FIX_PATHS)
    if ".." in PurePosixPath(name).parts or not _is_inside(os.path.join(root, name), root):
        raise _unsafe_member(shown_url, name, "its path leaves the model directory", _FIX_PATHS)

    if member.issym():
        target = os.path.join(root, os.path.dirname(name), member.linkname)
        if member.linkname.startswith("/") or not _is_inside(target, root):
            raise _unsafe_member(
                shown_url,
                name,
                f"it is a symbolic link to {member.linkname!r}, outside the model directory",
                _FIX_LINKS,
            )
    elif member.islnk():
        target = os.path.join(root, member.linkname)
        if member.linkname.startswith("/") or not _is_inside(target, root):
            raise _unsafe_member(
                shown_url,
                name,
                f"it is a hard link to {member.linkname!r}, outside the model directory",
                _FIX_LINKS,
            )
    elif not (member.isreg() or member.isdir()):
        raise _unsafe_member(
            shown_url,
            name,
            f"it is a {_member_kind(member)}, and model data can contain only files, "
            "directories and links",
            "Remove it from the archive.",
        )


_FIX_PATHS = "Rebuild the archive with relative paths, e.g. tar -czf model.tar.gz -C model_dir ."
_FIX_LINKS = "Rebuild the archive with the linked files in place of the links (tar -h)."


def _unsafe_member(shown_url: str, name: str, reason: str, fix: str) -> ArtifactError:
    return ArtifactError(
        f"Model data at {shown_url} contains an unsafe member {name!r}: {reason}. {fix}"
    )


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "FIFO"
    return f"tar member of type {member.type!r}"


def _is_inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _sanitized(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """Return a copy of ``member`` that extracts as a plain file of the current user.

    Ownership from the archive is dropped, because tarfile running as root
    would otherwise chown to it, and so are setuid, setgid, sticky and
    group/other write bits. These are the rules of the "data" filter, applied
    here too so that 3.11 releases without it behave the same.
    """
    clean = copy.copy(member)
    clean.uid = os.getuid()
    clean.gid = os.getgid()
    clean.uname = ""
    clean.gname = ""
    if member.isdir():
        clean.mode = 0o755
    elif member.isreg() or member.islnk():
        mode = member.mode & 0o755
        if not mode & 0o100:
            mode &= ~0o111
        clean.mode = mode | 0o600
    return clean


# s3:// URLs.


def _fetch_s3(url: str, shown_url: str, work: Path, model_dir: Path, limits: _Limits) -> None:
    bucket, key = split_s3_url(url)
    if not bucket:
        raise ArtifactError(f"Model data URL {shown_url} has no bucket. Use s3://bucket/key.")

    # boto3 reads AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, from the
    # environment (verified with botocore 1.44.8), which points it at an
    # S3-compatible store such as MinIO.
    # NOTE: a shell that exports AWS_ENDPOINT_URL for clients of Sageport and
    # then runs `sageport serve` sends these requests to Sageport itself;
    # AWS_ENDPOINT_URL_S3 takes precedence and avoids that.
    client = boto3.client(
        "s3",
        config=Config(
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )
    try:
        if key == "" or key.endswith("/"):
            _download_s3_prefix(client, bucket, key, model_dir, limits)
        else:
            _download_s3_object(client, bucket, key, work=work, model_dir=model_dir, limits=limits)
    except NoCredentialsError as exc:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: no AWS credentials found. Set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for the Sageport server."
        ) from exc
    except ClientError as exc:
        raise _s3_client_error(shown_url, exc) from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: {exc}. Check that S3 (or the store "
            "that AWS_ENDPOINT_URL_S3 names) is reachable from the Sageport server."
        ) from exc


def _download_s3_object(
    client: Any, bucket: str, key: str, *, work: Path, model_dir: Path, limits: _Limits
) -> None:
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        # Like a local directory path, s3://bucket/model also means the
        # objects under s3://bucket/model/ when there is no object "model".
        if _s3_error_code(exc) in ("404", "NoSuchKey") and _s3_prefix_exists(client, bucket, key):
            _download_s3_prefix(client, bucket, key + "/", model_dir, limits)
            return
        raise

    limits.check_size(int(head.get("ContentLength", 0)))
    download = work / "download"
    client.download_file(bucket, key, str(download))
    _unpack_or_copy(download, PurePosixPath(key).name, model_dir, limits)


def _download_s3_prefix(
    client: Any, bucket: str, prefix: str, model_dir: Path, limits: _Limits
) -> None:
    found = False
    for key, size in _list_s3_objects(client, bucket, prefix):
        found = True
        relative = key[len(prefix) :]
        parts = PurePosixPath(relative).parts
        if relative.startswith("/") or ".." in parts:
            raise ArtifactError(
                f"Model data at {limits.shown_url} contains the object key {key!r}, whose path "
                "leaves the model directory. Rename or remove the object."
            )

        limits.add_member()
        if not parts:
            continue
        target = model_dir.joinpath(*parts)
        if key.endswith("/"):
            # A zero-byte "folder" object, as the S3 console creates.
            target.mkdir(parents=True, exist_ok=True)
            continue
        limits.add_bytes(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))

    if not found:
        raise ArtifactError(
            f"Could not find model data at {limits.shown_url}: no objects under this prefix."
        )


def _list_s3_objects(client: Any, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"], int(item["Size"])


def _s3_prefix_exists(client: Any, bucket: str, key: str) -> bool:
    page = client.list_objects_v2(Bucket=bucket, Prefix=key + "/", MaxKeys=1)
    return bool(page.get("Contents"))


def _s3_error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _s3_client_error(shown_url: str, exc: ClientError) -> ArtifactError:
    code = _s3_error_code(exc)
    if code in ("404", "NoSuchKey"):
        return ArtifactError(f"Could not find model data at {shown_url}: no such object.")
    if code == "NoSuchBucket":
        return ArtifactError(f"Could not find model data at {shown_url}: no such bucket.")
    if code in ("403", "AccessDenied"):
        return ArtifactError(
            f"Could not fetch model data from {shown_url}: access denied. Give the credentials "
            "of the Sageport server s3:GetObject and s3:ListBucket on it."
        )
    return ArtifactError(f"Could not fetch model data from {shown_url}: {exc}.")


# https:// URLs.


def _fetch_http(url: str, shown_url: str, work: Path, model_dir: Path, limits: _Limits) -> None:
    _check_http_url(url, shown_url)
    pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
        retries=urllib3.Retry(total=2, redirect=False, backoff_factor=0.5),
    )
    download = work / "download"
    try:
        _download_http(pool, url, shown_url, download, limits)
    except urllib3.exceptions.HTTPError as exc:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: {_describe_http_error(exc)}. "
            "Check that the URL is reachable from the Sageport server."
        ) from exc
    finally:
        pool.clear()

    name = PurePosixPath(unquote(urlsplit(url).path)).name or "model-data"
    _unpack_or_copy(download, name, model_dir, limits)


def _download_http(
    pool: urllib3.PoolManager, url: str, shown_url: str, download: Path, limits: _Limits
) -> None:
    # Redirects are followed here rather than by urllib3 so that each target
    # is checked: it must stay on https, or on http only between loopback hosts.
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        response = pool.request("GET", current, preload_content=False, redirect=False)
        try:
            if response.status in _REDIRECT_STATUSES:
                current = _redirect_target(current, response.headers.get("Location"), shown_url)
                continue
            if response.status != 200:
                raise ArtifactError(
                    f"Could not fetch model data from {shown_url}: the server returned HTTP "
                    f"{response.status} {response.reason or ''}".rstrip()
                    + ". Check the URL, and that it has not expired if it is presigned."
                )
            _stream_to_file(response, download, limits)
            return
        finally:
            response.release_conn()

    raise ArtifactError(
        f"Could not fetch model data from {shown_url}: more than {MAX_REDIRECTS} redirects. "
        "Use the final URL."
    )


def _check_http_url(url: str, shown_url: str) -> None:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ArtifactError(f"Model data URL {shown_url} has no host.")
    # SageMaker accepts only https. Plain http is kept for servers on this
    # machine, where nothing travels over a network that could alter it.
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ArtifactError(
            f"Model data URL {shown_url} uses http://, which Sageport accepts only for loopback "
            "hosts (localhost, 127.0.0.1, ::1). Use an https:// or s3:// URL."
        )


def _redirect_target(current: str, location: str | None, shown_url: str) -> str:
    if not location:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: a redirect had no Location header."
        )
    target = urljoin(current, location)
    scheme = urlsplit(target).scheme
    downgrade = urlsplit(current).scheme == "https" and scheme == "http"
    if scheme not in ("http", "https") or downgrade:
        raise ArtifactError(
            f"Could not fetch model data from {shown_url}: the server redirected to a {scheme}:// "
            "URL, and redirects may only lead to https:// URLs. Use the final URL."
        )
    _check_http_url(target, display_url(target))
    return target


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _stream_to_file(response: urllib3.BaseHTTPResponse, download: Path, limits: _Limits) -> None:
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit():
        limits.check_size(int(length))

    received = 0
    with download.open("wb") as file:
        # read1 returns whatever one read from the socket gives, so a source
        # that sends a byte at a time still reaches the deadline check.
        while chunk := response.read1(_CHUNK_SIZE):
            limits.check_deadline()
            received += len(chunk)
            limits.check_size(received)
            file.write(chunk)
        limits.check_deadline()


def _describe_http_error(exc: urllib3.exceptions.HTTPError) -> str:
    reason: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        reason = exc.reason
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2, so it
    # is checked first.
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return f"could not connect ({reason})"
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return f"timed out ({reason})"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"TLS failed ({reason})"
    if isinstance(reason, urllib3.exceptions.ProtocolError):
        return _describe_broken_connection(reason)
    return str(reason)


def _describe_broken_connection(exc: urllib3.exceptions.ProtocolError) -> str:
    # urllib3 passes the cause as its second argument. A short read records
    # the bytes read (a count, or the bytes themselves) and the bytes missing.
    cause = exc.args[1] if len(exc.args) > 1 else None
    partial = getattr(cause, "partial", None)
    expected = getattr(cause, "expected", None)
    if partial is not None and isinstance(expected, int):
        got = partial if isinstance(partial, int) else len(partial)
        return (
            f"the server closed the connection after {got} bytes, "
            f"with {expected} more bytes announced"
        )
    return f"the connection broke ({cause or exc})"


# Completion marker and the final rename.


def _marker_path(dest_dir: Path) -> Path:
    # Beside the model directory rather than in it, so that model code that
    # lists its model directory sees only the model data.
    return dest_dir.with_name(f".{dest_dir.name}.model-data.json")


def _is_complete(dest_dir: Path, marker: Path, url: str) -> bool:
    # NOTE: completion is keyed on the URL alone. New content behind the same
    # URL is not fetched again until the model directory or marker is removed.
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded.get("url") == url and dest_dir.is_dir()


def _write_marker(marker: Path, url: str) -> None:
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(json.dumps({"url": url}), encoding="utf-8")
    partial.replace(marker)


def _move_into_place(model_dir: Path, dest_dir: Path, work: Path) -> None:
    # A non-empty directory cannot be replaced in one rename, so an old one is
    # moved into the work directory first and removed along with it.
    if dest_dir.exists() or dest_dir.is_symlink():
        dest_dir.rename(work / "previous")
    model_dir.chmod(0o755)
    model_dir.rename(dest_dir)


def _remove_stale_work_dirs(dest_dir: Path) -> None:
    # Left behind when a fetch into the same directory was killed mid-way.
    for stale in dest_dir.parent.glob(f".{dest_dir.name}.*.partial"):
        if stale.is_dir():
            _remove_tree(stale)


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("Could not remove temporary directory %s: %s", path, exc)


def _format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
