"""Request validation against the botocore shapes, with Coral-style messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from sageport.errors import SerializationException, ValidationError, ValidationException
from sageport.protocol.models import control_plane_model, runtime_model
from sageport.protocol.patterns import compile_pattern
from sageport.protocol.validation import (
    CONSTRAINT_OVERRIDES,
    LOCAL_MODEL_DATA_PATTERN,
    MAX_DEPTH,
    FlatStructureCheck,
    parse_timestamps,
    validate,
)

NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
MODEL_NAME_PATTERN = "^[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"


def _input_shape(operation: str) -> Any:
    return control_plane_model().operation_model(operation).input_shape


def _validation_message(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(ValidationException) as caught:
        validate(_input_shape(operation), params, error=ValidationException)
    return caught.value.message


def _serialization_message(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(SerializationException) as caught:
        validate(_input_shape(operation), params, error=ValidationException)
    return caught.value.message


def _reachable_shapes(shape: Any, seen: dict[str, Any]) -> None:
    if shape.name in seen:
        return
    seen[shape.name] = shape
    if shape.type_name == "structure":
        for member in shape.members.values():
            _reachable_shapes(member, seen)
    elif shape.type_name == "list":
        _reachable_shapes(shape.member, seen)
    elif shape.type_name == "map":
        _reachable_shapes(shape.key, seen)
        _reachable_shapes(shape.value, seen)


ALL_OPERATIONS = [
    (model, name)
    for model in (control_plane_model(), runtime_model())
    for name in model.operation_names
]


@pytest.mark.parametrize(
    ("model", "operation"), ALL_OPERATIONS, ids=[f"{m.service_name}.{n}" for m, n in ALL_OPERATIONS]
)
def test_input_shape_patterns_compile(model: Any, operation: str) -> None:
    input_shape = model.operation_model(operation).input_shape
    if input_shape is None:
        return
    shapes: dict[str, Any] = {}
    _reachable_shapes(input_shape, shapes)

    for shape in shapes.values():
        pattern = shape.metadata.get("pattern")
        if pattern is not None:
            assert compile_pattern(pattern).pattern


@pytest.mark.parametrize("operation", control_plane_model().operation_names)
def test_empty_input_reports_each_required_member(operation: str) -> None:
    input_shape = _input_shape(operation)
    if input_shape is None:
        return
    required = input_shape.required_members

    if not required:
        validate(input_shape, {}, error=ValidationException)
        return
    message = _validation_message(operation, {})
    assert message.startswith(f"{len(required)} validation error")
    assert message.count("Member must not be null") == min(len(required), 10)


def test_override_patterns_compile() -> None:
    for constraints in CONSTRAINT_OVERRIDES.values():
        assert compile_pattern(constraints["pattern"]).pattern


CORAL_MESSAGES = [
    pytest.param(
        "CreateEndpoint",
        {"EndpointName": "bad_name", "EndpointConfigName": "cfg"},
        "1 validation error detected: Value 'bad_name' at 'endpointName' failed to satisfy "
        f"constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}",
        id="pattern",
    ),
    pytest.param(
        "CreateModel",
        {"ModelName": "m", "ExecutionRoleArn": "arn:aws:iam::123456789012:role/" + "r" * 2048},
        "1 validation error detected: Value "
        f"'arn:aws:iam::123456789012:role/{'r' * 225}...' at 'executionRoleArn' failed to "
        "satisfy constraint: Member must have length less than or equal to 2048",
        id="max-length",
    ),
    pytest.param(
        "CreateEndpoint",
        {"EndpointName": "bad_name-" + "e" * 60},
        "3 validation errors detected: "
        f"Value 'bad_name-{'e' * 60}' at 'endpointName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63; "
        f"Value 'bad_name-{'e' * 60}' at 'endpointName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME_PATTERN}; "
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null",
        id="length-pattern-required",
    ),
    pytest.param(
        "ListEndpoints",
        {"SortBy": "Size", "MaxResults": 0},
        "2 validation errors detected: Value 'Size' at 'sortBy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Name, CreationTime, Status]; "
        "Value '0' at 'maxResults' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1",
        id="enum-and-range",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "cfg",
            "ProductionVariants": [
                {"VariantName": "AllTraffic", "ModelName": "ok"},
                {"VariantName": "v2", "ModelName": "ENTER MODEL NAME", "InitialVariantWeight": -1},
            ],
        },
        "2 validation errors detected: Value 'ENTER MODEL NAME' at "
        "'productionVariants.2.member.modelName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {MODEL_NAME_PATTERN}; "
        "Value '-1' at 'productionVariants.2.member.initialVariantWeight' failed to satisfy "
        "constraint: Member must have value greater than or equal to 0",
        id="nested-list-path",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {"EndpointConfigName": "cfg", "ProductionVariants": []},
        "1 validation error detected: Value '[]' at 'productionVariants' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1",
        id="list-min-length",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {"EndpointConfigName": "cfg", "ProductionVariants": [None]},
        "1 validation error detected: Value null at 'productionVariants.1.member' failed to "
        "satisfy constraint: Member must not be null",
        id="null-list-element",
    ),
    pytest.param(
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": {"1BAD": "x", "OK": "v" * 1025}}},
        "2 validation errors detected: Value '1BAD' at 'primaryContainer.environment' failed to "
        "satisfy constraint: Map keys must satisfy constraint: "
        "[Member must satisfy regular expression pattern: ^[a-zA-Z_][a-zA-Z0-9_]*]; "
        f"Value '{'v' * 256}...' at 'primaryContainer.environment.OK' failed to satisfy "
        "constraint: Member must have length less than or equal to 1024",
        id="map-key-and-value",
    ),
    pytest.param(
        "CreateModel",
        {"ModelName": "m", "Tags": [{"Key": "", "Value": "v"}]},
        "1 validation error detected: Value '' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1",
        id="min-length",
    ),
]


@pytest.mark.parametrize(("operation", "params", "expected"), CORAL_MESSAGES)
def test_coral_message(operation: str, params: dict[str, Any], expected: str) -> None:
    assert _validation_message(operation, params) == expected


def test_messages_listed_up_to_ten() -> None:
    params = {"ModelName": "m", "Tags": [{"Key": "", "Value": "v"}] * 12}

    message = _validation_message("CreateModel", params)

    one = (
        "Value '' at 'tags.{}.member.key' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1"
    )
    listed = "; ".join(one.format(index) for index in range(1, 11))
    assert message == f"12 validation errors detected: {listed}; and 2 more"


def test_enum_lists_model_values() -> None:
    params = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [{"VariantName": "v", "InstanceType": "ml.bogus"}],
    }
    enum = control_plane_model().shape_for("ProductionVariantInstanceType").enum

    message = _validation_message("CreateEndpointConfig", params)

    assert message == (
        "1 validation error detected: Value 'ml.bogus' at "
        "'productionVariants.1.member.instanceType' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{', '.join(enum)}]"
    )


def test_unknown_members_ignored() -> None:
    params = {"EndpointName": "ep", "EndpointConfigName": "cfg", "FutureMember": {"x": [1]}}

    validate(_input_shape("CreateEndpoint"), params, error=ValidationException)


def test_int_accepted_for_float_member() -> None:
    params = {
        "EndpointConfigName": "cfg",
        "ProductionVariants": [{"VariantName": "v", "InitialVariantWeight": 1}],
    }

    validate(_input_shape("CreateEndpointConfig"), params, error=ValidationException)


TYPE_ERRORS = [
    pytest.param(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [{"VariantName": "v", "InitialInstanceCount": "2"}],
        },
        "Invalid value at 'productionVariants.1.member.initialInstanceCount': "
        "expected an integer, got a JSON string '2'.",
        id="string-for-integer",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [{"VariantName": "v", "InitialInstanceCount": 1.5}],
        },
        "Invalid value at 'productionVariants.1.member.initialInstanceCount': "
        "expected an integer, got a JSON number '1.5'.",
        id="float-for-integer",
    ),
    pytest.param(
        "CreateEndpoint",
        {"EndpointName": 7, "EndpointConfigName": "c"},
        "Invalid value at 'endpointName': expected a string, got a JSON number '7'.",
        id="number-for-string",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": {"VariantName": "v"}},
        "Invalid value at 'productionVariants': expected a JSON array, got a JSON object "
        "'{VariantName=v}'.",
        id="object-for-list",
    ),
    pytest.param(
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {"Environment": ["A=1"]}},
        "Invalid value at 'primaryContainer.environment': expected a JSON object, "
        "got a JSON array '[A=1]'.",
        id="array-for-map",
    ),
    pytest.param(
        "CreateModel",
        {"ModelName": "m", "EnableNetworkIsolation": "true"},
        "Invalid value at 'enableNetworkIsolation': expected a boolean, got a JSON string 'true'.",
        id="string-for-boolean",
    ),
    pytest.param(
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [{"VariantName": "v", "InitialVariantWeight": True}],
        },
        "Invalid value at 'productionVariants.1.member.initialVariantWeight': "
        "expected a number, got a JSON boolean 'true'.",
        id="boolean-for-float",
    ),
    pytest.param(
        "ListEndpoints",
        {"CreationTimeAfter": "yesterday"},
        "Invalid value at 'creationTimeAfter': expected epoch seconds or an ISO-8601 timestamp, "
        "got a JSON string 'yesterday'.",
        id="bad-timestamp",
    ),
    pytest.param(
        "ListEndpoints",
        {"MaxResults": 2**31},
        "Invalid value at 'maxResults': 2147483648 is out of range for a 32-bit integer.",
        id="integer-overflow",
    ),
    pytest.param(
        "CreateEndpoint",
        {"EndpointName": "e", "EndpointConfigName": "c", "Tags": "k=v"},
        "Invalid value at 'tags': expected a JSON array, got a JSON string 'k=v'.",
        id="string-for-list",
    ),
]


@pytest.mark.parametrize(("operation", "params", "expected"), TYPE_ERRORS)
def test_wrong_json_type(operation: str, params: dict[str, Any], expected: str) -> None:
    assert _serialization_message(operation, params) == expected


def test_non_object_request_is_type_error() -> None:
    with pytest.raises(SerializationException) as caught:
        validate(_input_shape("ListEndpoints"), ["x"], error=ValidationException)

    assert (
        caught.value.message
        == "Invalid value at 'request': expected a JSON object, got a JSON array '[x]'."
    )


def test_type_error_class_configurable() -> None:
    with pytest.raises(ValidationError) as caught:
        validate(
            _input_shape("ListEndpoints"),
            {"MaxResults": "5"},
            error=ValidationError,
            type_error=ValidationError,
        )

    assert (
        caught.value.message
        == "Invalid value at 'maxResults': expected an integer, got a JSON string '5'."
    )


def test_deep_nesting_rejected() -> None:
    expression: dict[str, Any] = {}
    for _ in range(MAX_DEPTH):
        expression = {"SubExpressions": [expression]}

    with pytest.raises(SerializationException) as caught:
        validate(
            _input_shape("Search"),
            {"Resource": "Endpoint", "SearchExpression": expression},
            error=ValidationException,
        )

    assert "nested deeper than 64 levels" in caught.value.message


def test_union_needs_exactly_one_member() -> None:
    shape = control_plane_model().shape_for("CollectionConfig")

    with pytest.raises(ValidationException) as caught:
        validate(shape, {}, error=ValidationException)

    assert caught.value.message == (
        "1 validation error detected: Value '{}' at 'request' failed to satisfy constraint: "
        "Member must have exactly one member set"
    )


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/model.tar.gz",
        "https://example.com/model.tar.gz",
        "/srv/models/model.tar.gz",
        "file:///srv/models/model.tar.gz",
        "file://localhost/srv/models/model.tar.gz",
    ],
)
def test_model_data_url_accepts_local(url: str) -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "img", "ModelDataUrl": url}}

    validate(_input_shape("CreateModel"), params, error=ValidationException)


@pytest.mark.parametrize(
    "url",
    [
        "model.tar.gz",
        "ftp://host/model.tar.gz",
        "file://host/m.tar.gz",
        "/",
        "http://example.com/model.tar.gz",
    ],
)
def test_model_data_url_rejects_others(url: str) -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "img", "ModelDataUrl": url}}

    message = _validation_message("CreateModel", params)

    assert message == (
        f"1 validation error detected: Value '{url}' at 'primaryContainer.modelDataUrl' failed "
        "to satisfy constraint: Member must satisfy regular expression pattern: "
        f"^{LOCAL_MODEL_DATA_PATTERN}"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/model.tar.gz", "http://localhost/m.tar.gz", "http://[::1]/m"]
)
def test_model_data_url_accepts_loopback_http(url: str) -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "img", "ModelDataUrl": url}}

    validate(_input_shape("CreateModel"), params, error=ValidationException)


def test_model_data_source_accepts_local() -> None:
    source = {
        "S3DataSource": {
            "S3Uri": "/srv/models/",
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
        }
    }
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "img", "ModelDataSource": source}}

    validate(_input_shape("CreateModel"), params, error=ValidationException)


def test_override_limited_to_hosting_members() -> None:
    shape = control_plane_model().shape_for("ModelPackageContainerDefinition")

    with pytest.raises(ValidationException) as caught:
        validate(
            shape, {"Image": "img", "ModelDataUrl": "/srv/m.tar.gz"}, error=ValidationException
        )

    assert caught.value.message == (
        "1 validation error detected: Value '/srv/m.tar.gz' at 'modelDataUrl' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^(https|s3)://([^/]+)/?(.*)"
    )


TIMESTAMPS = [
    (1704067200, datetime(2024, 1, 1, tzinfo=UTC)),
    (1704067200.5, datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("2024-01-01T00:00:00Z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))),
    ("2024-01-01T00:00:00", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01T00:00:00.123Z", datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)),
]


@pytest.mark.parametrize(("raw", "expected"), TIMESTAMPS)
def test_timestamp_forms_parsed(raw: object, expected: datetime) -> None:
    shape = _input_shape("ListEndpoints")
    params = {"CreationTimeAfter": raw, "NameContains": "ep"}
    validate(shape, params, error=ValidationException)

    parsed = parse_timestamps(shape, params)

    assert parsed == {"CreationTimeAfter": expected, "NameContains": "ep"}
    assert parsed["CreationTimeAfter"].tzinfo is not None


def test_parse_timestamps_leaves_input_unchanged() -> None:
    shape = _input_shape("ListEndpoints")
    params = {"CreationTimeBefore": 0, "Extra": 1}

    parsed = parse_timestamps(shape, params)

    assert parsed == {"CreationTimeBefore": datetime(1970, 1, 1, tzinfo=UTC), "Extra": 1}
    assert params == {"CreationTimeBefore": 0, "Extra": 1}


def _runtime_input_shape(operation: str) -> Any:
    return runtime_model().operation_model(operation).input_shape


def _validate_accepts(shape: Any, params: dict[str, Any]) -> bool:
    try:
        validate(shape, params, error=ValidationError, ignore_members=("Body",))
    except (ValidationError, SerializationException):
        return False
    return True


FLAT_CHECK_CASES = [
    pytest.param({"EndpointName": "iris"}, True, id="name-only"),
    pytest.param(
        {
            "EndpointName": "iris",
            "ContentType": "application/json",
            "Accept": "text/csv",
            "CustomAttributes": "trace=1",
            "TargetVariant": "blue",
            "InferenceId": "req 42",
            "SessionId": "NEW_SESSION",
        },
        True,
        id="every-usual-header",
    ),
    pytest.param({"EndpointName": "iris", "Unmodelled": 12}, True, id="unknown-member-ignored"),
    pytest.param({"EndpointName": "iris", "Body": b"\x00"}, True, id="payload-ignored"),
    pytest.param({"EndpointName": "iris", "TargetVariant": None}, True, id="null-is-absent"),
    pytest.param({}, False, id="missing-endpoint-name"),
    pytest.param({"EndpointName": None}, False, id="null-endpoint-name"),
    pytest.param({"EndpointName": "my_ep"}, False, id="name-pattern"),
    pytest.param({"EndpointName": "a" * 64}, False, id="name-too-long"),
    pytest.param({"EndpointName": "iris", "InferenceId": ""}, False, id="below-minimum"),
    pytest.param({"EndpointName": "iris", "ContentType": "caf\u00e9"}, False, id="not-ascii"),
    pytest.param({"EndpointName": "iris", "TargetVariant": 7}, False, id="not-a-string"),
]


@pytest.mark.parametrize(("params", "valid"), FLAT_CHECK_CASES)
def test_flat_check_agrees_with_validate(params: dict[str, Any], valid: bool) -> None:
    shape = _runtime_input_shape("InvokeEndpoint")
    check = FlatStructureCheck(shape, ignore_members=("Body",))

    assert _validate_accepts(shape, params) is valid
    assert check.passes(params) is valid


def test_flat_check_defers_other_types_to_validate() -> None:
    shape = _runtime_input_shape("InvokeEndpointAsync")
    check = FlatStructureCheck(shape)
    params = {"EndpointName": "iris", "InputLocation": "s3://b/k", "RequestTTLSeconds": 600}

    assert _validate_accepts(shape, params)
    assert not check.passes(params)
    assert check.passes({"EndpointName": "iris", "InputLocation": "s3://b/k"})


def test_flat_check_applies_overrides() -> None:
    shape = _runtime_input_shape("InvokeEndpointAsync")
    check = FlatStructureCheck(shape)
    params = {"EndpointName": "iris", "InputLocation": "file:///tmp/input.json"}

    assert _validate_accepts(shape, params)
    assert check.passes(params)
