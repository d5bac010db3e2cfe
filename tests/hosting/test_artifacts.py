"""Tests for fetching and unpacking model data (sageport.hosting.artifacts).

Archives are real tar files built here with tarfile, and downloads come from
servers started on 127.0.0.1 for the test.
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import re
import socket
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import urllib3

from sageport.hosting.artifacts import ArtifactError, display_url, fetch_model_data
from tests.harness import trickling_http_server

# Tar members as (name, kind, payload): payload is the content of a file and
# the link target of a symlink or hard link.
Member = tuple[str, str, str]


def build_tar(path: Path, members: list[Member], *, compress: bool = True) -> Path:
    """Write a tar archive of ``members`` to ``path`` and return ``path``."""
    with tarfile.open(path, "w:gz" if compress else "w") as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = payload.encode()
                info.size = len(data)
                info.mode = 0o644
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            elif kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = payload
            elif kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = payload
            else:
                info.type = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE}.get(
                    kind, tarfile.FIFOTYPE
                )
            archive.addfile(info, io.BytesIO(data) if data else None)
    return path


MODEL_MEMBERS: list[Member] = [
    ("model.joblib", "file", "weights"),
    ("code", "dir", ""),
    ("code/inference.py", "file", "def model_fn(model_dir): ...\n"),
]


def file_tree(root: Path) -> dict[str, str]:
    """Map each path under ``root`` (relative, POSIX) to its file's text, or '' for a directory."""
    tree = {}
    for path in sorted(root.rglob("*")):
        tree[path.relative_to(root).as_posix()] = "" if path.is_dir() else path.read_text()
    return tree


def leftovers(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir() if path.name.endswith(".partial"))


# Local archives.


def test_archive_unpacks_into_dest(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS)
    dest = tmp_path / "instance" / "model"

    fetch_model_data(str(archive), dest)

    assert file_tree(dest) == {
        "code": "",
        "code/inference.py": "def model_fn(model_dir): ...\n",
        "model.joblib": "weights",
    }
    assert leftovers(dest.parent) == []


def test_uncompressed_tar_unpacks(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar", MODEL_MEMBERS, compress=False)
    dest = tmp_path / "model"

    fetch_model_data(str(archive), dest)

    assert (dest / "model.joblib").read_text() == "weights"


def test_archive_detected_by_content(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model-data.bin", MODEL_MEMBERS)
    dest = tmp_path / "model"

    fetch_model_data(str(archive), dest)

    assert (dest / "code" / "inference.py").is_file()


def test_archive_modes_are_sanitized(tmp_path: Path) -> None:
    path = tmp_path / "model.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("serve")
        info.size = 2
        info.mode = 0o4777
        info.uid = 4242
        archive.addfile(info, io.BytesIO(b"ok"))
    dest = tmp_path / "model"

    fetch_model_data(str(path), dest)

    stat = (dest / "serve").stat()
    assert stat.st_mode & 0o7777 == 0o755
    assert stat.st_uid == dest.stat().st_uid


def test_second_call_with_same_url_skips(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS)
    dest = tmp_path / "model"
    fetch_model_data(str(archive), dest)
    archive.unlink()

    fetch_model_data(str(archive), dest)

    assert (dest / "model.joblib").read_text() == "weights"


def test_other_url_replaces_dest(tmp_path: Path) -> None:
    first = build_tar(tmp_path / "first.tar.gz", MODEL_MEMBERS)
    second = build_tar(tmp_path / "second.tar.gz", [("other.txt", "file", "v2")])
    dest = tmp_path / "model"
    fetch_model_data(str(first), dest)

    fetch_model_data(str(second), dest)

    assert file_tree(dest) == {"other.txt": "v2"}
    assert leftovers(tmp_path) == []


def test_incomplete_dest_is_fetched_again(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS)
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "half-written").write_text("x")

    fetch_model_data(str(archive), dest)

    assert "half-written" not in file_tree(dest)
    assert (dest / "model.joblib").read_text() == "weights"


def test_failed_fetch_leaves_no_dest(tmp_path: Path) -> None:
    members = [*MODEL_MEMBERS, ("../escape", "file", "x")]
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "instance" / "model"

    with pytest.raises(ArtifactError):
        fetch_model_data(str(archive), dest)

    assert list(dest.parent.iterdir()) == []


def test_failed_fetch_keeps_previous_dest(tmp_path: Path) -> None:
    good = build_tar(tmp_path / "good.tar.gz", MODEL_MEMBERS)
    bad = build_tar(tmp_path / "bad.tar.gz", [("/etc/x", "file", "x")])
    dest = tmp_path / "model"
    fetch_model_data(str(good), dest)

    with pytest.raises(ArtifactError):
        fetch_model_data(str(bad), dest)

    assert (dest / "model.joblib").read_text() == "weights"
    fetch_model_data(str(good), dest)
    assert (dest / "model.joblib").read_text() == "weights"


# Unsafe archives.


def test_parent_escape_rejected(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", [("../escape", "file", "x")])
    dest = tmp_path / "unpack" / "model"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), dest)

    assert str(caught.value) == (
        f"Model data at {archive} contains an unsafe member '../escape': its path leaves "
        "the model directory. Rebuild the archive with relative paths, "
        "e.g. tar -czf model.tar.gz -C model_dir ."
    )
    assert not (tmp_path / "unpack" / "escape").exists()


