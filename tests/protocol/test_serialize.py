"""Response serialisation by output shape, checked by botocore's own JSON parser."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.parsers import create_parser

from sageport.protocol.models import control_plane_model
from sageport.protocol.serialize import epoch_seconds, serialize


def _output_shape(operation: str) -> Any:
    return control_plane_model().operation_model(operation).output_shape


class EndpointStatus(enum.Enum):
    IN_SERVICE = "InService"


CREATED = datetime(2018, 6, 24, 19, 59, 29, 986400, tzinfo=UTC)
UPDATED = datetime(2018, 6, 24, 20, 5, 0, tzinfo=UTC)

DESCRIBE_ENDPOINT_RESULT: dict[str, Any] = {
    "EndpointName": "my-ep",
    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-ep",
    "EndpointConfigName": "my-cfg",
    "EndpointStatus": EndpointStatus.IN_SERVICE,
    "FailureReason": None,
    "CreationTime": CREATED,
    "LastModifiedTime": UPDATED,
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "CurrentWeight": 1,
            "DesiredWeight": 1,
            "CurrentInstanceCount": 2,
            "DesiredInstanceCount": 2,
            "DeployedImages": [
                {"SpecifiedImage": "sageport/builtin", "ResolutionTime": CREATED, "_digest": "x"}
            ],
            "instance_pids": [101, 102],
        }
    ],
    "store_row_id": 17,
}

DESCRIBE_ENDPOINT_JSON = {
    "EndpointName": "my-ep",
    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-ep",
    "EndpointConfigName": "my-cfg",
    "EndpointStatus": "InService",
    "CreationTime": 1529870369.986,
    "LastModifiedTime": 1529870700.0,
    "ProductionVariants": [
        {
            "VariantName": "AllTraffic",
            "CurrentWeight": 1.0,
            "DesiredWeight": 1.0,
            "CurrentInstanceCount": 2,
            "DesiredInstanceCount": 2,
            "DeployedImages": [
                {"SpecifiedImage": "sageport/builtin", "ResolutionTime": 1529870369.986}
            ],
        }
    ],
}


def test_serialize_describe_endpoint() -> None:
    serialized = serialize(_output_shape("DescribeEndpoint"), DESCRIBE_ENDPOINT_RESULT)

    assert serialized == DESCRIBE_ENDPOINT_JSON
    assert isinstance(serialized["ProductionVariants"][0]["CurrentWeight"], float)


def test_botocore_parses_serialized_output() -> None:
    shape = _output_shape("DescribeEndpoint")
    body = json.dumps(serialize(shape, DESCRIBE_ENDPOINT_RESULT)).encode()

    parsed = create_parser("json").parse({"status_code": 200, "headers": {}, "body": body}, shape)

    parsed.pop("ResponseMetadata")
    assert parsed == {
        "EndpointName": "my-ep",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-ep",
        "EndpointConfigName": "my-cfg",
        "EndpointStatus": "InService",
        "CreationTime": datetime(2018, 6, 24, 19, 59, 29, 986000, tzinfo=UTC),
        "LastModifiedTime": UPDATED,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": 1.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": 2,
                "DesiredInstanceCount": 2,
                "DeployedImages": [
                    {
                        "SpecifiedImage": "sageport/builtin",
                        "ResolutionTime": datetime(2018, 6, 24, 19, 59, 29, 986000, tzinfo=UTC),
                    }
                ],
            }
        ],
    }


def test_serialize_maps_and_nested_structures() -> None:
    result = {
        "ModelName": "m",
        "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
        "CreationTime": CREATED,
        "PrimaryContainer": {
            "Image": "img",
            "ModelDataUrl": "/srv/model.tar.gz",
            "Environment": {"A": "1", "B": None},
            "local_dir": "/var/lib/sageport/m",
        },
        "EnableNetworkIsolation": 0,
    }

    serialized = serialize(_output_shape("DescribeModel"), result)

    assert serialized == {
        "ModelName": "m",
        "ModelArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
        "CreationTime": 1529870369.986,
        "PrimaryContainer": {
            "Image": "img",
            "ModelDataUrl": "/srv/model.tar.gz",
            "Environment": {"A": "1"},
        },
        "EnableNetworkIsolation": False,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2018, 6, 24, 19, 59, 29, 986400, tzinfo=UTC), 1529870369.986),
        (datetime(2018, 6, 24, 19, 59, 29, 986600, tzinfo=UTC), 1529870369.987),
        (datetime(2018, 6, 24, 19, 59, 29, 986400), 1529870369.986),
        (datetime(2018, 6, 24, 21, 59, 29, tzinfo=timezone(timedelta(hours=2))), 1529870369.0),
        (1529870369.98649, 1529870369.986),
        (1529870369, 1529870369.0),
        ("2018-06-24T19:59:29.986Z", 1529870369.986),
    ],
)
def test_epoch_seconds(value: datetime | float | str, expected: float) -> None:
    assert epoch_seconds(value) == expected


def test_epoch_seconds_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="cannot serialise 'soon' as a timestamp"):
        epoch_seconds("soon")


def test_output_less_operation_has_no_shape() -> None:
    assert _output_shape("DeleteEndpoint") is None
