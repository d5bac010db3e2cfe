"""The control plane through boto3 and the AWS CLI: resources, errors, listing, waiters."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.harness import Server, deploy, trickling_http_server, wait_for_status, write_model

ROLE = "arn:aws:iam::123456789012:role/sageport"
NOOP_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return data, content_type
"""


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("echo"), NOOP_MODEL)


def client_error(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def create_model(sagemaker: Any, name: str, model_data: str = "file:///nonexistent.tar.gz") -> Any:
    return sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sageport/echo", "ModelDataUrl": model_data},
        ExecutionRoleArn=ROLE,
    )


def test_model_create_describe_delete(server: Server) -> None:
    sagemaker = server.client("sagemaker")

    created = create_model(sagemaker, "Model-One")
    described = sagemaker.describe_model(ModelName="model-one")
    sagemaker.delete_model(ModelName="Model-One")

    assert created["ModelArn"] == "arn:aws:sagemaker:us-east-1:123456789012:model/model-one"
    assert described["ModelName"] == "Model-One"
    assert described["PrimaryContainer"] == {
        "Image": "sageport/echo",
        "ModelDataUrl": "file:///nonexistent.tar.gz",
    }
    assert described["ExecutionRoleArn"] == ROLE
    assert described["CreationTime"].year >= 2024
    with pytest.raises(ClientError) as excinfo:
        sagemaker.describe_model(ModelName="Model-One")
    assert client_error(excinfo) == (
        "ValidationException",
        'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/model-one".',
        400,
    )


def test_duplicate_model_is_refused(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    create_model(sagemaker, "dup-model")

    with pytest.raises(ClientError) as excinfo:
        create_model(sagemaker, "DUP-model")

    assert client_error(excinfo) == (
        "ValidationException",
        "Cannot create already existing model "
        '"arn:aws:sagemaker:us-east-1:123456789012:model/dup-model".',
        400,
    )


def test_invalid_model_name_lists_constraints(server: Server) -> None:
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        create_model(sagemaker, "bad_name." + "x" * 70)

    code, message, status = client_error(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("2 validation errors detected: ")
    assert (
        "at 'modelName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63" in message
    )
    assert "Member must satisfy regular expression pattern" in message


def test_endpoint_config_needs_existing_model(server: Server) -> None:
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName="orphan-config",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "ghost",
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )

    assert client_error(excinfo) == (
        "ValidationException",
        'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/ghost".',
        400,
    )


def test_endpoint_config_defaults_and_enum(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    create_model(sagemaker, "config-model")

    sagemaker.create_endpoint_config(
        EndpointConfigName="config-defaults",
        ProductionVariants=[
            {"VariantName": "A", "ModelName": "config-model", "InstanceType": "ml.m5.large"}
        ],
    )
    described = sagemaker.describe_endpoint_config(EndpointConfigName="config-defaults")
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName="config-bad-type",
            ProductionVariants=[
                {"VariantName": "A", "ModelName": "config-model", "InstanceType": "ml.nonsense"}
            ],
        )

    assert described["ProductionVariants"] == [
        {
            "VariantName": "A",
            "ModelName": "config-model",
            "InstanceType": "ml.m5.large",
            "InitialVariantWeight": 1.0,
            "InitialInstanceCount": 1,
        }
    ]
    code, message, _ = client_error(excinfo)
    assert code == "ValidationException"
    assert "Value 'ml.nonsense' at 'productionVariants.1.member.instanceType'" in message
    assert "Member must satisfy enum value set: [" in message


def test_unknown_operation_is_named(server: Server) -> None:
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_training_jobs()

    code, message, status = client_error(excinfo)
    assert (code, status) == ("UnknownOperationException", 400)
    assert message.startswith("Sageport does not implement SageMaker.ListTrainingJobs.")


def test_create_endpoint_needs_config(server: Server) -> None:
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName="no-config", EndpointConfigName="missing-config")

    assert client_error(excinfo) == (
        "ValidationException",
        "Could not find endpoint configuration "
        '"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/missing-config".',
        400,
    )