def test_nested_parent_escape_rejected(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", [("code/../../escape", "file", "x")])

    with pytest.raises(ArtifactError, match=re.escape("'code/../../escape': its path leaves")):
        fetch_model_data(str(archive), tmp_path / "model")


def test_absolute_path_rejected(tmp_path: Path) -> None:
    target = tmp_path / "absolute.txt"
    archive = build_tar(tmp_path / "model.tar.gz", [(str(target), "file", "x")])

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    assert f"unsafe member '{target}': its path is absolute." in str(caught.value)
    assert not target.exists()


def test_symlink_inside_allowed(tmp_path: Path) -> None:
    members: list[Member] = [
        ("weights", "dir", ""),
        ("weights/model.bin", "file", "w"),
        ("model.bin", "symlink", "weights/model.bin"),
        ("current", "symlink", "weights"),
        ("current/extra.bin", "file", "e"),
    ]
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "model"

    fetch_model_data(str(archive), dest)

    assert (dest / "model.bin").is_symlink()
    assert (dest / "model.bin").read_text() == "w"
    assert (dest / "weights" / "extra.bin").read_text() == "e"


@pytest.mark.parametrize("target", ["../outside.txt", "/etc/passwd", "code/../../outside.txt"])
def test_symlink_outside_rejected(tmp_path: Path, target: str) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", [("link", "symlink", target)])

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    assert str(caught.value) == (
        f"Model data at {archive} contains an unsafe member 'link': it is a symbolic link "
        f"to {target!r}, outside the model directory. Rebuild the archive with the linked "
        "files in place of the links (tar -h)."
    )


def test_symlink_chain_outside_rejected(tmp_path: Path) -> None:
    # Each link looks harmless on its own path, but "d/up" already points at
    # the model directory, so "d/up/esc" -> ".." would land outside it.
    members: list[Member] = [
        ("d", "dir", ""),
        ("d/up", "symlink", ".."),
        ("d/up/esc", "symlink", ".."),
    ]
    archive = build_tar(tmp_path / "model.tar.gz", members)

    with pytest.raises(ArtifactError, match=re.escape("'d/up/esc': it is a symbolic link to '..'")):
        fetch_model_data(str(archive), tmp_path / "unpack" / "model")

    assert not (tmp_path / "unpack" / "esc").exists()


def test_write_through_symlink_outside_rejected(tmp_path: Path) -> None:
    members: list[Member] = [("d", "symlink", "."), ("d/../../x", "file", "x")]
    archive = build_tar(tmp_path / "model.tar.gz", members)

    with pytest.raises(ArtifactError, match=re.escape("'d/../../x': its path leaves")):
        fetch_model_data(str(archive), tmp_path / "unpack" / "model")


def test_hardlink_inside_allowed(tmp_path: Path) -> None:
    members: list[Member] = [("a.bin", "file", "same"), ("b.bin", "hardlink", "a.bin")]
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "model"

    fetch_model_data(str(archive), dest)

    assert (dest / "b.bin").read_text() == "same"
    assert (dest / "b.bin").stat().st_ino == (dest / "a.bin").stat().st_ino


@pytest.mark.parametrize("target", ["../outside.txt", "/etc/passwd"])
def test_hardlink_outside_rejected(tmp_path: Path, target: str) -> None:
    (tmp_path / "outside.txt").write_text("secret")
    archive = build_tar(tmp_path / "model.tar.gz", [("link", "hardlink", target)])

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    assert str(caught.value) == (
        f"Model data at {archive} contains an unsafe member 'link': it is a hard link "
        f"to {target!r}, outside the model directory. Rebuild the archive with the linked "
        "files in place of the links (tar -h)."
    )


@pytest.mark.parametrize(
    ("kind", "described"),
    [("chr", "character device"), ("blk", "block device"), ("fifo", "FIFO")],
)
def test_special_member_rejected(tmp_path: Path, kind: str, described: str) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", [("special", kind, "")])

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    assert str(caught.value) == (
        f"Model data at {archive} contains an unsafe member 'special': it is a {described}, "
        "and model data can contain only files, directories and links. "
        "Remove it from the archive."
    )


def test_oversized_archive_rejected(tmp_path: Path) -> None:
    members: list[Member] = [("a.bin", "file", "x" * 600), ("b.bin", "file", "x" * 600)]
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "model"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), dest, max_unpacked_bytes=1024)

    assert str(caught.value) == (
        f"Model data at {archive} is larger than 1 KiB, the maximum size for one model. "
        "Use smaller model data."
    )
    assert not dest.exists()


