"""The runtime's header and URI bindings, read from what boto3 sends."""

from __future__ import annotations

from typing import Any

import pytest

from sageport.errors import ValidationError
from sageport.protocol.restjson import render_invoke_headers, validate_invoke_headers
from tests.protocol.botocore_stub import response_metadata, sent_headers, stubbed_client

REQUEST_ID = "c2b0f3e4-1d0e-4a55-9a2b-6f5e4d3c2b1a"


def _invoke_sent(**params: Any) -> dict[str, str]:
    stub = stubbed_client("sagemaker-runtime", 200, [], b"")
    stub.client.invoke_endpoint(EndpointName="my-ep", Body=b"{}", **params)
    return sent_headers(stub.requests[0])


def test_invoke_headers_from_boto3() -> None:
    headers = _invoke_sent(
        ContentType="application/json",
        Accept="application/json",
        CustomAttributes="trace=1",
        TargetVariant="blue",
        TargetModel="model-a.tar.gz",
        TargetContainerHostname="primary",
        InferenceId="req 42",
        EnableExplanations="`true`",
        InferenceComponentName="ic-1",
        SessionId="NEW_SESSION",
    )

    params = validate_invoke_headers("InvokeEndpoint", "my-ep", headers)

    assert params == {
        "EndpointName": "my-ep",
        "ContentType": "application/json",
        "Accept": "application/json",
        "CustomAttributes": "trace=1",
        "TargetModel": "model-a.tar.gz",
        "TargetVariant": "blue",
        "TargetContainerHostname": "primary",
        "InferenceId": "req 42",
        "EnableExplanations": "`true`",
        "InferenceComponentName": "ic-1",
        "SessionId": "NEW_SESSION",
    }


def test_absent_headers_left_out() -> None:
    params = validate_invoke_headers("InvokeEndpoint", "my-ep", _invoke_sent())

    assert params == {"EndpointName": "my-ep"}


def test_stream_accept_uses_sagemaker_header() -> None:
    headers = {"Accept": "text/plain", "X-Amzn-SageMaker-Accept": "text/event-stream"}

    params = validate_invoke_headers("InvokeEndpointWithResponseStream", "my-ep", headers)

    assert params == {"EndpointName": "my-ep", "Accept": "text/event-stream"}


def test_header_names_case_insensitive() -> None:
    params = validate_invoke_headers(
        "InvokeEndpoint", "my-ep", {"x-amzn-sagemaker-target-variant": "v1"}
    )

    assert params == {"EndpointName": "my-ep", "TargetVariant": "v1"}


def test_non_ascii_custom_attributes_rejected() -> None:
    headers = _invoke_sent(CustomAttributes="caf\u00e9")

    with pytest.raises(ValidationError) as caught:
        validate_invoke_headers("InvokeEndpoint", "my-ep", headers)

    # CustomAttributes is a sensitive shape, so its value stays out of the message.
    assert caught.value.message == (
        "1 validation error detected: Value at 'customAttributes' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^\\p{ASCII}*"
    )


def test_non_ascii_content_type_rejected() -> None:
    headers = _invoke_sent(ContentType="text/plain; charset=\u00fc")

    with pytest.raises(ValidationError) as caught:
        validate_invoke_headers("InvokeEndpoint", "my-ep", headers)

    assert caught.value.message == (
        "1 validation error detected: Value 'text/plain; charset=\u00c3\u00bc' at 'contentType' "
        "failed to satisfy constraint: Member must satisfy regular expression pattern: ^\\p{ASCII}*"
    )


INVALID_HEADERS = [
    pytest.param(
        "my_ep",
        {},
        "1 validation error detected: Value 'my_ep' at 'endpointName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
        id="endpoint-name-pattern",
    ),
    pytest.param(
        "",
        {},
        "1 validation error detected: Value '' at 'endpointName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*",
        id="empty-endpoint-name",
    ),
    pytest.param(
        "my-ep",
        {"X-Amzn-SageMaker-Inference-Id": " leading-space"},
        "1 validation error detected: Value ' leading-space' at 'inferenceId' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: \\A\\S[\\p{Print}]*\\z",
        id="inference-id-print",
    ),
    pytest.param(
        "my-ep",
        {"X-Amzn-SageMaker-Target-Variant": "-blue", "X-Amzn-SageMaker-Inference-Id": ""},
        "3 validation errors detected: Value '-blue' at 'targetVariant' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*; "
        "Value '' at 'inferenceId' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1; "
        "Value '' at 'inferenceId' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: \\A\\S[\\p{Print}]*\\z",
        id="several",
    ),
]


