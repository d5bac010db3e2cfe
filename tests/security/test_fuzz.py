"""Property-based fuzzing of the control plane with requests built from botocore's shapes.

Each case picks a hosting operation, builds its input from the operation's
input shape (valid values, or values broken in type, length, range, enum or
JSON form) and sends it to a real server. No case may crash the server or
get InternalFailure, and every error must parse in botocore into one of the
codes the control plane is meant to return.

``SAGEPORT_FUZZ_EXAMPLES`` sets the number of cases (300 by default), e.g.
``SAGEPORT_FUZZ_EXAMPLES=10000 uv run pytest tests/security/test_fuzz.py -s``.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.parsers import create_parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sageport.protocol.models import control_plane_model
from tests.harness import Server

EXAMPLES = int(os.environ.get("SAGEPORT_FUZZ_EXAMPLES", "300"))

OPERATIONS = [
    "CreateModel",
    "DescribeModel",
    "ListModels",
    "DeleteModel",
    "CreateEndpointConfig",
    "DescribeEndpointConfig",
    "ListEndpointConfigs",
    "DeleteEndpointConfig",
    "CreateEndpoint",
    "DescribeEndpoint",
    "ListEndpoints",
    "UpdateEndpoint",
    "UpdateEndpointWeightsAndCapacities",
    "DeleteEndpoint",
    # Not hosting operations: they must get UnknownOperationException.
    "CreateTrainingJob",
    "ListTags",
]

EXPECTED_CODES = {
    "ValidationException",
    "SerializationException",
    "UnknownOperationException",
    "ResourceLimitExceeded",
    "ResourceInUse",
}

# Members whose values name somewhere to fetch model data from. The fuzzer
# only ever sends a local path that does not exist, so no case makes the
# server reach another host.
_LOCATION_MEMBERS = ("Url", "Uri", "URI", "Location", "Path", "Arn", "Image")
_NOWHERE = "file:///nonexistent/sageport-fuzz/model.tar.gz"

_MAX_DEPTH = 4


def _is_location(name: str) -> bool:
    return name.endswith(_LOCATION_MEMBERS)


def _string(shape: Any) -> st.SearchStrategy[Any]:
    enum = shape.enum
    low = shape.metadata.get("min", 0)
    high = min(shape.metadata.get("max", 64), 80)
    valid: st.SearchStrategy[Any]
    if enum:
        valid = st.sampled_from(enum)
    else:
        valid = st.from_regex(r"[a-zA-Z0-9](-?[a-zA-Z0-9]){0,20}", fullmatch=True).filter(
            lambda value: low <= len(value) <= max(high, low)
        )
    broken = st.one_of(
        st.text(max_size=80),
        st.text(min_size=65, max_size=2000),
        st.just(""),
        st.integers(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    )
    return st.one_of(valid, valid, broken)


def _number(shape: Any) -> st.SearchStrategy[Any]:
    low = shape.metadata.get("min", -(2**31))
    high = shape.metadata.get("max", 2**31 - 1)
    if shape.type_name in {"float", "double"}:
        valid: st.SearchStrategy[Any] = st.floats(low, high, allow_nan=False)
    else:
        valid = st.integers(int(low), int(high))
    broken = st.one_of(
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8),
        st.booleans(),
        st.none(),
    )
    return st.one_of(valid, valid, broken)


def _shape_values(shape: Any, depth: int = 0, name: str = "") -> st.SearchStrategy[Any]:
    if _is_location(name):
        return st.one_of(st.just(_NOWHERE), st.text(max_size=20).map(lambda t: " " + t))
    kind = shape.type_name
    if depth > _MAX_DEPTH:
        return st.none()
    if kind == "structure":
        members = {
            member: _shape_values(member_shape, depth + 1, member)
            for member, member_shape in shape.members.items()
        }
        required = set(shape.required_members)
        fixed = {m: s for m, s in members.items() if m in required}
        optional = {m: s for m, s in members.items() if m not in required}
        valid = st.fixed_dictionaries(fixed, optional=optional)
        return st.one_of(
            valid,
            valid,
            valid,
            st.dictionaries(st.text(max_size=10), st.integers(), max_size=3),
            st.text(max_size=5),
        )
    if kind == "list":
        item = _shape_values(shape.member, depth + 1, name)
        return st.one_of(
            st.lists(item, max_size=4), st.lists(item, max_size=4), st.text(max_size=5)
        )
    if kind == "map":
        return st.one_of(
            st.dictionaries(
                st.text(max_size=20), _shape_values(shape.value, depth + 1, name), max_size=4
            ),
            st.integers(),
        )
    if kind == "string":
        return _string(shape)
    if kind in ("integer", "long", "float", "double"):
        return _number(shape)
    if kind == "boolean":
        return st.one_of(st.booleans(), st.booleans(), st.text(max_size=4), st.integers())
    if kind == "timestamp":
        return st.one_of(
            st.integers(0, 2**32), st.floats(allow_nan=False), st.text(max_size=30), st.none()
        )
    if kind == "blob":
        return st.one_of(st.text(max_size=20), st.integers())
    return st.none()


@st.composite
def control_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    operation_name = draw(st.sampled_from(OPERATIONS))
    operation = control_plane_model().operation_model(operation_name)
    params = draw(_shape_values(operation.input_shape))
    body = json.dumps(params).encode()
    mangle = draw(st.sampled_from(["none"] * 8 + ["truncate", "garbage", "deep", "array"]))
    if mangle == "truncate":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif mangle == "garbage":
        body = draw(st.binary(max_size=200))
    elif mangle == "deep":
        depth = draw(st.integers(60, 5000))
        body = b'{"ModelName": ' + b"[" * depth + b"]" * depth + b"}"
    elif mangle == "array":
        body = b"[" + body + b"]"
    return operation_name, body


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("fuzz") / "data")
    server.start()
    yield server
    server.stop()


def send(connection: http.client.HTTPConnection, operation: str, body: bytes) -> dict[str, Any]:
    connection.request(
        "POST",
        "/",
        body=body,
        headers={
            "X-Amz-Target": f"SageMaker.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    response = connection.getresponse()
    return {
        "status_code": response.status,
        "headers": {name.lower(): value for name, value in response.getheaders()},
        "body": response.read(),
    }


# About 20 cases a second on a 2-vCPU VM; the margin covers a slower machine.
@pytest.mark.timeout(120 + EXAMPLES // 5)
def test_fuzzed_control_plane_requests(fuzz_server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", fuzz_server.port, timeout=30)
    parser = create_parser("json")
    codes: dict[str, int] = {}
    cases = 0

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=EXAMPLES <= 300,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(control_requests())
    def case(request: tuple[str, bytes]) -> None:
        nonlocal cases
        cases += 1
        operation_name, body = request
        operation = control_plane_model().operation_model(operation_name)
        raw = send(connection, operation_name, body)
        parsed = parser.parse(raw, operation.output_shape)
        code = parsed.get("Error", {}).get("Code")
        codes[str(code)] = codes.get(str(code), 0) + 1

        assert raw["status_code"] < 500, (operation_name, body[:300], raw["body"][:500])
        if raw["status_code"] != 200:
            assert code in EXPECTED_CODES, (operation_name, body[:300], raw["body"][:500])
            assert parsed["Error"]["Message"]

    case()
    connection.close()

    print(f"\nfuzz: {cases} control-plane requests; responses by error code: {codes}")
    assert fuzz_server.process is not None
    assert fuzz_server.process.poll() is None
    assert "Traceback" not in fuzz_server.output()