def test_too_many_members_rejected(tmp_path: Path) -> None:
    members: list[Member] = [(f"f{i}", "file", "") for i in range(6)]
    archive = build_tar(tmp_path / "model.tar.gz", members)

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model", max_members=5)

    assert str(caught.value) == (
        f"Model data at {archive} has more than 5 files and directories, the maximum for "
        "one model. Package the model in fewer files."
    )


@pytest.mark.parametrize(
    ("members", "limits"),
    [
        ([(f"f{i}", "file", "") for i in range(6)], {"max_members": 5}),
        (
            [("a.bin", "file", "x" * 600), ("b.bin", "file", "x" * 600)],
            {"max_unpacked_bytes": 1024},
        ),
    ],
)
def test_limits_checked_before_extracting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: list[Member], limits: dict[str, int]
) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", members)
    extracted: list[str] = []
    extract = tarfile.TarFile.extract

    def counting_extract(self: tarfile.TarFile, member: Any, *args: Any, **kwargs: Any) -> None:
        extracted.append(member.name)
        extract(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", counting_extract)

    with pytest.raises(ArtifactError):
        fetch_model_data(str(archive), tmp_path / "model", **limits)  # type: ignore[arg-type]

    assert extracted == []


UNSAFE_ARCHIVES: list[tuple[list[Member], str]] = [
    ([("../escape", "file", "x")], "its path leaves the model directory"),
    ([("/abs", "file", "x")], "its path is absolute"),
    ([("link", "symlink", "../outside")], "it is a symbolic link to '../outside'"),
    ([("d", "dir", ""), ("d/up", "symlink", ".."), ("d/up/esc", "symlink", "..")], "'d/up/esc'"),
    ([("link", "hardlink", "../outside")], "it is a hard link to '../outside'"),
    ([("fifo", "fifo", "")], "it is a FIFO"),
]


@pytest.mark.parametrize(("members", "reason"), UNSAFE_ARCHIVES)
def test_unsafe_rejected_without_data_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: list[Member], reason: str
) -> None:
    # Python 3.11.0 to 3.11.3 have no extraction filters, so the module's own
    # checks must reject the same archives on their own.
    monkeypatch.setattr("sageport.hosting.artifacts._EXTRACT_OPTIONS", {})
    archive = build_tar(tmp_path / "model.tar.gz", members)

    with pytest.raises(ArtifactError, match=re.escape(reason)):
        fetch_model_data(str(archive), tmp_path / "unpack" / "model")

    assert sorted(path.name for path in (tmp_path / "unpack").iterdir()) == []