@pytest.mark.parametrize(("name", "headers", "expected"), INVALID_HEADERS)
def test_invalid_invoke_headers(name: str, headers: dict[str, str], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_invoke_headers("InvokeEndpoint", name, headers)

    assert caught.value.message == expected


def test_async_headers_typed_and_required() -> None:
    headers = {
        "X-Amzn-SageMaker-InputLocation": "s3://bucket/input.json",
        "X-Amzn-SageMaker-RequestTTLSeconds": "600",
        "X-Amzn-SageMaker-InvocationTimeoutSeconds": " 30 ",
    }

    params = validate_invoke_headers("InvokeEndpointAsync", "my-ep", headers)

    assert params == {
        "EndpointName": "my-ep",
        "InputLocation": "s3://bucket/input.json",
        "RequestTTLSeconds": 600,
        "InvocationTimeoutSeconds": 30,
    }


def test_async_ttl_below_minimum() -> None:
    # InputLocation is optional in botocore 1.44's model, so only the range fails.
    with pytest.raises(ValidationError) as caught:
        validate_invoke_headers(
            "InvokeEndpointAsync", "my-ep", {"X-Amzn-SageMaker-RequestTTLSeconds": "30"}
        )

    assert caught.value.message == (
        "1 validation error detected: Value '30' at 'requestTTLSeconds' failed to satisfy "
        "constraint: Member must have value greater than or equal to 60"
    )


def test_non_integer_header() -> None:
    headers = {
        "X-Amzn-SageMaker-InputLocation": "s3://b/k",
        "X-Amzn-SageMaker-RequestTTLSeconds": "ten",
    }

    with pytest.raises(ValidationError) as caught:
        validate_invoke_headers("InvokeEndpointAsync", "my-ep", headers)

    assert caught.value.message == (
        "Invalid value 'ten' at 'requestTTLSeconds': "
        "header X-Amzn-SageMaker-RequestTTLSeconds must be an integer."
    )


def test_boto3_reads_invoke_response_headers() -> None:
    body = b'{"predictions": [1]}'
    result = {
        "Body": body,
        "ContentType": "application/json",
        "InvokedProductionVariant": "AllTraffic",
        "CustomAttributes": "trace=1",
        "NewSessionId": None,
    }
    headers = [
        *render_invoke_headers("InvokeEndpoint", result),
        (b"x-amzn-requestid", REQUEST_ID.encode()),
    ]
    stub = stubbed_client("sagemaker-runtime", 200, headers, body)

    response = stub.client.invoke_endpoint(EndpointName="my-ep", Body=b"{}")
    received = response.pop("Body").read()

    assert headers[:3] == [
        (b"content-type", b"application/json"),
        (b"x-amzn-invoked-production-variant", b"AllTraffic"),
        (b"x-amzn-sagemaker-custom-attributes", b"trace=1"),
    ]
    assert received == body
    assert response == {
        "ContentType": "application/json",
        "InvokedProductionVariant": "AllTraffic",
        "CustomAttributes": "trace=1",
        "ResponseMetadata": response_metadata(REQUEST_ID, 200, headers),
    }


def test_stream_response_content_type_header() -> None:
    headers = render_invoke_headers(
        "InvokeEndpointWithResponseStream",
        {"ContentType": "text/event-stream", "InvokedProductionVariant": "v"},
    )

    assert headers == [
        (b"x-amzn-sagemaker-content-type", b"text/event-stream"),
        (b"x-amzn-invoked-production-variant", b"v"),
    ]


def test_non_ascii_response_header_replaced() -> None:
    headers = render_invoke_headers("InvokeEndpoint", {"CustomAttributes": "caf\u00e9"})

    assert headers == [(b"x-amzn-sagemaker-custom-attributes", b"caf?")]


def test_custom_attributes_must_be_visible_ascii() -> None:
    # Characters the HTTP parser lets through but SageMaker's rule does not.
    with pytest.raises(ValidationError, match="visible US-ASCII"):
        validate_invoke_headers(
            "InvokeEndpoint", "ep", {"X-Amzn-SageMaker-Custom-Attributes": "a\x7fb"}
        )

    members = validate_invoke_headers(
        "InvokeEndpoint", "ep", {"X-Amzn-SageMaker-Custom-Attributes": "trace=1\tspan=2"}
    )
    assert members["CustomAttributes"] == "trace=1\tspan=2"
