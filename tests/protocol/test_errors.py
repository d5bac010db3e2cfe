"""Error rendering for both planes, checked by what boto3 raises for the bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sageport.errors import (
    ControlPlaneInternalError,
    InternalFailure,
    ModelError,
    ModelNotReadyException,
    PayloadTooLarge,
    ResourceInUse,
    ResourceLimitExceeded,
    SageportError,
    SerializationException,
    ServiceUnavailable,
    UnknownOperationException,
    ValidationError,
    ValidationException,
)
from sageport.protocol.errors import (
    INTERNAL_ERROR_MESSAGE,
    as_sageport_error,
    render_control_plane_error,
    render_runtime_error,
)
from tests.protocol.botocore_stub import response_metadata, stubbed_client

REQUEST_ID = "6f1c0c1e-98b4-4d0c-8c1e-1f2f0e3d4c5b"


def test_control_plane_error_bytes() -> None:
    err = ValidationException(
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x".'
    )

    status, headers, body = render_control_plane_error(err, REQUEST_ID)

    assert status == 400
    assert headers == [
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"x-amzn-requestid", REQUEST_ID.encode()),
        (b"x-amzn-errortype", b"ValidationException"),
        (b"content-length", str(len(body)).encode()),
    ]
    assert json.loads(body) == {
        "__type": "ValidationException",
        "Message": 'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/x".',
    }


# (error, modeled by the control-plane model, so boto3 raises its own class)
CONTROL_PLANE_ERRORS = [
    (ValidationException("Could not find endpoint."), False),
    (SerializationException("The request body is not valid JSON."), False),
    (UnknownOperationException("Operation 'Nope' is not a SageMaker operation."), False),
    (ControlPlaneInternalError(INTERNAL_ERROR_MESSAGE), False),
    (ResourceLimitExceeded("Too many endpoints."), True),
    (ResourceInUse("Endpoint config in use."), True),
]


@pytest.mark.parametrize(("err", "modeled"), CONTROL_PLANE_ERRORS, ids=lambda p: type(p).__name__)
def test_boto3_reads_control_plane_error(err: SageportError, modeled: bool) -> None:
    status, headers, body = render_control_plane_error(err, REQUEST_ID)
    stub = stubbed_client("sagemaker", status, headers, body)

    with pytest.raises(ClientError) as caught:
        stub.client.describe_endpoint(EndpointName="x")

    expected: dict[str, Any] = {
        "Error": {"Code": err.code, "Message": err.message},
        "ResponseMetadata": response_metadata(REQUEST_ID, err.status, headers),
    }
    if modeled:
        expected["Message"] = err.message
        assert type(caught.value) is getattr(stub.client.exceptions, err.code)
    else:
        assert type(caught.value) is ClientError
    assert caught.value.response == expected


def test_runtime_model_error_bytes() -> None:
    err = ModelError(
        'Received client error (400) from primary with message "bad input".',
        OriginalStatusCode=400,
        OriginalMessage="bad input",
        LogStreamArn="arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep",
        ErrorCode="CLIENT_ERROR_FROM_MODEL",
    )

    status, headers, body = render_runtime_error(err, REQUEST_ID)

    assert status == 424
    assert headers == [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", REQUEST_ID.encode()),
        (
            b"x-amzn-errortype",
            b"ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker.runtime/",
        ),
        (b"content-length", str(len(body)).encode()),
    ]
    assert json.loads(body) == {
        "Message": 'Received client error (400) from primary with message "bad input".',
        "OriginalStatusCode": 400,
        "OriginalMessage": "bad input",
        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep",
        "ErrorCode": "CLIENT_ERROR_FROM_MODEL",
    }


def test_boto3_raises_model_error_with_members() -> None:
    err = ModelError(
        'Received server error (500) from primary with message "oops".',
        OriginalStatusCode=500,
        OriginalMessage="oops",
        LogStreamArn="arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep",
        ErrorCode="SERVER_ERROR_FROM_MODEL",
    )
    status, headers, body = render_runtime_error(err, REQUEST_ID)
    stub = stubbed_client("sagemaker-runtime", status, headers, body)

    with pytest.raises(stub.client.exceptions.ModelError) as caught:
        stub.client.invoke_endpoint(EndpointName="ep", Body=b"{}")

    assert caught.value.response == {
        "Error": {"Code": "ModelError", "Message": err.message},
        "ResponseMetadata": response_metadata(REQUEST_ID, 424, headers),
        "Message": err.message,
        "OriginalStatusCode": 500,
        "OriginalMessage": "oops",
        "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep",
    }
    # The retry note appears because the stub client allows a single attempt.
    assert str(caught.value) == (
        "An error occurred (ModelError) when calling the InvokeEndpoint operation "
        "(reached max retries: 0): " + err.message
    )


RUNTIME_ERRORS = [
    (ValidationError("Endpoint ep of account 123456789012 not found."), "ValidationError"),
    (PayloadTooLarge("Request body is larger than 6291456 bytes."), "ValidationError"),
    (ModelNotReadyException("Model is not ready."), "ModelNotReadyException"),
    (InternalFailure(INTERNAL_ERROR_MESSAGE), "InternalFailure"),
    (ServiceUnavailable("Endpoint is updating."), "ServiceUnavailable"),
]


@pytest.mark.parametrize(("err", "exception_name"), RUNTIME_ERRORS, ids=lambda p: type(p).__name__)
def test_boto3_reads_runtime_error(err: SageportError, exception_name: str) -> None:
    status, headers, body = render_runtime_error(err, REQUEST_ID)
    stub = stubbed_client("sagemaker-runtime", status, headers, body)

    with pytest.raises(ClientError) as caught:
        stub.client.invoke_endpoint(EndpointName="ep", Body=b"{}")

    assert type(caught.value) is getattr(stub.client.exceptions, exception_name)
    assert caught.value.response == {
        "Error": {"Code": err.code, "Message": err.message},
        "ResponseMetadata": response_metadata(REQUEST_ID, err.status, headers),
        "Message": err.message,
    }


def test_fields_cannot_replace_code_or_message() -> None:
    err = ValidationException("real message", Message="shadow", __type="Other")

    _, _, body = render_control_plane_error(err, REQUEST_ID)

    assert json.loads(body) == {"__type": "ValidationException", "Message": "real message"}


def test_field_values_not_json_still_render() -> None:
    err = InternalFailure("failed", When=object)

    status, _, body = render_runtime_error(err, REQUEST_ID)

    assert status == 500
    assert json.loads(body) == {"When": "<class 'object'>", "Message": "failed"}


def test_sageport_error_passes_through() -> None:
    err = ValidationError("bad header")

    assert as_sageport_error(err, "runtime") is err


@pytest.mark.parametrize(
    ("plane", "error_class"),
    [("control", ControlPlaneInternalError), ("runtime", InternalFailure)],
)
def test_unexpected_exception_becomes_internal_failure(
    plane: Any, error_class: type[SageportError]
) -> None:
    converted = as_sageport_error(KeyError("secret internal detail"), plane)

    assert type(converted) is error_class
    assert converted.code == "InternalFailure"
    assert converted.status == 500
    assert converted.message == INTERNAL_ERROR_MESSAGE
    assert converted.fields == {}
