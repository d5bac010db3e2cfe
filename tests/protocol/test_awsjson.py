"""The control plane's AWS JSON 1.1 request parsing and response rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sageport.errors import SerializationException, UnknownOperationException, ValidationException
from sageport.protocol.awsjson import parse_control_request, render_control_response
from sageport.protocol.models import control_plane_model
from tests.protocol.botocore_stub import response_metadata, sent_headers, stubbed_client

REQUEST_ID = "0b7a3f52-2f0e-4f0a-9d64-3c0d3a1f6e11"


def test_parse_request_boto3_sent() -> None:
    stub = stubbed_client("sagemaker", 200, [], b"{}")
    stub.client.list_endpoints(
        CreationTimeAfter=datetime(2024, 1, 1, tzinfo=UTC), MaxResults=5, StatusEquals="InService"
    )
    request = stub.requests[0]

    operation, params = parse_control_request(sent_headers(request)["X-Amz-Target"], request.body)

    assert operation.name == "ListEndpoints"
    assert params == {
        "CreationTimeAfter": datetime(2024, 1, 1, tzinfo=UTC),
        "MaxResults": 5,
        "StatusEquals": "InService",
    }


def test_parse_request_iso_timestamp() -> None:
    body = b'{"CreationTimeBefore": "2024-01-01T00:00:00.500Z"}'

    _, params = parse_control_request("SageMaker.ListModels", body)

    assert params == {"CreationTimeBefore": datetime(2024, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)}


@pytest.mark.parametrize("body", [b"", b"  \n", b"{}"])
def test_empty_body_is_empty_object(body: bytes) -> None:
    operation, params = parse_control_request("SageMaker.ListEndpoints", body)

    assert operation.name == "ListEndpoints"
    assert params == {}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (
            None,
            "Missing or invalid X-Amz-Target header None: expected 'SageMaker.<Operation>', "
            "for example 'SageMaker.DescribeEndpoint'.",
        ),
        (
            "DescribeEndpoint",
            "Missing or invalid X-Amz-Target header 'DescribeEndpoint': expected "
            "'SageMaker.<Operation>', for example 'SageMaker.DescribeEndpoint'.",
        ),
        (
            "Sagemaker.DescribeEndpoint",
            "Missing or invalid X-Amz-Target header 'Sagemaker.DescribeEndpoint': expected "
            "'SageMaker.<Operation>', for example 'SageMaker.DescribeEndpoint'.",
        ),
        (
            "SageMaker.DescribeEverything",
            "Operation 'DescribeEverything' is not a SageMaker operation.",
        ),
        ("SageMaker.", "Operation '' is not a SageMaker operation."),
    ],
)
def test_unknown_operation(target: str | None, expected: str) -> None:
    with pytest.raises(UnknownOperationException) as caught:
        parse_control_request(target, b"{}")

    assert caught.value.message == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"{",
            "The request body is not valid JSON: Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1)",
        ),
        (b"[]", "The request body must be a JSON object."),
        (b'"EndpointName"', "The request body must be a JSON object."),
        (b"null", "The request body must be a JSON object."),
        (
            b'{"MaxResults": NaN}',
            "The request body is not valid JSON: NaN is not a valid JSON number",
        ),
    ],
)
def test_malformed_body(body: bytes, expected: str) -> None:
    with pytest.raises(SerializationException) as caught:
        parse_control_request("SageMaker.ListEndpoints", body)

    assert caught.value.message == expected


def test_undecodable_body() -> None:
    # Deep nesting has a message of its own (tests/security/test_control_input.py).
    with pytest.raises(SerializationException) as caught:
        parse_control_request("SageMaker.ListEndpoints", b'{"NameContains": "\xff"}')

    assert caught.value.message.startswith("The request body is not valid JSON: ")


def test_wrong_member_type() -> None:
    with pytest.raises(SerializationException) as caught:
        parse_control_request("SageMaker.ListEndpoints", b'{"MaxResults": "10"}')

    assert (
        caught.value.message
        == "Invalid value at 'maxResults': expected an integer, got a JSON string '10'."
    )


def test_invalid_request_is_validation_exception() -> None:
    body = json.dumps({"EndpointName": "my_endpoint"}).encode()

    with pytest.raises(ValidationException) as caught:
        parse_control_request("SageMaker.CreateEndpoint", body)

    assert caught.value.message == (
        "2 validation errors detected: Value 'my_endpoint' at 'endpointName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}; "
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null"
    )


def test_boto3_parses_list_response() -> None:
    operation = control_plane_model().operation_model("ListEndpoints")
    result = {
        "Endpoints": [
            {
                "EndpointName": "my-ep",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-ep",
                "CreationTime": datetime(2024, 1, 1, tzinfo=UTC),
                "LastModifiedTime": datetime(2024, 1, 1, 0, 5, tzinfo=UTC),
                "EndpointStatus": "Creating",
                "instances": [],
            }
        ],
        "NextToken": None,
    }
    status, headers, body = render_control_response(operation, result, REQUEST_ID)
    stub = stubbed_client("sagemaker", status, headers, body)

    response = stub.client.list_endpoints()

    assert status == 200
    assert headers == [
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"x-amzn-requestid", REQUEST_ID.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    assert response == {
        "Endpoints": [
            {
                "EndpointName": "my-ep",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-ep",
                "CreationTime": datetime(2024, 1, 1, tzinfo=UTC),
                "LastModifiedTime": datetime(2024, 1, 1, 0, 5, tzinfo=UTC),
                "EndpointStatus": "Creating",
            }
        ],
        "ResponseMetadata": response_metadata(REQUEST_ID, 200, headers),
    }


def test_output_less_operation_renders_empty_object() -> None:
    operation = control_plane_model().operation_model("DeleteEndpoint")
    status, headers, body = render_control_response(operation, {"internal": 1}, REQUEST_ID)
    stub = stubbed_client("sagemaker", status, headers, body)

    response = stub.client.delete_endpoint(EndpointName="my-ep")

    assert body == b"{}"
    assert response == {"ResponseMetadata": response_metadata(REQUEST_ID, 200, headers)}
