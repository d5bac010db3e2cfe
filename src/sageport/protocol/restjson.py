"""The runtime's REST-JSON bindings: members carried in the URI and in headers.

The runtime model binds most invocation members to HTTP headers
(``location: header`` with a ``locationName``) and the endpoint name to the
``{EndpointName}`` URI label. These helpers read and write those bindings from
the model, so header names are never spelled out per operation.

Callers pass header values decoded as ISO-8859-1, the ASGI convention, which
keeps every byte. A client that sends UTF-8 therefore shows up as characters
above U+007F, which the model's ``\\p{ASCII}`` patterns reject.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from sageport.dataplane.invoke import valid_custom_attributes
from sageport.errors import ValidationError
from sageport.protocol.errors import Headers
from sageport.protocol.models import runtime_model
from sageport.protocol.validation import FlatStructureCheck, member_path, validate

_TRUE_FALSE = {"true": True, "false": False}


def validate_invoke_headers(
    operation_name: str, name: str, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Map the URI label and request headers of a runtime operation to its input members.

    ``name`` is the decoded ``{EndpointName}`` path segment. Returns members by
    their model names (``EndpointName``, ``ContentType``, ``CustomAttributes``,
    ...), leaving out absent headers and the body payload. Raises
    ValidationError for a value that is missing, of the wrong type or breaks a
    model constraint.
    """
    bindings = _input_bindings(operation_name)
    lowered = {key.lower(): value for key, value in headers.items()}

    params: dict[str, Any] = {}
    for member_name, header_name, member_shape in bindings.members:
        if header_name is None:
            params[member_name] = name
            continue
        raw = lowered.get(header_name)
        if raw is not None:
            params[member_name] = _header_value(member_name, member_shape, raw)

    # The precompiled check accepts what validate accepts without walking the
    # botocore shape on every invocation. Only validate words an error.
    if not bindings.check.passes(params):
        validate(
            bindings.input_shape,
            params,
            error=ValidationError,
            type_error=ValidationError,
            ignore_members=bindings.ignored,
        )
    # The model's pattern, \p{ASCII}*, admits control characters; SageMaker's
    # documentation requires visible ASCII, and a model must be able to trust it.
    custom_attributes = params.get("CustomAttributes")
    if custom_attributes is not None and not valid_custom_attributes(custom_attributes):
        raise ValidationError(
            "1 validation error detected: Value at 'customAttributes' failed to satisfy "
            "constraint: Member must contain only visible US-ASCII characters (0x20-0x7E) "
            "and tabs."
        )
    return params


@dataclass(frozen=True)
class _InputBindings:
    """The input members of a runtime operation and where each travels, read once from the model."""

    input_shape: Any
    # (member name, lower-case header name or None for the URI label, shape),
    # in the model's member order.
    members: tuple[tuple[str, str | None, Any], ...]
    # The payload member, which travels in the body.
    ignored: tuple[str, ...]
    check: FlatStructureCheck


@functools.cache
def _input_bindings(operation_name: str) -> _InputBindings:
    input_shape = runtime_model().operation_model(operation_name).input_shape
    members: list[tuple[str, str | None, Any]] = []
    for member_name, member_shape in input_shape.members.items():
        location = member_shape.serialization.get("location")
        if location == "uri":
            members.append((member_name, None, member_shape))
        elif location == "header":
            header_name = member_shape.serialization["name"].lower()
            members.append((member_name, header_name, member_shape))
    payload = input_shape.serialization.get("payload")
    ignored = (payload,) if payload else ()
    return _InputBindings(
        input_shape, tuple(members), ignored, FlatStructureCheck(input_shape, ignored)
    )


def render_invoke_headers(operation_name: str, result: Mapping[str, Any]) -> Headers:
    """Render the header-bound output members of a runtime operation as raw headers.

    Members that are absent or ``None`` are left out. The model constrains
    these values to ``\\p{ASCII}``, so any other character is sent as ``?``.
    """
    output_shape = runtime_model().operation_model(operation_name).output_shape
    headers: Headers = []

    for member_name, member_shape in output_shape.members.items():
        value = result.get(member_name)
        if value is None or member_shape.serialization.get("location") != "header":
            continue
        header_name = member_shape.serialization["name"].lower()
        headers.append(
            (header_name.encode("ascii"), _format_header(value).encode("ascii", "replace"))
        )
    return headers


def _header_value(member_name: str, shape: Any, raw: str) -> Any:
    type_name = shape.type_name
    if type_name in ("integer", "long"):
        return _parse_header(member_name, shape, raw, int, "an integer")
    if type_name in ("float", "double"):
        return _parse_header(member_name, shape, raw, float, "a number")
    if type_name == "boolean":
        if raw.strip().lower() not in _TRUE_FALSE:
            _raise_bad_header(member_name, shape, raw, "true or false")
        return _TRUE_FALSE[raw.strip().lower()]
    return raw


def _parse_header(member_name: str, shape: Any, raw: str, convert: Any, expected: str) -> Any:
    try:
        return convert(raw.strip())
    except ValueError:
        _raise_bad_header(member_name, shape, raw, expected)


def _raise_bad_header(member_name: str, shape: Any, raw: str, expected: str) -> NoReturn:
    header = shape.serialization["name"]
    raise ValidationError(
        f"Invalid value {raw!r} at '{member_path('', member_name)}': "
        f"header {header} must be {expected}."
    )


def _format_header(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
