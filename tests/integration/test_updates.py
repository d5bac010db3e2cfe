"""Production variants, blue/green updates, rollbacks and in-place weight changes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.harness import Server, started, wait_for_status, write_model

ROLE = "arn:aws:iam::123456789012:role/sageport"


def versioned_model(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_model(
        directory,
        f"""
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return b"{version}", "text/plain"
""",
    )


def broken_model(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_model(
        directory,
        """
def model_fn(model_dir):
    raise OSError("the new weights are missing")
""",
    )


def create_model(server: Server, name: str, archive: Path) -> None:
    server.client("sagemaker").create_model(
        ModelName=name,
        PrimaryContainer={"Image": f"sageport/{name}", "ModelDataUrl": str(archive)},
        ExecutionRoleArn=ROLE,
    )


def create_config(server: Server, name: str, variants: list[tuple[str, str, float, int]]) -> None:
    server.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialVariantWeight": weight,
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
            }
            for variant, model, weight, count in variants
        ],
    )


def create_endpoint(server: Server, name: str, config: str) -> dict[str, Any]:
    server.client("sagemaker").create_endpoint(EndpointName=name, EndpointConfigName=config)
    return wait_for_status(server, name, {"InService", "Failed"})


def call(server: Server, name: str, **kwargs: Any) -> tuple[bytes, str]:
    response = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=name, Body=b"x", ContentType="text/plain", **kwargs
    )
    return response["Body"].read(), response["InvokedProductionVariant"]


class SteadyLoad:
    """Threads invoking an endpoint until stopped, counting bodies and error codes."""

    def __init__(self, server: Server, name: str, threads: int = 3) -> None:
        self.results: Counter[str] = Counter()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(server, name)) for _ in range(threads)
        ]

    def _run(self, server: Server, name: str) -> None:
        runtime = server.client("sagemaker-runtime")
        while not self._stop.is_set():
            try:
                body = runtime.invoke_endpoint(
                    EndpointName=name, Body=b"x", ContentType="text/plain"
                )["Body"].read()
                self.results[body.decode()] += 1
            except ClientError as exc:
                self.results[f"error:{exc.response['Error']['Code']}"] += 1
            except BotoCoreError as exc:
                # A broken connection or a read timeout counts too, rather
                # than ending the thread and leaving the test waiting.
                self.results[f"error:{type(exc).__name__}"] += 1

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


@pytest.fixture(scope="module")
def models(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("versions")
    for version in ("v1", "v2", "v3"):
        create_model(server, f"model-{version}", versioned_model(root / version, version))
    create_model(server, "model-broken", broken_model(root / "broken"))


def test_weights_split_traffic(server: Server, models: None) -> None:
    create_config(server, "split", [("a", "model-v1", 2.0, 1), ("b", "model-v2", 1.0, 1)])
    description = create_endpoint(server, "split", "split")

    variants = Counter(call(server, "split")[1] for _ in range(300))

    assert description["EndpointStatus"] == "InService"
    # Expected 200 and 100; the bounds are five standard deviations (8.2 requests).
    assert 159 <= variants["a"] <= 241
    assert variants["a"] + variants["b"] == 300
    assert [v["CurrentWeight"] for v in description["ProductionVariants"]] == [2.0, 1.0]


def test_target_variant_routes_exactly(server: Server, models: None) -> None:
    create_config(server, "target", [("a", "model-v1", 1.0, 1), ("zero", "model-v2", 0.0, 1)])
    create_endpoint(server, "target", "target")

    targeted = {call(server, "target", TargetVariant="zero") for _ in range(5)}
    untargeted = {call(server, "target") for _ in range(20)}
    with pytest.raises(ClientError) as excinfo:
        call(server, "target", TargetVariant="missing")

    assert targeted == {(b"v2", "zero")}
    assert untargeted == {(b"v1", "a")}
    assert excinfo.value.response["Error"]["Code"] == "ValidationError"
    assert "has no production variant missing" in excinfo.value.response["Error"]["Message"]


def test_update_under_load_drops_nothing(server: Server, models: None) -> None:
    create_config(server, "blue", [("AllTraffic", "model-v1", 1.0, 1)])
    create_config(server, "green", [("AllTraffic", "model-v2", 1.0, 2)])
    create_endpoint(server, "rolling", "blue")
    sagemaker = server.client("sagemaker")

    with SteadyLoad(server, "rolling") as load:
        sagemaker.update_endpoint(EndpointName="rolling", EndpointConfigName="green")
        during = sagemaker.describe_endpoint(EndpointName="rolling")
        after = wait_for_status(server, "rolling", {"InService"})
        served_before = load.results["v2"]
        deadline = time.monotonic() + 30
        while load.results["v2"] < served_before + 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        served_after = load.results["v2"] - served_before

    assert served_after >= 20
    assert during["EndpointStatus"] == "Updating"
    assert during["PendingDeploymentSummary"]["EndpointConfigName"] == "green"
    assert after["EndpointConfigName"] == "green"
    assert after["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert "PendingDeploymentSummary" not in after
    assert "FailureReason" not in after
    assert set(load.results) == {"v1", "v2"}
    assert call(server, "rolling")[0] == b"v2"


def test_failed_update_rolls_back(server: Server, models: None) -> None:
    create_config(server, "stable", [("AllTraffic", "model-v1", 1.0, 1)])
    create_config(server, "broken", [("AllTraffic", "model-broken", 1.0, 1)])
    create_endpoint(server, "rollback", "stable")
    sagemaker = server.client("sagemaker")

    with SteadyLoad(server, "rollback") as load:
        sagemaker.update_endpoint(EndpointName="rollback", EndpointConfigName="broken")
        after = wait_for_status(server, "rollback", {"InService", "Failed"})

    assert after["EndpointStatus"] == "InService"
    assert after["EndpointConfigName"] == "stable"
    assert "rolled back" in after["FailureReason"]
    assert "OSError: the new weights are missing" in after["FailureReason"]
    assert set(load.results) == {"v1"}


def test_weights_and_capacities_change_in_place(server: Server, models: None) -> None:
    create_config(server, "inplace", [("a", "model-v1", 1.0, 1), ("b", "model-v3", 1.0, 1)])
    create_endpoint(server, "inplace", "inplace")
    sagemaker = server.client("sagemaker")

    with SteadyLoad(server, "inplace") as load:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="inplace",
            DesiredWeightsAndCapacities=[
                {"VariantName": "a", "DesiredWeight": 0.0},
                {"VariantName": "b", "DesiredInstanceCount": 2},
            ],
        )
        after = wait_for_status(server, "inplace", {"InService"})
    only_b = {call(server, "inplace") for _ in range(20)}

    assert [
        (v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"])
        for v in after["ProductionVariants"]
    ] == [("a", 0.0, 1), ("b", 1.0, 2)]
    assert only_b == {(b"v3", "b")}
    assert not [key for key in load.results if key.startswith("error:")]


def test_unknown_variant_weight_is_refused(server: Server, models: None) -> None:
    create_config(server, "known", [("AllTraffic", "model-v1", 1.0, 1)])
    create_endpoint(server, "known", "known")
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="known",
            DesiredWeightsAndCapacities=[{"VariantName": "ghost", "DesiredWeight": 1.0}],
        )

    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "[ghost]" in excinfo.value.response["Error"]["Message"]


def test_update_of_failed_endpoint_is_refused(server: Server, models: None) -> None:
    create_config(server, "fails", [("AllTraffic", "model-broken", 1.0, 1)])
    failed = create_endpoint(server, "fails", "fails")
    sagemaker = server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint(EndpointName="fails", EndpointConfigName="stable")

    assert failed["EndpointStatus"] == "Failed"
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "because its status is Failed" in excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that allows two instances per variant."""
    directory = tmp_path_factory.mktemp("limited") / "data"
    yield from started(Server(directory, extra_args=["--max-instances-per-variant", "2"]))


def test_capacity_over_limit_is_rejected(
    limited_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    archive = versioned_model(tmp_path_factory.mktemp("limit-model"), "v1")
    create_model(limited_server, "limit-model", archive)
    create_config(limited_server, "capped", [("a", "limit-model", 1.0, 1)])
    create_endpoint(limited_server, "capped", "capped")
    sagemaker = limited_server.client("sagemaker")

    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="capped",
            DesiredWeightsAndCapacities=[
                {"VariantName": "a", "DesiredWeight": 0.5, "DesiredInstanceCount": 3}
            ],
        )
    after = sagemaker.describe_endpoint(EndpointName="capped")

    error = excinfo.value.response["Error"]
    assert error["Code"] == "ResourceLimitExceeded"
    assert "asks for 3 instances" in error["Message"]
    assert "at most 2 per variant" in error["Message"]
    assert after["EndpointStatus"] == "InService"
    assert [
        (v["CurrentWeight"], v["DesiredWeight"], v["DesiredInstanceCount"])
        for v in after["ProductionVariants"]
    ] == [(1.0, 1.0, 1)]
    assert len(limited_server.instance_pids()) == 1
