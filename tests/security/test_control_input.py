"""Control-plane bodies that are deeply nested or carry nulls: a clean error or a clean input."""

from __future__ import annotations

import pytest

from sageport.errors import SerializationException
from sageport.protocol.awsjson import parse_control_request


@pytest.mark.parametrize("depth", [64, 500, 900, 5000])
def test_deep_nesting_is_rejected(depth: int) -> None:
    body = b'{"ModelName": ' + b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.CreateModel", body)

    # Python's decoder gives up on its own past about 1000 levels.
    assert excinfo.value.message in (
        "The request body nests JSON objects and arrays more than 64 levels deep; "
        "SageMaker inputs need far fewer.",
        "The request body is not valid JSON: maximum recursion depth exceeded while "
        "decoding a JSON array from a unicode string",
    )


def test_nesting_below_the_limit_reaches_validation() -> None:
    body = b'{"ModelName": ' + b"[" * 62 + b"]" * 62 + b"}"

    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.CreateModel", body)

    assert excinfo.value.message.startswith(
        "Invalid value at 'modelName': expected a string, got a JSON array"
    )


def test_null_member_counts_as_absent() -> None:
    _, params = parse_control_request(
        "SageMaker.ListModels", b'{"MaxResults": null, "NameContains": "a"}'
    )

    assert params == {"NameContains": "a"}