# Archives whose members cannot be written.

_FIX_LINKS = (
    "Rebuild the archive with the linked files in place of the links (tar -h), "
    "or without the broken link."
)
_FIX_MEMBERS = "Rebuild the archive so that no path is both a file and a directory."

UNWRITABLE_ARCHIVES: list[tuple[list[Member], str]] = [
    (
        [("code", "dir", ""), ("code/lib", "symlink", "missing"), ("code/lib/x.py", "file", "x")],
        "the member 'code/lib/x.py', which could not be unpacked: 'code/lib' is a symbolic "
        f"link to 'missing', a path that does not exist in the model data. {_FIX_LINKS}",
    ),
    (
        [("code", "dir", ""), ("code/lib", "symlink", "missing"), ("code/lib/sub", "dir", "")],
        "the member 'code/lib/sub', which could not be unpacked: 'code/lib' is a symbolic "
        f"link to 'missing', a path that does not exist in the model data. {_FIX_LINKS}",
    ),
    (
        [("a", "file", "a"), ("b", "symlink", "a"), ("b/c", "file", "c")],
        "the member 'b/c', which could not be unpacked: 'b' is a symbolic link to 'a', "
        f"which is a file, not a directory. {_FIX_LINKS}",
    ),
    (
        [("a", "symlink", "b"), ("b", "symlink", "a"), ("a/x", "file", "x")],
        "the member 'a/x', which could not be unpacked: 'a' is a symbolic link to 'b', "
        f"which leads back to itself. {_FIX_LINKS}",
    ),
    (
        [("a", "file", "a"), ("a/b", "file", "b")],
        "the member 'a/b', which could not be unpacked: 'a' is a file in the archive, "
        f"not a directory. {_FIX_MEMBERS}",
    ),
    (
        [("a", "dir", ""), ("a/x", "file", "x"), ("a", "file", "a")],
        "the member 'a', which could not be unpacked: an earlier member made 'a' a "
        f"directory. {_FIX_MEMBERS}",
    ),
    (
        [("h", "hardlink", "missing")],
        "the member 'h', which could not be unpacked: it is a hard link to 'missing', "
        f"which is not an earlier member of the archive. {_FIX_LINKS}",
    ),
    (
        [("x" * 300, "file", "x")],
        f"the member '{'x' * 300}', which could not be unpacked: its path is too long for "
        "this file system. Shorten the path.",
    ),
]


@pytest.mark.parametrize(("members", "reason"), UNWRITABLE_ARCHIVES)
def test_unwritable_member_named(tmp_path: Path, members: list[Member], reason: str) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "unpack" / "model"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), dest)

    assert str(caught.value) == f"Model data at {archive} contains {reason}"
    assert "disk space" not in str(caught.value)
    assert list((tmp_path / "unpack").iterdir()) == []


def test_dangling_link_alone_allowed(tmp_path: Path) -> None:
    members: list[Member] = [("code", "dir", ""), ("code/lib", "symlink", "missing")]
    archive = build_tar(tmp_path / "model.tar.gz", members)
    dest = tmp_path / "model"

    fetch_model_data(str(archive), dest)

    assert (dest / "code" / "lib").is_symlink()
    assert not (dest / "code" / "lib").exists()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "No space left on device. Free disk space for Sageport's data directory."),
        (errno.EACCES, "Permission denied. Check the permissions of Sageport's data directory."),
        (errno.EIO, "Input/output error."),
    ],
)
def test_machine_error_hint_matches_errno(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, reason: str
) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS)

    def fail(self: tarfile.TarFile, tarinfo: tarfile.TarInfo, targetpath: str) -> None:
        raise OSError(code, os.strerror(code), targetpath)

    monkeypatch.setattr(tarfile.TarFile, "makefile", fail)

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    assert str(caught.value) == (
        f"Model data at {archive} contains the member 'model.joblib', which could not be "
        f"unpacked: {reason}"
    )


