"""Caller-given names that become paths: checked as sent and after each percent-decoding."""

from __future__ import annotations

import pytest

from sageport.dataplane.path_names import decoded_forms, is_plain_name, is_relative_path


def test_decoded_forms_stop_at_fixed_point() -> None:
    assert decoded_forms("a%252e") == ["a%252e", "a%2e", "a."]


def test_decoded_forms_reject_endless_encoding() -> None:
    assert decoded_forms("%25252525252e") is None


@pytest.mark.parametrize("name", ["model.tar.gz", "group/model-b.tar.gz", "a%20b.tar.gz", "..x"])
def test_relative_path_accepted(name: str) -> None:
    assert is_relative_path(name)


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "%2e%2e/x",
        "%2E%2E%2Fx",
        "%252e%252e/x",
        "a/./b",
        "a/%2e/b",
        "/abs",
        "%2fabs",
        "a//b",
        "a\\\\b",
        "a%5cb",
        "a%00",
        " a",
        "%ff",
    ],
)
def test_relative_path_rejected(name: str) -> None:
    assert not is_relative_path(name)


@pytest.mark.parametrize("name", ["6f0c-1", "job.1", "...", "a b"])
def test_plain_name_accepted(name: str) -> None:
    assert is_plain_name(name)


@pytest.mark.parametrize("name", ["a/b", "..", ".", "../../x", "%2e%2e", "a%2fb", "a\\\\b", "x\n"])
def test_plain_name_rejected(name: str) -> None:
    assert not is_plain_name(name)
