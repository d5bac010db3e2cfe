"""List* filtering, sorting and NextToken handling."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sageport.control.listing import page
from sageport.errors import ValidationException
from sageport.store import Record


def record(name: str, created: float, status: str = "InService") -> Record:
    doc = {"EndpointName": name, "CreationTime": created, "EndpointStatus": status}
    return Record("endpoint", name, created, created, doc, status=status)


RECORDS = [
    record("alpha", 100.0),
    record("Beta", 200.0, "Failed"),
    record("gamma", 300.0),
    record("delta", 400.0, "Creating"),
]
FIELDS = ("EndpointName", "EndpointStatus")


def names(result: dict[str, object]) -> list[str]:
    return [item["EndpointName"] for item in result["Endpoints"]]  # type: ignore[attr-defined]


def test_default_order_is_newest_first() -> None:
    result = page(RECORDS, {}, result_key="Endpoints", fields=FIELDS)

    assert names(result) == ["delta", "gamma", "Beta", "alpha"]
    assert "NextToken" not in result


def test_name_sort_ignores_case() -> None:
    result = page(
        RECORDS, {"SortBy": "Name", "SortOrder": "Ascending"}, result_key="Endpoints", fields=FIELDS
    )

    assert names(result) == ["alpha", "Beta", "delta", "gamma"]


def test_filters_combine() -> None:
    params = {
        "NameContains": "A",
        "StatusEquals": "InService",
        "CreationTimeAfter": datetime.fromtimestamp(100.0, UTC),
    }

    result = page(RECORDS, params, result_key="Endpoints", fields=FIELDS)

    assert names(result) == ["gamma"]


def test_pages_follow_tokens_to_the_end() -> None:
    seen: list[str] = []
    params: dict[str, object] = {"MaxResults": 3}
    while True:
        result = page(RECORDS, params, result_key="Endpoints", fields=FIELDS)
        seen.extend(names(result))
        if "NextToken" not in result:
            break
        params = {"MaxResults": 3, "NextToken": result["NextToken"]}

    assert seen == ["delta", "gamma", "Beta", "alpha"]


@pytest.mark.parametrize(
    "token", ["not-base64!", "e30=", "eyJvZmZzZXQiOiAtMSwgImZpbHRlcnMiOiAiIn0="]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationException, match="Invalid NextToken"):
        page(RECORDS, {"NextToken": token}, result_key="Endpoints", fields=FIELDS)


def test_token_for_other_filters_is_refused() -> None:
    first = page(RECORDS, {"MaxResults": 1}, result_key="Endpoints", fields=FIELDS)

    with pytest.raises(ValidationException, match="other filters"):
        page(
            RECORDS,
            {"MaxResults": 1, "NextToken": first["NextToken"], "NameContains": "a"},
            result_key="Endpoints",
            fields=FIELDS,
        )
