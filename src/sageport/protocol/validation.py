"""Request validation driven by botocore shapes, with SageMaker's error messages.

``validate`` walks a decoded request against its input shape and checks what
SageMaker checks: required members, JSON types, lengths, numeric ranges,
patterns (matched against the whole value) and enums. Members the shape does
not define are ignored, so requests from newer SDKs keep working.

A value of the wrong JSON type fails at once with ``SerializationException``
because the real service cannot deserialise such a request and never reaches
its constraint checks. Constraint failures are collected and reported together
in the Coral format that SageMaker uses::

    2 validation errors detected: Value 'a_b' at 'endpointName' failed to
    satisfy constraint: Member must satisfy regular expression pattern: ...;
    Value null at 'endpointConfigName' failed to satisfy constraint: Member
    must not be null

Paths use lowerCamelCase member names. A list element is
``productionVariants.1.member.modelName`` (1-based). A map value is
``primaryContainer.environment.MY_KEY``. A bad map key is reported at the map
itself with ``Map keys must satisfy constraint: [...]``, as Coral does. Values
of shapes marked ``sensitive`` are left out of messages.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

from sageport.errors import SageportError, SerializationException
from sageport.protocol.patterns import compile_pattern, display_pattern

MAX_LISTED_VIOLATIONS = 10
MAX_DISPLAYED_VALUE = 256

# Deeper input is rejected so that the recursive walk cannot exhaust the
# stack. The limit is Sageport's choice, not a documented SageMaker limit.
MAX_DEPTH = 64

# Sageport hosts models from local disk as well as S3 and HTTPS, so the model
# data locations also accept an absolute path, a file:// URL and plain HTTP
# from a loopback host (which hosting/artifacts.py fetches). The first
# alternative is the model's own pattern for these members.
LOCAL_MODEL_DATA_PATTERN = (
    "((https|s3)://([^/]+)/?(.*)|file://(localhost)?/.+|/.+"
    r"|http://(localhost|127\.[0-9]+\.[0-9]+\.[0-9]+|\[::1\])(:[0-9]+)?/.+)"
)

# Async inference reads its input and writes its results on local disk too, so
# these locations also accept a file:// URL. The first alternative is the
# runtime model's pattern for InputLocation; it accepts what the control
# plane's pattern for S3OutputPath and S3FailurePath accepts.
LOCAL_ASYNC_LOCATION_PATTERN = "((https|s3)://([^/]+)/?(.*)|file://(localhost)?/.+)"

# Deliberate departures from the service model, keyed by
# (structure shape, member). Each entry replaces constraint keys of the
# member's shape. Everything else is checked exactly as the model defines it.
CONSTRAINT_OVERRIDES: Mapping[tuple[str, str], Mapping[str, Any]] = {
    ("ContainerDefinition", "ModelDataUrl"): {"pattern": LOCAL_MODEL_DATA_PATTERN},
    ("S3ModelDataSource", "S3Uri"): {"pattern": LOCAL_MODEL_DATA_PATTERN},
    ("AsyncInferenceOutputConfig", "S3OutputPath"): {"pattern": LOCAL_ASYNC_LOCATION_PATTERN},
    ("AsyncInferenceOutputConfig", "S3FailurePath"): {"pattern": LOCAL_ASYNC_LOCATION_PATTERN},
    ("InvokeEndpointAsyncInput", "InputLocation"): {"pattern": LOCAL_ASYNC_LOCATION_PATTERN},
}

_INTEGER_BOUNDS = {"integer": 2**31, "long": 2**63}


@dataclass
class _Walk:
    type_error: type[SageportError]
    violations: list[str] = field(default_factory=list)

    def fail(self, shape: Any, value: object, path: str, rule: str) -> None:
        self.violations.append(
            f"{_describe_value(shape, value)} at '{path}' failed to satisfy constraint: {rule}"
        )

    def wrong_type(self, shape: Any, value: object, path: str, expected: str) -> NoReturn:
        got = f"a JSON {_json_type(value)}"
        if not shape.metadata.get("sensitive"):
            got += f" '{_display(value)}'"
        raise self.type_error(f"Invalid value at '{path}': expected {expected}, got {got}.")


def validate(
    shape: Any,
    value: object,
    *,
    error: type[SageportError],
    type_error: type[SageportError] = SerializationException,
    ignore_members: Collection[str] = (),
) -> None:
    """Check ``value`` against a botocore structure shape.

    Raises ``type_error`` for the first value of the wrong JSON type and
    ``error`` listing every constraint that failed. ``ignore_members`` skips
    top-level members checked elsewhere, such as a REST payload.
    """
    walk = _Walk(type_error)
    _check_structure(walk, shape, value, "", depth=0, ignore=frozenset(ignore_members))

    if walk.violations:
        raise error(format_violations(walk.violations))


class FlatStructureCheck:
    """A precompiled pass test for a structure of scalar members, for requests on the hot path.

    ``passes`` returns True only when ``validate`` would find nothing wrong
    with the value. It checks string members against the same length,
    pattern and enum rules, overrides included, without walking the botocore
    shape. A value it cannot vouch for (a member of another type, a value
    that is not a string, a rule that fails) makes it return False, and the
    caller then runs ``validate``, which words the error.
    """

    def __init__(self, shape: Any, ignore_members: Collection[str] = ()) -> None:
        ignored = frozenset(ignore_members)
        self._required = tuple(name for name in shape.required_members if name not in ignored)
        self._ignored = ignored
        self._string_rules: dict[str, _StringRule] = {}
        self._other_members: set[str] = set()
        for name, member_shape in shape.members.items():
            if name in ignored:
                continue
            if member_shape.type_name == "string":
                override = CONSTRAINT_OVERRIDES.get((shape.name, name), {})
                self._string_rules[name] = _StringRule.of(member_shape, override)
            else:
                self._other_members.add(name)
        # Unions and documents have rules of their own, so validate checks them.
        self._checkable = not shape.metadata.get("union") and not _is_document(shape)

    def passes(self, value: Mapping[str, object]) -> bool:
        """Return True if ``validate`` would accept ``value``, and False when only it can tell."""
        if not self._checkable:
            return False
        for name in self._required:
            if value.get(name) is None:
                return False
        for name, item in value.items():
            if item is None or name in self._ignored:
                continue
            rule = self._string_rules.get(name)
            if rule is None:
                if name in self._other_members:
                    return False
                continue
            if not isinstance(item, str) or not rule.allows(item):
                return False
        return True


@dataclass(frozen=True)
class _StringRule:
    """The length, pattern and enum rules of one string member, as ``validate`` applies them."""

    minimum: int | None
    maximum: int | None
    pattern: re.Pattern[str] | None
    enum: frozenset[str]

    @classmethod
    def of(cls, shape: Any, override: Mapping[str, Any]) -> _StringRule:
        constraints = {**shape.metadata, **override}
        pattern = constraints.get("pattern")
        return cls(
            minimum=constraints.get("min"),
            maximum=constraints.get("max"),
            pattern=compile_pattern(pattern) if pattern is not None else None,
            enum=frozenset(shape.enum or ()),
        )

    def allows(self, value: str) -> bool:
        length = len(value)
        if self.minimum is not None and length < self.minimum:
            return False
        if self.maximum is not None and length > self.maximum:
            return False
        if self.pattern is not None and self.pattern.fullmatch(value) is None:
            return False
        return not self.enum or value in self.enum


def format_violations(violations: list[str]) -> str:
    """Join constraint failures into one Coral-style message, listing at most ten."""
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    listed = "; ".join(violations[:MAX_LISTED_VIOLATIONS])
    if count > MAX_LISTED_VIOLATIONS:
        listed += f"; and {count - MAX_LISTED_VIOLATIONS} more"
    return f"{count} validation {noun} detected: {listed}"


def parse_timestamps(shape: Any, value: Any) -> Any:
    """Return a copy of a validated value with timestamp members as aware datetimes.

    botocore sends epoch seconds and other SDKs send ISO-8601 strings. Naive
    ISO-8601 times are taken as UTC. Members the shape does not define are
    copied unchanged, and structure members that are null are left out.
    """
    type_name = shape.type_name

    if type_name == "timestamp":
        return to_datetime(value)
    if type_name == "structure" and isinstance(value, dict) and not _is_document(shape):
        members = shape.members
        # A member sent as JSON null counts as absent, as it does for AWS
        # services, so handlers never see a None where they expect a default.
        return {
            key: parse_timestamps(members[key], item) if key in members else item
            for key, item in value.items()
            if item is not None
        }
    if type_name == "list" and isinstance(value, list):
        return [None if item is None else parse_timestamps(shape.member, item) for item in value]
    if type_name == "map" and isinstance(value, dict):
        return {
            key: None if item is None else parse_timestamps(shape.value, item)
            for key, item in value.items()
        }
    return value


def to_datetime(value: object) -> datetime | None:
    """Convert epoch seconds or an ISO-8601 string to an aware datetime, or None if invalid."""
    if isinstance(value, bool):
        return None

    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None

    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    return None


def member_path(parent: str, member_name: str) -> str:
    """Append a member to a Coral path, lower-casing its first letter."""
    camel = member_name[:1].lower() + member_name[1:]
    return f"{parent}.{camel}" if parent else camel


def _check_value(
    walk: _Walk, shape: Any, value: object, path: str, *, depth: int, override: Mapping[str, Any]
) -> None:
    if depth > MAX_DEPTH:
        raise walk.type_error(f"Invalid value at '{path}': nested deeper than {MAX_DEPTH} levels.")

    type_name = shape.type_name
    if type_name == "structure":
        _check_structure(walk, shape, value, path, depth=depth, ignore=frozenset())
    elif type_name == "list":
        _check_list(walk, shape, value, path, depth)
    elif type_name == "map":
        _check_map(walk, shape, value, path, depth)
    else:
        _check_scalar_type(walk, shape, value, path)
        for rule in scalar_rule_failures(shape, value, override):
            walk.fail(shape, value, path, rule)


def _check_structure(
    walk: _Walk, shape: Any, value: object, path: str, *, depth: int, ignore: frozenset[str]
) -> None:
    if _is_document(shape):
        return
    if not isinstance(value, dict):
        walk.wrong_type(shape, value, path or "request", "a JSON object")

    required = set(shape.required_members)
    present = 0
    for name, member_shape in shape.members.items():
        if name in ignore:
            continue

        child_path = member_path(path, name)
        item = value.get(name)
        if item is None:
            if name in required:
                walk.violations.append(
                    f"Value null at '{child_path}' failed to satisfy constraint: "
                    "Member must not be null"
                )
            continue

        present += 1
        override = CONSTRAINT_OVERRIDES.get((shape.name, name), {})
        _check_value(walk, member_shape, item, child_path, depth=depth + 1, override=override)

    # A union (a tagged choice) carries exactly one of its members.
    if shape.metadata.get("union") and present != 1:
        walk.fail(shape, value, path or "request", "Member must have exactly one member set")


def _check_list(walk: _Walk, shape: Any, value: object, path: str, depth: int) -> None:
    if not isinstance(value, list):
        walk.wrong_type(shape, value, path, "a JSON array")

    for rule in _length_failures(shape.metadata, len(value)):
        walk.fail(shape, value, path, rule)

    for index, item in enumerate(value, start=1):
        item_path = f"{path}.{index}.member"
        if item is None:
            walk.fail(shape.member, item, item_path, "Member must not be null")
            continue
        _check_value(walk, shape.member, item, item_path, depth=depth + 1, override={})


def _check_map(walk: _Walk, shape: Any, value: object, path: str, depth: int) -> None:
    if not isinstance(value, dict):
        walk.wrong_type(shape, value, path, "a JSON object")

    for rule in _length_failures(shape.metadata, len(value)):
        walk.fail(shape, value, path, rule)

    for key, item in value.items():
        key_rules = scalar_rule_failures(shape.key, key, {})
        if key_rules:
            walk.fail(
                shape.key, key, path, f"Map keys must satisfy constraint: [{', '.join(key_rules)}]"
            )

        item_path = f"{path}.{key}"
        if item is None:
            walk.fail(shape.value, item, item_path, "Member must not be null")
            continue
        _check_value(walk, shape.value, item, item_path, depth=depth + 1, override={})


def _check_scalar_type(walk: _Walk, shape: Any, value: object, path: str) -> None:
    type_name = shape.type_name

    if type_name == "string":
        if not isinstance(value, str):
            walk.wrong_type(shape, value, path, "a string")
    elif type_name in _INTEGER_BOUNDS:
        _check_integer_type(walk, shape, value, path)
    elif type_name in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            walk.wrong_type(shape, value, path, "a number")
    elif type_name == "boolean":
        if not isinstance(value, bool):
            walk.wrong_type(shape, value, path, "a boolean")
    elif type_name == "timestamp":
        if to_datetime(value) is None:
            walk.wrong_type(shape, value, path, "epoch seconds or an ISO-8601 timestamp")
    elif type_name == "blob" and _blob_length(value) is None:
        walk.wrong_type(shape, value, path, "a base64-encoded string")


def _check_integer_type(walk: _Walk, shape: Any, value: object, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        walk.wrong_type(shape, value, path, "an integer")

    # The service deserialises into Java int/long, so larger values never
    # reach its constraint checks.
    bound = _INTEGER_BOUNDS[shape.type_name]
    if not -bound <= value < bound:
        bits = 32 if shape.type_name == "integer" else 64
        raise walk.type_error(
            f"Invalid value at '{path}': {value} is out of range for a {bits}-bit integer."
        )


def scalar_rule_failures(shape: Any, value: object, override: Mapping[str, Any]) -> list[str]:
    """Return the length, range, pattern and enum rules that a well-typed scalar fails."""
    constraints = {**shape.metadata, **override}
    type_name = shape.type_name

    if type_name == "string" and isinstance(value, str):
        failures = _length_failures(constraints, len(value))
        pattern = constraints.get("pattern")
        if pattern is not None and compile_pattern(pattern).fullmatch(value) is None:
            failures.append(
                f"Member must satisfy regular expression pattern: {display_pattern(pattern)}"
            )
        enum = shape.enum
        if enum and value not in enum:
            failures.append(f"Member must satisfy enum value set: [{', '.join(enum)}]")
        return failures

    if type_name == "blob":
        length = _blob_length(value)
        return [] if length is None else _length_failures(constraints, length)

    if type_name in ("integer", "long", "float", "double") and isinstance(value, int | float):
        return _range_failures(constraints, value)

    return []


def _length_failures(constraints: Mapping[str, Any], length: int) -> list[str]:
    failures = []
    minimum = constraints.get("min")
    maximum = constraints.get("max")
    if minimum is not None and length < minimum:
        failures.append(f"Member must have length greater than or equal to {minimum}")
    if maximum is not None and length > maximum:
        failures.append(f"Member must have length less than or equal to {maximum}")
    return failures


def _range_failures(constraints: Mapping[str, Any], number: float) -> list[str]:
    failures = []
    minimum = constraints.get("min")
    maximum = constraints.get("max")
    if minimum is not None and number < minimum:
        failures.append(f"Member must have value greater than or equal to {minimum}")
    if maximum is not None and number > maximum:
        failures.append(f"Member must have value less than or equal to {maximum}")
    return failures


def _blob_length(value: object) -> int | None:
    """Return the decoded length of a base64 JSON blob, or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None


def _is_document(shape: Any) -> bool:
    return bool(shape.metadata.get("document"))


def _describe_value(shape: Any, value: object) -> str:
    if value is None:
        return "Value null"
    if shape.metadata.get("sensitive"):
        return "Value"
    return f"Value '{_display(value)}'"


def _display(value: object) -> str:
    text = _java_style(value)
    if len(text) > MAX_DISPLAYED_VALUE:
        return text[:MAX_DISPLAYED_VALUE] + "..."
    return text


def _java_style(value: object) -> str:
    """Render a value the way Coral's Java messages print it: [a, b] and {k=v}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_java_style(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={_java_style(item)}" for key, item in value.items()) + "}"
    return str(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
