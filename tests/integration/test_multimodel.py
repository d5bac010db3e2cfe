"""Multi-model endpoints: TargetModel loads archives on first use, under a budget."""

from __future__ import annotations

import json
import shutil
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.harness import (
    COUNTING_MODEL,
    DROPPED,
    Server,
    deploy,
    send_and_hang_up,
    wait_for_status,
    wait_until,
    write_model,
)

# model_fn appends the model's name to LOG, so a test can count loads.
INFERENCE = """
import json
import os
import time

LOG = {log!r}
SLEEP = {sleep!r}


def model_fn(model_dir):
    time.sleep(SLEEP)
    with open(os.path.join(model_dir, "name.txt")) as source:
        name = source.read()
    with open(LOG, "a") as log:
        log.write(name + "\\n")
    return name


def transform_fn(model, input_data, content_type, accept):
    return json.dumps({{"model": model, "input": json.loads(input_data)}}), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that keeps two models per instance and waits 1 s for a load."""
    instance = Server(
        tmp_path_factory.mktemp("server") / "data",
        extra_args=["--multi-model-max-models", "2", "--multi-model-load-wait", "1"],
    )
    instance.start()
    yield instance
    instance.stop()


def make_prefix(root: Path, names: list[str], sleep: float = 0.0) -> tuple[Path, Path]:
    """Write one archive per name under ``root/models``; return the prefix and the load log."""
    prefix = root / "models"
    prefix.mkdir(parents=True)
    log = root / "loads.log"
    log.touch()
    for name in names:
        source = root / "build" / name
        source.mkdir(parents=True)
        code = textwrap.dedent(INFERENCE.format(log=str(log), sleep=sleep))
        archive = write_model(source, code, {"name.txt": name.encode()})
        shutil.move(archive, prefix / f"{name}.tar.gz")
    return prefix, log


def deploy_multi_model(server: Server, name: str, prefix: Path, instance_count: int = 1) -> None:
    sagemaker = server.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={
            "Image": "sageport/python",
            "Mode": "MultiModel",
            "ModelDataUrl": f"file://{prefix}/",
        },
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": instance_count,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = wait_for_status(server, name, {"InService", "Failed"})
    assert description["EndpointStatus"] == "InService", description


# How long invoke() retries ModelNotReadyException, as botocore's retries would;
# the server's own wait for a load is 1 s, which a busy machine can exceed.
LOAD_RETRY_SECONDS = 30.0


def invoke(server: Server, endpoint: str, target: str | None, value: int) -> dict[str, Any]:
    """Invoke once the model has loaded, retrying while the server says it is loading."""
    deadline = time.monotonic() + LOAD_RETRY_SECONDS
    while True:
        try:
            return invoke_once(server, endpoint, target, value)
        except ClientError as exc:
            loading = exc.response["Error"]["Code"] == "ModelNotReadyException"
            if not loading or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def invoke_once(server: Server, endpoint: str, target: str | None, value: int) -> dict[str, Any]:
    runtime = server.client("sagemaker-runtime")
    arguments: dict[str, Any] = {
        "EndpointName": endpoint,
        "Body": json.dumps(value).encode(),
        "ContentType": "application/json",
    }
    if target is not None:
        arguments["TargetModel"] = target
    response = runtime.invoke_endpoint(**arguments)
    return dict(json.loads(response["Body"].read()))


def loads(log: Path) -> list[str]:
    return log.read_text().split()


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return dict(excinfo.value.response["Error"])


def test_two_models_load_once(server: Server, tmp_path: Path) -> None:
    prefix, log = make_prefix(tmp_path, ["alpha", "beta"])
    deploy_multi_model(server, "mme-two", prefix)

    first = invoke(server, "mme-two", "alpha.tar.gz", 1)
    second = invoke(server, "mme-two", "beta.tar.gz", 2)
    third = invoke(server, "mme-two", "alpha.tar.gz", 3)
    fourth = invoke(server, "mme-two", "beta.tar.gz", 4)

    assert first == {"model": "alpha", "input": 1}
    assert second == {"model": "beta", "input": 2}
    assert third == {"model": "alpha", "input": 3}
    assert fourth == {"model": "beta", "input": 4}
    assert loads(log) == ["alpha", "beta"]


def test_least_recent_model_unloaded(server: Server, tmp_path: Path) -> None:
    prefix, log = make_prefix(tmp_path, ["one", "two", "three"])
    deploy_multi_model(server, "mme-lru", prefix)

    invoke(server, "mme-lru", "one.tar.gz", 1)
    invoke(server, "mme-lru", "two.tar.gz", 2)
    invoke(server, "mme-lru", "three.tar.gz", 3)
    # "two" and "three" are loaded; "one" was evicted and loads again.
    again = invoke(server, "mme-lru", "one.tar.gz", 4)
    # Loading "one" evicted "two", the least recently used; "three" stays.
    invoke(server, "mme-lru", "three.tar.gz", 5)

    assert again == {"model": "one", "input": 4}
    assert loads(log) == ["one", "two", "three", "one"]


