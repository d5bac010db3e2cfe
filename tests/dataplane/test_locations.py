"""Writing async results: a file:// location may not leave the output path it was built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from sageport.dataplane.locations import LocationError, join_location, write_location


def test_write_inside_output_path(tmp_path: Path) -> None:
    base = f"file://{tmp_path}/results"

    write_location(f"{base}/id-1.out", b"answer", "text/plain", within=base)

    assert (tmp_path / "results" / "id-1.out").read_bytes() == b"answer"


@pytest.mark.parametrize("name", ["../escaped.out", "a/../../escaped.out", "%2e%2e/escaped.out"])
def test_write_rejects_parent_segment(tmp_path: Path, name: str) -> None:
    base = f"file://{tmp_path}/results"

    with pytest.raises(LocationError) as excinfo:
        write_location(f"{base}/{name}", b"answer", "text/plain", within=base)

    assert "'.' or '..' segment" in str(excinfo.value)
    assert not (tmp_path / "escaped.out").exists()


def test_write_rejects_parent_segment_without_base(tmp_path: Path) -> None:
    with pytest.raises(LocationError) as excinfo:
        write_location(f"file://{tmp_path}/results/../escaped.out", b"answer", "text/plain")

    assert "'.' or '..' segment" in str(excinfo.value)
    assert not (tmp_path / "escaped.out").exists()


def test_write_rejects_link_out(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "results" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    base = f"file://{tmp_path}/results"

    with pytest.raises(LocationError) as excinfo:
        write_location(f"{base}/link/id-1.out", b"answer", "text/plain", within=base)

    assert f"outside the configured output path {base}" in str(excinfo.value)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_write_rejects_other_directory(tmp_path: Path) -> None:
    base = f"file://{tmp_path}/results"

    with pytest.raises(LocationError) as excinfo:
        write_location(f"file://{tmp_path}/results-2/id-1.out", b"x", "text/plain", within=base)

    assert "outside the configured output path" in str(excinfo.value)


@pytest.mark.parametrize("name", ["x%41y.out", "a?b.out", "c#d.out", "sp ace.out"])
def test_joined_file_name_is_literal(tmp_path: Path, name: str) -> None:
    base = f"file://{tmp_path}/results"

    location = join_location(base, name)
    write_location(location, b"answer", "text/plain", within=base)

    assert (tmp_path / "results" / name).read_bytes() == b"answer"


def test_joined_s3_key_is_literal() -> None:
    assert join_location("s3://bucket/out/", "x%41y.out") == "s3://bucket/out/x%41y.out"
