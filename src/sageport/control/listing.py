"""Filtering, sorting and pagination shared by the List* operations.

The NextToken is opaque to clients: URL-safe base64 of the offset of the next
page and a digest of the filters it was issued for, so a token reused with
other filters is rejected instead of returning a page of something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from typing import Any

from sageport.errors import ValidationException
from sageport.store import Record

# SageMaker's documented default page size for List* operations.
DEFAULT_MAX_RESULTS = 10

_PAGING_MEMBERS = frozenset({"MaxResults", "NextToken"})

_SORT_KEYS = {
    "Name": lambda record: (record.name.lower(), record.created),
    "CreationTime": lambda record: (record.created, record.name.lower()),
    "Status": lambda record: (record.status or "", record.name.lower()),
}


def page(
    records: list[Record], params: dict[str, Any], *, result_key: str, fields: tuple[str, ...]
) -> dict[str, Any]:
    """Return one page of summaries of the records that match ``params``."""
    matching = [record for record in records if _matches(record, params)]

    sort_by = params.get("SortBy", "CreationTime")
    descending = params.get("SortOrder", "Descending") == "Descending"
    matching.sort(key=_SORT_KEYS.get(sort_by, _SORT_KEYS["CreationTime"]), reverse=descending)

    digest = _filter_digest(params)
    offset = _decode_token(params.get("NextToken"), digest)
    limit = params.get("MaxResults", DEFAULT_MAX_RESULTS)
    window = matching[offset : offset + limit]

    result: dict[str, Any] = {
        result_key: [
            {name: record.doc[name] for name in fields if name in record.doc} for record in window
        ]
    }
    if offset + limit < len(matching):
        result["NextToken"] = _encode_token(offset + limit, digest)
    return result


def _matches(record: Record, params: dict[str, Any]) -> bool:
    contains = params.get("NameContains")
    if contains and contains.lower() not in record.name.lower():
        return False
    status = params.get("StatusEquals")
    if status and record.status != status:
        return False
    return _within(record.created, params, "CreationTime") and _within(
        record.modified, params, "LastModifiedTime"
    )


def _within(value: float, params: dict[str, Any], member: str) -> bool:
    before: datetime | None = params.get(f"{member}Before")
    after: datetime | None = params.get(f"{member}After")
    if before is not None and not value < before.timestamp():
        return False
    return after is None or value > after.timestamp()


def _filter_digest(params: dict[str, Any]) -> str:
    filters = {key: value for key, value in params.items() if key not in _PAGING_MEMBERS}
    canonical = json.dumps(filters, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _encode_token(offset: int, digest: str) -> str:
    raw = json.dumps({"offset": offset, "filters": digest}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str | None, digest: str) -> int:
    if not token:
        return 0
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = decoded["offset"]
        filters = decoded["filters"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValidationException(
            "Invalid NextToken: pass the token from the previous response unchanged."
        ) from None
    if not isinstance(offset, int) or offset < 0 or filters != digest:
        raise ValidationException(
            "Invalid NextToken: it was issued for a request with other filters or sort order."
        )
    return offset
