"""InvokeEndpointAsync with boto3: 202 at once, results in file:// and s3:// locations later."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.harness import Server, deploy, wait_for_status, write_model

# Returns what reached it as JSON. "fail" raises, "sleep N" sleeps N seconds
# first, and "hold STARTED GATE" creates the file STARTED, then waits until the
# test creates GATE (30 s at most).
ECHO_MODEL = """
import json
import os
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept, context):
    text = data.decode() if isinstance(data, bytes) else data
    if text.startswith("fail"):
        raise ValueError("the input asked to fail")
    if text.startswith("sleep"):
        time.sleep(float(text.split()[1]))
    if text.startswith("hold"):
        _, started, gate = text.split()
        open(started, "w").close()
        deadline = time.monotonic() + 30
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)
    answer = {
        "input": text,
        "content_type": content_type,
        "accept": accept,
        "custom_attributes": context.custom_attributes,
        "inference_id": context.inference_id,
    }
    return json.dumps(answer), "application/json"
"""

RESULT_TIMEOUT = 30.0


@dataclass
class AsyncEndpoint:
    name: str
    output_dir: Path
    failure_dir: Path
    inputs_dir: Path

    def write_input(self, name: str, content: str) -> str:
        path = self.inputs_dir / name
        path.write_text(content)
        return f"file://{path}"


def deploy_async(
    server: Server,
    name: str,
    model_data: Path,
    output_path: str,
    failure_path: str | None = None,
    *,
    max_concurrency: int | None = None,
    environment: dict[str, str] | None = None,
) -> dict[str, Any]:
    sagemaker = server.client("sagemaker")
    container: dict[str, Any] = {"Image": "sageport/python", "ModelDataUrl": str(model_data)}
    if environment:
        container["Environment"] = environment
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer=container,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
    output_config = {"S3OutputPath": output_path}
    if failure_path is not None:
        output_config["S3FailurePath"] = failure_path
    async_config: dict[str, Any] = {"OutputConfig": output_config}
    if max_concurrency is not None:
        async_config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": max_concurrency}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        AsyncInferenceConfig=async_config,
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_for_status(server, name, {"InService", "Failed"})


def wait_for_file(path: Path, timeout: float = RESULT_TIMEOUT) -> bytes:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)
    return path.read_bytes()


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("echo"), ECHO_MODEL)


@pytest.fixture(scope="module")
def echo_endpoint(
    server: Server, echo_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncEndpoint:
    root = tmp_path_factory.mktemp("async")
    endpoint = AsyncEndpoint("echo-async", root / "out", root / "errors", root / "inputs")
    endpoint.inputs_dir.mkdir()
    # Two workers, so a test whose invocation sleeps leaves one for the others.
    description = deploy_async(
        server,
        endpoint.name,
        echo_model,
        f"file://{endpoint.output_dir}",
        f"file://{endpoint.failure_dir}",
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
    )
    assert description["EndpointStatus"] == "InService", description
    return endpoint


def test_async_returns_202_with_locations(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name,
        InputLocation=echo_endpoint.write_input("hello.txt", "hello"),
    )
    inference_id = response["InferenceId"]

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert len(inference_id) == 36
    assert response["OutputLocation"] == f"file://{echo_endpoint.output_dir}/{inference_id}.out"
    assert response["FailureLocation"] == (
        f"file://{echo_endpoint.failure_dir}/{inference_id}-error.out"
    )


def test_async_output_holds_model_answer(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name,
        InputLocation=echo_endpoint.write_input("answer.txt", "what reached the model"),
        ContentType="text/plain",
        Accept="application/json",
        CustomAttributes="trace=1",
    )
    inference_id = response["InferenceId"]
    output = wait_for_file(echo_endpoint.output_dir / f"{inference_id}.out")

    assert json.loads(output) == {
        "input": "what reached the model",
        "content_type": "text/plain",
        "accept": "application/json",
        "custom_attributes": "trace=1",
        "inference_id": inference_id,
    }
    assert not (echo_endpoint.failure_dir / f"{inference_id}-error.out").exists()
    assert [path.name for path in echo_endpoint.output_dir.glob(".*")] == []


def test_async_caller_inference_id_names_output(
    server: Server, echo_endpoint: AsyncEndpoint
) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name,
        InputLocation=echo_endpoint.write_input("named.txt", "named"),
        InferenceId="caller-chosen-id",
    )
    output = wait_for_file(echo_endpoint.output_dir / "caller-chosen-id.out")

    assert response["InferenceId"] == "caller-chosen-id"
    assert json.loads(output)["inference_id"] == "caller-chosen-id"


def test_async_inline_body(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name, Body=b"sent inline", ContentType="text/plain"
    )
    output = wait_for_file(echo_endpoint.output_dir / f"{response['InferenceId']}.out")

    assert json.loads(output)["input"] == "sent inline"


def test_async_model_error_writes_failure(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name,
        InputLocation=echo_endpoint.write_input("fail.txt", "fail please"),
    )
    inference_id = response["InferenceId"]
    failure = wait_for_file(echo_endpoint.failure_dir / f"{inference_id}-error.out").decode()

    assert failure.startswith('Received server error (500) from primary with message "')
    assert "ValueError: the input asked to fail" in failure
    assert not (echo_endpoint.output_dir / f"{inference_id}.out").exists()


def test_async_missing_input_writes_failure(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")
    missing = f"file://{echo_endpoint.inputs_dir}/missing.txt"

    response = runtime.invoke_endpoint_async(EndpointName=echo_endpoint.name, InputLocation=missing)
    failure = wait_for_file(echo_endpoint.failure_dir / f"{response['InferenceId']}-error.out")

    assert failure.decode() == f"Could not find the input at {missing}: no such file."


def test_async_timeout_writes_failure(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    response = runtime.invoke_endpoint_async(
        EndpointName=echo_endpoint.name,
        InputLocation=echo_endpoint.write_input("slow.txt", "sleep 5"),
        InvocationTimeoutSeconds=1,
    )
    failure = wait_for_file(echo_endpoint.failure_dir / f"{response['InferenceId']}-error.out")

    assert failure.decode() == (
        "The invocation timed out: the model did not answer within InvocationTimeoutSeconds (1 s)."
    )


def test_async_without_input_rejected(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(EndpointName=echo_endpoint.name)

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"].startswith("InputLocation is required")


def test_async_input_and_body_rejected(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(
            EndpointName=echo_endpoint.name,
            InputLocation=echo_endpoint.write_input("both.txt", "both"),
            Body=b"both",
        )

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"].startswith(
        "Body and InputLocation are mutually exclusive"
    )


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("S3OutputPathExtension", "../../escaped"),
        ("S3OutputPathExtension", "a/../../b"),
        ("S3OutputPathExtension", "/absolute"),
        ("InferenceId", "../../escaped"),
        ("InferenceId", "a/b"),
        ("InferenceId", ".."),
        ("InferenceId", "%2e%2e%2fescaped"),
        ("InferenceId", "a\\b"),
    ],
)
def test_async_names_cannot_leave_output_path(
    server: Server, echo_endpoint: AsyncEndpoint, member: str, value: str
) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(
            EndpointName=echo_endpoint.name,
            InputLocation=echo_endpoint.write_input("escape.txt", "x"),
            **{member: value},
        )

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert member in caught.value.response["Error"]["Message"]
    assert repr(value) in caught.value.response["Error"]["Message"]
    assert not (echo_endpoint.output_dir.parent.parent / "escaped.out").exists()


def test_async_https_input_rejected(server: Server, echo_endpoint: AsyncEndpoint) -> None:
    runtime = server.client("sagemaker-runtime")

    # Rejected before anything is read, so the URL is never fetched.
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(
            EndpointName=echo_endpoint.name, InputLocation="https://bucket.invalid/input.json"
        )

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == (
        "InputLocation https://bucket.invalid/input.json is not supported: Sageport reads and "
        "writes s3:// and file:// URIs only. Use s3://bucket/key or file:///absolute/path."
    )


def test_async_real_time_endpoint_rejected(
    server: Server, echo_model: Path, tmp_path: Path
) -> None:
    deploy(server, "echo-real-time", str(echo_model))
    runtime = server.client("sagemaker-runtime")
    input_path = tmp_path / "input.txt"
    input_path.write_text("hello")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(
            EndpointName="echo-real-time", InputLocation=f"file://{input_path}"
        )

    error = caught.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == (
        "Endpoint echo-real-time is not an asynchronous endpoint: its endpoint config "
        "echo-real-time has no AsyncInferenceConfig. Use InvokeEndpoint, or deploy an "
        "endpoint config with an AsyncInferenceConfig."
    )


def test_async_unknown_endpoint_rejected(server: Server, tmp_path: Path) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint_async(
            EndpointName="no-such-endpoint", InputLocation=f"file://{tmp_path}/input.txt"
        )

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == (
        "Endpoint no-such-endpoint of account 123456789012 not found."
    )


def test_async_queue_survives_kill_9(
    fresh_server: Server, echo_model: Path, tmp_path: Path
) -> None:
    endpoint = AsyncEndpoint("slow-async", tmp_path / "out", tmp_path / "errors", tmp_path / "in")
    endpoint.inputs_dir.mkdir()
    description = deploy_async(
        fresh_server,
        endpoint.name,
        echo_model,
        f"file://{endpoint.output_dir}",
        f"file://{endpoint.failure_dir}",
        max_concurrency=1,
    )
    assert description["EndpointStatus"] == "InService", description
    runtime = fresh_server.client("sagemaker-runtime")
    inference_ids = [f"queued-{index}" for index in range(4)]
    # The first answers at once; each of the others is held until its gate exists.
    inputs = {"queued-0": "first"} | {
        f"queued-{index}": f"hold {tmp_path}/started-{index} {tmp_path}/gate-{index}"
        for index in range(1, 4)
    }
    for inference_id in inference_ids:
        runtime.invoke_endpoint_async(
            EndpointName=endpoint.name,
            InputLocation=endpoint.write_input(f"{inference_id}.txt", inputs[inference_id]),
            InferenceId=inference_id,
        )

    # One at a time: once the second has reached the model, the first is done
    # and the other two are still queued.
    wait_for_file(endpoint.output_dir / "queued-0.out")
    wait_for_file(tmp_path / "started-1")
    fresh_server.stop(signal.SIGKILL)
    done_before_restart = sorted(path.name for path in endpoint.output_dir.glob("*.out"))
    for index in range(1, 4):
        (tmp_path / f"gate-{index}").touch()
    fresh_server.start()
    outputs = {
        inference_id: json.loads(wait_for_file(endpoint.output_dir / f"{inference_id}.out"))
        for inference_id in inference_ids
    }

    assert done_before_restart == ["queued-0.out"]
    assert {key: value["input"] for key, value in outputs.items()} == inputs
    assert not endpoint.failure_dir.exists()
    assert "queued again after the previous server stopped: 1" in fresh_server.output()


# s3:// locations, against moto's S3 server on loopback.


@pytest.fixture
def moto_s3() -> Iterator[Any]:
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed; it serves S3 on loopback"
    )
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()
        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="async")
        yield client
    finally:
        server.stop()


def wait_for_object(s3: Any, key: str, timeout: float = RESULT_TIMEOUT) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            body: bytes = s3.get_object(Bucket="async", Key=key)["Body"].read()
            return body
        except s3.exceptions.NoSuchKey:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"s3://async/{key} did not appear within {timeout} s"
                ) from None
            time.sleep(0.1)


def test_async_s3_locations(tmp_path: Path, echo_model: Path, moto_s3: Any) -> None:
    server = Server(
        tmp_path / "data",
        extra_environment={"AWS_ENDPOINT_URL_S3": moto_s3.meta.endpoint_url},
    )
    server.start()
    try:
        description = deploy_async(
            server, "s3-async", echo_model, "s3://async/results", "s3://async/errors"
        )
        assert description["EndpointStatus"] == "InService", description
        moto_s3.put_object(Bucket="async", Key="inputs/request.txt", Body=b"from s3")
        runtime = server.client("sagemaker-runtime")

        answered = runtime.invoke_endpoint_async(
            EndpointName="s3-async", InputLocation="s3://async/inputs/request.txt"
        )
        failed = runtime.invoke_endpoint_async(
            EndpointName="s3-async", InputLocation="s3://async/inputs/missing.txt"
        )
        output = wait_for_object(moto_s3, f"results/{answered['InferenceId']}.out")
        failure = wait_for_object(moto_s3, f"errors/{failed['InferenceId']}-error.out")
    finally:
        server.stop()

    assert answered["OutputLocation"] == f"s3://async/results/{answered['InferenceId']}.out"
    assert json.loads(output)["input"] == "from s3"
    assert failure.decode() == (
        "Could not read the input at s3://async/inputs/missing.txt: no such object."
    )