# Files that are not archives.


def test_not_a_tarball_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_text("this is not an archive\n" * 40)

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(archive), tmp_path / "model")

    message = str(caught.value)
    assert message.startswith(f"Model data at {archive} is not a valid .tar.gz archive: ")
    assert message.endswith("Rebuild it, e.g. with tar -czf model.tar.gz -C model_dir .")


def test_gzip_of_non_tar_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(gzip.compress(b"plain text, not a tar archive\n" * 40))

    with pytest.raises(ArtifactError, match=r"is not a valid \.tar\.gz archive: "):
        fetch_model_data(str(archive), tmp_path / "model")


def test_truncated_gzip_rejected(tmp_path: Path) -> None:
    members: list[Member] = [(f"part{i}.bin", "file", f"{i}" * 5000) for i in range(20)]
    whole = build_tar(tmp_path / "whole.tar.gz", members).read_bytes()
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(whole[: len(whole) // 2])
    dest = tmp_path / "model"

    with pytest.raises(ArtifactError, match=r"is not a valid \.tar\.gz archive: "):
        fetch_model_data(str(archive), dest)

    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_single_file_copied(tmp_path: Path) -> None:
    source = tmp_path / "weights.pt"
    source.write_bytes(b"\x00\x01binary weights")
    dest = tmp_path / "model"

    fetch_model_data(str(source), dest)

    assert (dest / "weights.pt").read_bytes() == b"\x00\x01binary weights"


# Local sources.


def test_file_url_with_percent_encoding(tmp_path: Path) -> None:
    folder = tmp_path / "my models"
    folder.mkdir()
    archive = build_tar(folder / "iris model.tar.gz", MODEL_MEMBERS)
    dest = tmp_path / "model"

    fetch_model_data("file://" + quote(str(archive)), dest)

    assert (dest / "model.joblib").read_text() == "weights"


def test_file_url_with_localhost(tmp_path: Path) -> None:
    archive = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS)
    dest = tmp_path / "model"

    fetch_model_data(f"file://localhost{archive}", dest)

    assert (dest / "model.joblib").read_text() == "weights"


def test_file_url_with_other_host_rejected(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch_model_data("file://server/models/model.tar.gz", tmp_path / "model")

    assert str(caught.value) == (
        "Model data URL file://server/models/model.tar.gz names the host 'server', but a "
        "file:// URL can only point to this machine. Use file:///absolute/path."
    )


def test_missing_file_rejected(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/missing/model.tar.gz"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(url, tmp_path / "model")

    assert str(caught.value) == f"Could not find model data at {url}: no such file."
    assert leftovers(tmp_path) == []


def test_missing_path_rejected(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.tar.gz")

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(path, tmp_path / "model")

    assert str(caught.value) == f"Could not find model data at {path}: no such file."


def test_directory_source_copied(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "code").mkdir(parents=True)
    (source / "model.joblib").write_text("weights")
    (source / "code" / "inference.py").write_text("def model_fn(model_dir): ...\n")
    (source / "empty").mkdir()
    dest = tmp_path / "model"

    fetch_model_data(str(source), dest)

    assert file_tree(dest) == {
        "code": "",
        "code/inference.py": "def model_fn(model_dir): ...\n",
        "empty": "",
        "model.joblib": "weights",
    }


def test_directory_source_limits_apply(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for i in range(3):
        (source / f"part{i}.bin").write_bytes(b"x" * 1000)

    with pytest.raises(ArtifactError, match="is larger than 2 KiB"):
        fetch_model_data(str(source), tmp_path / "a", max_unpacked_bytes=2048)
    with pytest.raises(ArtifactError, match="has more than 2 files and directories"):
        fetch_model_data(str(source), tmp_path / "b", max_members=2)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("models/model.tar.gz", "Model data URL models/model.tar.gz is not supported."),
        ("ftp://127.0.0.1/model.tar.gz", "Model data URL ftp://127.0.0.1/model.tar.gz is not"),
        ("s3:///model.tar.gz", "Model data URL s3:///model.tar.gz has no bucket."),
    ],
)
def test_unsupported_url_rejected(tmp_path: Path, url: str, expected: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(url, tmp_path / "model")

    assert str(caught.value).startswith(expected)


# http(s) downloads.


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoopbackServer:
    url: str
    routes: dict[str, Route]
    requests: list[str]


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    routes: dict[str, Route] = {}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            route = routes.get(self.path, Route(status=404, body=b"not found"))
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LoopbackServer(f"http://127.0.0.1:{server.server_port}", routes, requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_loopback_download(tmp_path: Path, http_server: LoopbackServer) -> None:
    body = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS).read_bytes()
    http_server.routes["/models/model.tar.gz"] = Route(body=body)
    dest = tmp_path / "model"

    fetch_model_data(f"{http_server.url}/models/model.tar.gz", dest)

    assert file_tree(dest)["model.joblib"] == "weights"
    assert leftovers(tmp_path) == []


def test_http_single_file_named_by_url(tmp_path: Path, http_server: LoopbackServer) -> None:
    http_server.routes["/weights.pt?sig=abc"] = Route(body=b"\x00weights")
    dest = tmp_path / "model"

    fetch_model_data(f"{http_server.url}/weights.pt?sig=abc", dest)

    assert file_tree(dest) == {"weights.pt": "\x00weights"}


def test_http_not_found(tmp_path: Path, http_server: LoopbackServer) -> None:
    url = f"{http_server.url}/missing.tar.gz?X-Amz-Signature=secret"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(url, tmp_path / "model")

    assert str(caught.value) == (
        f"Could not fetch model data from {http_server.url}/missing.tar.gz: the server "
        "returned HTTP 404 Not Found. Check the URL, and that it has not expired if it is "
        "presigned."
    )


def test_http_redirect_followed(tmp_path: Path, http_server: LoopbackServer) -> None:
    body = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS).read_bytes()
    http_server.routes["/latest"] = Route(status=302, headers={"Location": "/v2/model.tar.gz"})
    http_server.routes["/v2/model.tar.gz"] = Route(body=body)
    dest = tmp_path / "model"

    fetch_model_data(f"{http_server.url}/latest", dest)

    assert (dest / "model.joblib").read_text() == "weights"
    assert http_server.requests == ["/latest", "/v2/model.tar.gz"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/model.tar.gz"])
def test_http_redirect_to_other_scheme_rejected(
    tmp_path: Path, http_server: LoopbackServer, location: str
) -> None:
    http_server.routes["/model.tar.gz"] = Route(status=301, headers={"Location": location})
    scheme = location.partition(":")[0]

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(f"{http_server.url}/model.tar.gz", tmp_path / "model")

    assert str(caught.value) == (
        f"Could not fetch model data from {http_server.url}/model.tar.gz: the server "
        f"redirected to a {scheme}:// URL, and redirects may only lead to https:// URLs. "
        "Use the final URL."
    )


def test_http_redirect_loop_stops(tmp_path: Path, http_server: LoopbackServer) -> None:
    http_server.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})

    with pytest.raises(ArtifactError, match="more than 5 redirects"):
        fetch_model_data(f"{http_server.url}/loop", tmp_path / "model")

    assert len(http_server.requests) == 6


def test_http_download_over_limit(tmp_path: Path, http_server: LoopbackServer) -> None:
    http_server.routes["/big.bin"] = Route(body=b"x" * 5000)
    dest = tmp_path / "model"

    with pytest.raises(ArtifactError, match="is larger than 4 KiB"):
        fetch_model_data(f"{http_server.url}/big.bin", dest, max_unpacked_bytes=4096)

    assert not dest.exists()


def test_http_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.tar.gz"

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(url, tmp_path / "model")

    message = str(caught.value)
    assert message.startswith(f"Could not fetch model data from {url}: could not connect")
    assert message.endswith("Check that the URL is reachable from the Sageport server.")


def test_http_to_remote_host_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_connection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the URL check must run before any connection")

    monkeypatch.setattr(urllib3.PoolManager, "urlopen", refuse_connection)

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data("http://models.example/model.tar.gz", tmp_path / "model")

    assert str(caught.value) == (
        "Model data URL http://models.example/model.tar.gz uses http://, which Sageport "
        "accepts only for loopback hosts (localhost, 127.0.0.1, ::1). Use an https:// or "
        "s3:// URL."
    )


def test_display_url_hides_credentials() -> None:
    shown = display_url("https://user:pw@host.example/m.tar.gz?X-Amz-Signature=s#frag")

    assert shown == "https://host.example/m.tar.gz"
    assert display_url("s3://bucket/key") == "s3://bucket/key"


# s3:// downloads, against moto's S3 server on loopback.


@pytest.fixture
def s3_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed; it serves S3 on loopback"
    )
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # Only static keys and the loopback endpoint: no config files, no
        # instance metadata lookups, no real AWS endpoint.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
        # moto keeps its buckets per process, so each test starts from empty.
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        client = boto3.client("s3")
        assert client.meta.endpoint_url == endpoint
        client.create_bucket(Bucket="models")
        yield client
    finally:
        server.stop()


def test_s3_object_unpacks(tmp_path: Path, s3_client: Any) -> None:
    body = build_tar(tmp_path / "model.tar.gz", MODEL_MEMBERS).read_bytes()
    s3_client.put_object(Bucket="models", Key="iris/model.tar.gz", Body=body)
    dest = tmp_path / "model"

    fetch_model_data("s3://models/iris/model.tar.gz", dest)

    assert file_tree(dest)["code/inference.py"] == "def model_fn(model_dir): ...\n"


@pytest.mark.parametrize("url", ["s3://models/iris/", "s3://models/iris"])
def test_s3_prefix_copied(tmp_path: Path, s3_client: Any, url: str) -> None:
    s3_client.put_object(Bucket="models", Key="iris/model.joblib", Body=b"weights")
    s3_client.put_object(Bucket="models", Key="iris/code/inference.py", Body=b"code")
    s3_client.put_object(Bucket="models", Key="iris-other/ignored", Body=b"x")
    dest = tmp_path / "model"

    fetch_model_data(url, dest)

    assert file_tree(dest) == {
        "code": "",
        "code/inference.py": "code",
        "model.joblib": "weights",
    }


def test_s3_missing_object(tmp_path: Path, s3_client: Any) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch_model_data("s3://models/missing.tar.gz", tmp_path / "model")

    assert str(caught.value) == (
        "Could not find model data at s3://models/missing.tar.gz: no such object."
    )


def test_s3_empty_prefix(tmp_path: Path, s3_client: Any) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch_model_data("s3://models/nothing/", tmp_path / "model")

    assert str(caught.value) == (
        "Could not find model data at s3://models/nothing/: no objects under this prefix."
    )


def test_s3_key_under_object_named(tmp_path: Path, s3_client: Any) -> None:
    # "iris/code" is an object, so "iris/code/inference.py" has no directory to go in.
    s3_client.put_object(Bucket="models", Key="iris/code", Body=b"x")
    s3_client.put_object(Bucket="models", Key="iris/code/inference.py", Body=b"code")

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data("s3://models/iris/", tmp_path / "model")

    assert str(caught.value) == (
        "Could not fetch model data from s3://models/iris/: File exists on 'code' in the "
        "model data."
    )


def test_within_allows_path_inside(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "model" / "code").mkdir(parents=True)
    (prefix / "model" / "code" / "inference.py").write_text("x = 1\n")
    (prefix / "model" / "shared.txt").symlink_to(prefix / "model" / "code" / "inference.py")

    fetch_model_data(f"file://{prefix}/model", tmp_path / "dest", within=prefix)

    assert file_tree(tmp_path / "dest") == {
        "code": "",
        "code/inference.py": "x = 1\n",
        "shared.txt": "x = 1\n",
    }


def test_within_rejects_link_out(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    outside = build_tar(tmp_path / "outside.tar.gz", MODEL_MEMBERS)
    (prefix / "link.tar.gz").symlink_to(outside)

    with pytest.raises(ArtifactError) as excinfo:
        fetch_model_data(f"file://{prefix}/link.tar.gz", tmp_path / "dest", within=prefix)

    assert (
        f"leads to {prefix}/link.tar.gz, a link to {outside.resolve()}, which is outside {prefix}"
        in str(excinfo.value)
    )
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize("link", ["weights.bin", "data"])
def test_within_rejects_link_out_of_directory(tmp_path: Path, link: str) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "model").mkdir(parents=True)
    (prefix / "model" / "inference.py").write_text("x = 1\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "weights.bin").write_text("SECRET")
    target = tmp_path / "secret" / "weights.bin" if link == "weights.bin" else tmp_path / "secret"
    (prefix / "model" / link).symlink_to(target)

    with pytest.raises(ArtifactError) as excinfo:
        fetch_model_data(str(prefix / "model"), tmp_path / "dest", within=prefix)

    assert "which is outside" in str(excinfo.value)
    assert not (tmp_path / "dest").exists()


def test_within_rejects_decoded_parent(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    build_tar(tmp_path / "outside.tar.gz", MODEL_MEMBERS)

    with pytest.raises(ArtifactError) as excinfo:
        fetch_model_data(f"file://{prefix}/%2e%2e/outside.tar.gz", tmp_path / "dest", within=prefix)

    assert "which is outside" in str(excinfo.value)


def test_directory_link_loop_named(tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "code").mkdir(parents=True)
    (source / "code" / "inference.py").write_text("x = 1\n")
    (source / "code" / "again").symlink_to(source, target_is_directory=True)

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(source), tmp_path / "dest")

    assert str(caught.value) == (
        f"Model data at {source} contains {source}/code/again, a symbolic link loop: it "
        f"points to {source}, a directory that contains the link. Remove the link from the "
        "model directory."
    )


@pytest.mark.parametrize(
    ("target", "kind"),
    [("b", "a symbolic link loop"), ("missing", "a symbolic link to a path that does not exist")],
)
def test_file_link_problem_named(tmp_path: Path, target: str, kind: str) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "a").symlink_to(source / target)
    (source / "b").symlink_to(source / "a")

    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(str(source), tmp_path / "dest")

    assert f", which is {kind}. Remove it from the model directory." in str(caught.value)


@pytest.fixture
def trickle_server() -> Iterator[str]:
    """A loopback URL that sends one byte every 50 ms, for at most 200 bytes."""
    with trickling_http_server(interval=0.05, count=200) as url:
        yield url


def test_trickling_download_times_out(tmp_path: Path, trickle_server: str) -> None:
    with pytest.raises(ArtifactError) as caught:
        fetch_model_data(trickle_server, tmp_path / "model", timeout=0.5)

    assert str(caught.value) == (
        f"Fetching model data from {trickle_server} timed out after 0.5 seconds "
        "(ModelDataDownloadTimeoutInSeconds). Check that the source is reachable and fast "
        "enough, or raise ModelDataDownloadTimeoutInSeconds on the production variant "
        "(at most 3600)."
    )
    assert leftovers(tmp_path) == []


def test_short_http_download_says_how_short(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_short() -> None:
        # urllib3 retries, so every attempt gets the same short body.
        for _ in range(3):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 20)

    thread = threading.Thread(target=answer_short, daemon=True)
    thread.start()
    try:
        with pytest.raises(ArtifactError) as excinfo:
            fetch_model_data(f"http://127.0.0.1:{port}/model.tar.gz", tmp_path / "dest")
    finally:
        listener.close()
        thread.join(timeout=10)

    assert "closed the connection after 20 bytes, with 980 more bytes announced" in str(
        excinfo.value
    )
    assert "IncompleteRead" not in str(excinfo.value)