def test_waiters_follow_endpoint_lifecycle(server: Server, echo_model: Path) -> None:
    sagemaker = server.client("sagemaker")
    deploy(server, "waited", str(echo_model), wait=False)

    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName="waited", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    described = sagemaker.describe_endpoint(EndpointName="waited")
    sagemaker.delete_endpoint(EndpointName="waited")
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName="waited", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )

    assert described["EndpointStatus"] == "InService"
    assert described["EndpointArn"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/waited"
    assert described["EndpointConfigName"] == "waited"
    assert described["ProductionVariants"][0]["VariantName"] == "AllTraffic"
    assert described["ProductionVariants"][0]["CurrentWeight"] == 1.0
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert described["LastModifiedTime"] >= described["CreationTime"]
    assert "FailureReason" not in described


def test_waiter_stops_on_failed_endpoint(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    create_model(sagemaker, "missing-data")
    sagemaker.create_endpoint_config(
        EndpointConfigName="missing-data",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "missing-data",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="missing-data", EndpointConfigName="missing-data")

    with pytest.raises(WaiterError):
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName="missing-data", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    described = sagemaker.describe_endpoint(EndpointName="missing-data")

    assert described["EndpointStatus"] == "Failed"
    assert "/nonexistent.tar.gz" in described["FailureReason"]


def test_failing_model_fn_fails_endpoint(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
def model_fn(model_dir):
    raise RuntimeError("weights are corrupt")
""",
    )

    described = deploy(server, "bad-model-fn", str(archive))

    assert described["EndpointStatus"] == "Failed"
    assert "RuntimeError: weights are corrupt" in described["FailureReason"]


def test_escaping_archive_fails_endpoint(server: Server, tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("owned")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped.txt")

    described = deploy(server, "escape", f"file://{archive}")

    assert described["EndpointStatus"] == "Failed"
    assert "../../escaped.txt" in described["FailureReason"]
    assert not (server.data_dir / "endpoints" / "escaped.txt").exists()
    assert not list(server.data_dir.parent.rglob("escaped.txt"))


def test_delete_in_progress_endpoint_is_refused(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
import time

def model_fn(model_dir):
    time.sleep(3)
    return None

def transform_fn(model, data, content_type, accept):
    return data, content_type
""",
    )
    deploy(server, "slow-start", str(archive), wait=False)
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.delete_endpoint(EndpointName="slow-start")

    assert client_error(excinfo) == (
        "ValidationException",
        "Cannot update in-progress endpoint "
        '"arn:aws:sagemaker:us-east-1:123456789012:endpoint/slow-start". It is Creating, and '
        "becomes InService or Failed once its model data is fetched (within 3600 seconds, "
        "ModelDataDownloadTimeoutInSeconds) and its instances pass /ping (within 600 seconds, "
        "ContainerStartupHealthCheckTimeoutInSeconds), plus the time to install a "
        "code/requirements.txt. Delete it then.",
        400,
    )
    assert wait_for_status(server, "slow-start", {"InService"})["EndpointStatus"] == "InService"


def test_list_endpoints_filters_sorts_and_pages(server: Server, echo_model: Path) -> None:
    sagemaker = server.client("sagemaker")
    names = [f"page-{index:02d}" for index in range(12)]
    for name in names:
        deploy(server, name, str(echo_model), wait=False)
    for name in names:
        wait_for_status(server, name, {"InService"})

    paginator = sagemaker.get_paginator("list_endpoints")
    pages = list(
        paginator.paginate(
            NameContains="PAGE-",
            SortBy="Name",
            SortOrder="Ascending",
            PaginationConfig={"PageSize": 5},
        )
    )
    first = sagemaker.list_endpoints(NameContains="page-", MaxResults=3, SortBy="Name")
    in_service = sagemaker.list_endpoints(StatusEquals="Failed", NameContains="page-")

    assert [len(page["Endpoints"]) for page in pages] == [5, 5, 2]
    assert [e["EndpointName"] for page in pages for e in page["Endpoints"]] == names
    assert [e["EndpointName"] for e in first["Endpoints"]] == ["page-11", "page-10", "page-09"]
    assert "NextToken" in first
    assert set(first["Endpoints"][0]) == {
        "EndpointName",
        "EndpointArn",
        "CreationTime",
        "LastModifiedTime",
        "EndpointStatus",
    }
    assert in_service["Endpoints"] == []


def test_list_models_by_creation_time(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    create_model(sagemaker, "timed-a")
    middle = sagemaker.describe_model(ModelName="timed-a")["CreationTime"]
    create_model(sagemaker, "timed-b")

    after = sagemaker.list_models(NameContains="timed-", CreationTimeAfter=middle)
    before = sagemaker.list_models(NameContains="timed-", CreationTimeBefore=middle)

    assert [m["ModelName"] for m in after["Models"]] == ["timed-b"]
    assert before["Models"] == []


def test_reused_token_with_other_filters_is_refused(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    for index in range(3):
        create_model(sagemaker, f"token-{index}")
    token = sagemaker.list_models(NameContains="token-", MaxResults=1)["NextToken"]

    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_models(NameContains="other", MaxResults=1, NextToken=token)

    assert client_error(excinfo)[0] == "ValidationException"


def test_aws_cli_deploys_and_lists(server: Server, echo_model: Path) -> None:
    server.aws(
        "sagemaker",
        "create-model",
        "--model-name",
        "cli-model",
        "--primary-container",
        f"Image=sageport/echo,ModelDataUrl=file://{echo_model}",
        "--execution-role-arn",
        ROLE,
        check=True,
    )
    server.aws(
        "sagemaker",
        "create-endpoint-config",
        "--endpoint-config-name",
        "cli-config",
        "--production-variants",
        "VariantName=AllTraffic,ModelName=cli-model,InitialInstanceCount=1,InstanceType=ml.m5.large",
        check=True,
    )
    created = server.aws(
        "sagemaker",
        "create-endpoint",
        "--endpoint-name",
        "cli-endpoint",
        "--endpoint-config-name",
        "cli-config",
        check=True,
    )
    # The CLI's waiter sleeps 30 s between polls, so let it find the endpoint ready.
    wait_for_status(server, "cli-endpoint", {"InService", "Failed"})
    waited = server.aws(
        "sagemaker", "wait", "endpoint-in-service", "--endpoint-name", "cli-endpoint"
    )
    listed = server.aws("sagemaker", "list-endpoints", "--name-contains", "cli-", check=True)

    assert json.loads(created.stdout) == {
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/cli-endpoint"
    }
    assert waited.returncode == 0, waited.stderr
    endpoints = json.loads(listed.stdout)["Endpoints"]
    assert [(e["EndpointName"], e["EndpointStatus"]) for e in endpoints] == [
        ("cli-endpoint", "InService")
    ]
    assert isinstance(endpoints[0]["CreationTime"], float)


def test_instance_count_over_limit_is_refused(server: Server) -> None:
    sagemaker = server.client("sagemaker")
    create_model(sagemaker, "too-many")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName="too-many",
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "too-many",
                                 "InitialInstanceCount": 1000, "InstanceType": "ml.m5.large"}],
        )  # fmt: skip

    code, message, status = client_error(excinfo)
    assert (code, status) == ("ResourceLimitExceeded", 400)
    assert "asks for 1000 instances" in message
    assert "--max-instances-per-variant" in message


@pytest.fixture
def trickle_url() -> Iterator[str]:
    """A loopback URL that sends one byte a second, for at most 120 s."""
    with trickling_http_server(interval=1.0, count=120) as url:
        yield url


def create_timed_endpoint(sagemaker: Any, name: str, url: str, download: int, startup: int) -> None:
    create_model(sagemaker, name, url)
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                             "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
                             "ModelDataDownloadTimeoutInSeconds": download,
                             "ContainerStartupHealthCheckTimeoutInSeconds": startup}],
    )  # fmt: skip
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