HELPER_USER = """
import json

import utils


def model_fn(model_dir):
    return None


def transform_fn(model, input_data, content_type, accept):
    return json.dumps({"helper": utils.name()}), "application/json"
"""


def test_models_import_own_helpers(server: Server, tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    prefix.mkdir()
    for name in ("red", "blue"):
        helper = f"def name():\n    return {name!r}\n".encode()
        archive = write_model(tmp_path / name, HELPER_USER, {"code/utils.py": helper})
        shutil.move(archive, prefix / f"{name}.tar.gz")
    deploy_multi_model(server, "mme-helpers", prefix)

    results = [
        invoke(server, "mme-helpers", f"{name}.tar.gz", 0) for name in ("red", "blue", "red")
    ]

    assert results == [{"helper": "red"}, {"helper": "blue"}, {"helper": "red"}]


def test_slow_load_not_ready_first(server: Server, tmp_path: Path) -> None:
    prefix, log = make_prefix(tmp_path, ["slow"], sleep=3.0)
    deploy_multi_model(server, "mme-slow", prefix)

    with pytest.raises(ClientError) as excinfo:
        invoke_once(server, "mme-slow", "slow.tar.gz", 1)
    error = error_of(excinfo)
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Code"] == "ModelNotReadyException"
    assert "slow.tar.gz" in error["Message"]
    assert "still loading" in error["Message"]

    deadline = time.monotonic() + 30
    result: dict[str, Any] | None = None
    while result is None and time.monotonic() < deadline:
        try:
            result = invoke_once(server, "mme-slow", "slow.tar.gz", 2)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ModelNotReadyException"
            time.sleep(0.2)
    assert result == {"model": "slow", "input": 2}
    assert loads(log) == ["slow"]


def test_missing_archive_validation_error(server: Server, tmp_path: Path) -> None:
    prefix, _ = make_prefix(tmp_path, ["present"])
    deploy_multi_model(server, "mme-missing", prefix)

    with pytest.raises(ClientError) as excinfo:
        invoke(server, "mme-missing", "absent.tar.gz", 1)
    error = error_of(excinfo)

    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "ValidationError"
    assert "Failed to download model data for TargetModel absent.tar.gz" in error["Message"]
    assert "no such file" in error["Message"]


def test_target_model_required_and_checked(server: Server, tmp_path: Path) -> None:
    prefix, _ = make_prefix(tmp_path, ["only"])
    deploy_multi_model(server, "mme-checks", prefix)

    with pytest.raises(ClientError) as missing:
        invoke(server, "mme-checks", None, 1)
    with pytest.raises(ClientError) as escaping:
        invoke(server, "mme-checks", "../models/only.tar.gz", 1)

    assert error_of(missing)["Code"] == "ValidationError"
    assert "name the model archive to invoke with TargetModel" in error_of(missing)["Message"]
    assert error_of(escaping)["Code"] == "ValidationError"
    assert "Invalid TargetModel '../models/only.tar.gz'" in error_of(escaping)["Message"]


def test_encoded_target_model_rejected(server: Server, tmp_path: Path) -> None:
    prefix, log = make_prefix(tmp_path, ["inside"])
    shutil.copy(prefix / "inside.tar.gz", tmp_path / "outside.tar.gz")
    deploy_multi_model(server, "mme-encoded", prefix)
    targets = [
        "%2e%2e/outside.tar.gz",
        "%2e%2e%2foutside.tar.gz",
        "%252e%252e/outside.tar.gz",
        f"%2E%2E/%2E%2E/{tmp_path.name}/outside.tar.gz",
        "inside.tar.gz%00",
    ]

    errors = {}
    for target in targets:
        with pytest.raises(ClientError) as excinfo:
            invoke(server, "mme-encoded", target, 1)
        errors[target] = error_of(excinfo)

    for target, error in errors.items():
        assert error["Code"] == "ValidationError", target
        assert f"Invalid TargetModel {target!r}" in error["Message"]
    assert loads(log) == []


def test_target_model_names_file_literally(server: Server, tmp_path: Path) -> None:
    prefix, log = make_prefix(tmp_path, ["pct%41", "pctA"])
    deploy_multi_model(server, "mme-literal", prefix)

    literal = invoke(server, "mme-literal", "pct%41.tar.gz", 1)
    with pytest.raises(ClientError) as excinfo:
        invoke(server, "mme-literal", "pctA.tar.gz?x=1", 2)

    assert literal == {"model": "pct%41", "input": 1}
    assert error_of(excinfo)["Code"] == "ValidationError"
    assert loads(log) == ["pct%41"]


def test_target_model_on_single_model(server: Server, tmp_path: Path) -> None:
    prefix, _ = make_prefix(tmp_path, ["single"])
    description = deploy(server, "single-model", str(prefix / "single.tar.gz"))
    assert description["EndpointStatus"] == "InService", description

    plain = invoke(server, "single-model", None, 7)
    with pytest.raises(ClientError) as excinfo:
        invoke(server, "single-model", "single.tar.gz", 7)
    error = error_of(excinfo)

    assert plain == {"model": "single", "input": 7}
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Code"] == "ValidationError"
    assert error["Message"] == (
        "Endpoint single-model is not a multi-model endpoint and does not support "
        "TargetModel. Leave TargetModel out, or deploy a model with Mode MultiModel."
    )


def test_failing_model_fn_model_error(server: Server, tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    prefix.mkdir()
    failing = "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    shutil.move(write_model(tmp_path, failing), prefix / "broken.tar.gz")
    deploy_multi_model(server, "mme-broken", prefix)

    with pytest.raises(ClientError) as excinfo:
        invoke(server, "mme-broken", "broken.tar.gz", 1)
    response = excinfo.value.response

    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 500
    assert "RuntimeError: weights are corrupt" in response["OriginalMessage"]


def test_streaming_multi_model_rejected(server: Server, tmp_path: Path) -> None:
    prefix, _ = make_prefix(tmp_path, ["streamed"])
    deploy_multi_model(server, "mme-stream", prefix)
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_with_response_stream(
            EndpointName="mme-stream", Body=b"1", ContentType="application/json"
        )
    error = error_of(excinfo)

    assert error["Code"] == "ValidationError"
    assert "InvokeEndpointWithResponseStream cannot name a TargetModel" in error["Message"]


def link_dirs(server: Server, endpoint: str) -> list[Path]:
    """Return the per-instance link directories of an endpoint's multi-model variant."""
    pattern = f"{endpoint}/*/AllTraffic.models/instances/*"
    return sorted((server.data_dir / "endpoints").glob(pattern))


def test_resize_removes_link_dirs(server: Server, tmp_path: Path) -> None:
    prefix, _ = make_prefix(tmp_path, ["fast"])
    slow_prefix, _ = make_prefix(tmp_path / "slow", ["slow"], sleep=2.0)
    shutil.move(slow_prefix / "slow.tar.gz", prefix / "slow.tar.gz")
    deploy_multi_model(server, "mme-resize", prefix, instance_count=2)

    # While one instance loads the slow model, the fast one goes to the other
    # instance, so both instances get a link directory.
    slow_outcome: list[str] = []

    def invoke_slow() -> None:
        try:
            invoke(server, "mme-resize", "slow.tar.gz", 1)
            slow_outcome.append("ok")
        except ClientError as exc:
            slow_outcome.append(str(exc.response["Error"]["Code"]))

    thread = threading.Thread(target=invoke_slow)
    thread.start()
    loading = wait_until(lambda: len(link_dirs(server, "mme-resize")) == 1)
    fast = invoke(server, "mme-resize", "fast.tar.gz", 2)
    thread.join(timeout=30)
    before = link_dirs(server, "mme-resize")

    sagemaker = server.client("sagemaker")
    sagemaker.update_endpoint_weights_and_capacities(
        EndpointName="mme-resize",
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
    )
    resized = wait_for_status(server, "mme-resize", {"InService", "Failed"})
    after = link_dirs(server, "mme-resize")
    again = invoke(server, "mme-resize", "fast.tar.gz", 3)

    assert loading
    assert fast == {"model": "fast", "input": 2}
    assert slow_outcome[0] in {"ok", "ModelNotReadyException"}
    assert len(before) == 2
    assert resized["EndpointStatus"] == "InService"
    assert resized["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert len(after) == 1
    assert after[0] in before
    assert again == {"model": "fast", "input": 3}


def test_abandoned_queued_model_calls_never_run(server: Server, tmp_path: Path) -> None:
    prefix = tmp_path / "models"
    prefix.mkdir()
    shutil.move(write_model(tmp_path, COUNTING_MODEL), prefix / "counting.tar.gz")
    deploy_multi_model(server, "abandoned-models", prefix)
    calls = tmp_path / "calls.txt"
    body = str(calls).encode()
    runtime = server.client("sagemaker-runtime")

    def call() -> bytes:
        response = runtime.invoke_endpoint(
            EndpointName="abandoned-models",
            TargetModel="counting.tar.gz",
            Body=body,
            ContentType="text/plain",
        )
        return bytes(response["Body"].read())

    first: list[bytes] = []
    dropped_before = server.output().count(DROPPED)
    thread = threading.Thread(target=lambda: first.append(call()))
    thread.start()
    assert wait_until(calls.exists)

    # Five callers send a request while the only worker is busy, then hang up.
    # The worker stays busy until the server has dropped all five.
    target = {"X-Amzn-SageMaker-Target-Model": "counting.tar.gz"}
    try:
        send_and_hang_up(server, "/endpoints/abandoned-models/invocations", body, target, count=5)
        dropped = wait_until(lambda: server.output().count(DROPPED) - dropped_before == 5)
    finally:
        Path(f"{calls}.go").touch()
        thread.join(timeout=30)
    last = call()

    assert dropped
    assert first == [b"done"]
    assert last == b"done"
    assert calls.read_text().count("call") == 2
