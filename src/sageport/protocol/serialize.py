"""Response bodies shaped by botocore output shapes.

``serialize`` turns what a handler returns into the JSON-ready dict the
service would send. It keeps only members the output shape defines, so
internal keys never reach a client, and drops ``None`` values. Timestamps
become epoch seconds with millisecond precision (``1529870369.986``, the form
SageMaker returns), float and double members become floats, and blobs become
base64 text.
"""

from __future__ import annotations

import base64
import enum
from datetime import UTC, datetime
from typing import Any

from sageport.protocol.validation import to_datetime


def serialize(shape: Any, value: Any) -> Any:
    """Convert ``value`` to the JSON form of a botocore shape, dropping unmodeled keys."""
    if isinstance(value, enum.Enum):
        value = value.value

    type_name = shape.type_name
    if type_name == "structure":
        return _serialize_structure(shape, value)
    if type_name == "list":
        return [serialize(shape.member, item) for item in value if item is not None]
    if type_name == "map":
        return {
            str(key): serialize(shape.value, item)
            for key, item in value.items()
            if item is not None
        }
    if type_name == "timestamp":
        return epoch_seconds(value)
    if type_name in ("float", "double"):
        return float(value)
    if type_name in ("integer", "long"):
        return int(value)
    if type_name == "boolean":
        return bool(value)
    if type_name == "blob":
        return _serialize_blob(value)
    return value


def epoch_seconds(value: datetime | float | str) -> float:
    """Return a timestamp as epoch seconds rounded to milliseconds. Naive datetimes are UTC."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 3)
    else:
        parsed = to_datetime(value)
        if parsed is None:
            raise ValueError(f"cannot serialise {value!r} as a timestamp")
        moment = parsed
    return round(moment.timestamp(), 3)


def _serialize_structure(shape: Any, value: Any) -> Any:
    # Document members are free-form JSON and pass through unchanged.
    if shape.metadata.get("document"):
        return value

    members = shape.members
    return {
        name: serialize(members[name], item)
        for name, item in value.items()
        if name in members and item is not None
    }


def _serialize_blob(value: bytes | str) -> str:
    if isinstance(value, str):
        return value
    return base64.b64encode(value).decode("ascii")