def test_creation_timeouts_fail_endpoint(server: Server, trickle_url: str, tmp_path: Path) -> None:
    # Both endpoints are created at once, so the test waits about one minute, not two.
    hanging = write_model(
        tmp_path, "import time\n\ndef model_fn(model_dir):\n    time.sleep(300)\n"
    )
    sagemaker = server.client("sagemaker")
    create_timed_endpoint(sagemaker, "trickle", trickle_url, download=60, startup=90)
    create_timed_endpoint(sagemaker, "no-ping", str(hanging), download=120, startup=60)

    with pytest.raises(ClientError) as refused:
        sagemaker.delete_endpoint(EndpointName="trickle")
    failed = wait_for_status(server, "trickle", {"InService", "Failed"}, timeout=150)
    no_ping = wait_for_status(server, "no-ping", {"InService", "Failed"}, timeout=150)
    sagemaker.delete_endpoint(EndpointName="trickle")
    sagemaker.delete_endpoint(EndpointName="no-ping")

    _, message, _ = client_error(refused)
    assert "within 60 seconds, ModelDataDownloadTimeoutInSeconds" in message
    assert "within 90 seconds, ContainerStartupHealthCheckTimeoutInSeconds" in message
    assert failed["EndpointStatus"] == "Failed"
    assert failed["FailureReason"] == (
        f"Fetching model data from {trickle_url} timed out after 60 seconds "
        "(ModelDataDownloadTimeoutInSeconds). Check that the source is reachable and fast "
        "enough, or raise ModelDataDownloadTimeoutInSeconds on the production variant "
        "(at most 3600)."
    )
    assert no_ping["EndpointStatus"] == "Failed"
    assert "did not pass the /ping health check within 60 seconds" in no_ping["FailureReason"]
