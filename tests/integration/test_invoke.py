"""Deploy real models and invoke them with boto3 and the AWS CLI."""

from __future__ import annotations

import io
import json
import os
import textwrap
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.harness import Server, deploy, write_model

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
# Classes of ROWS: setosa and virginica.
EXPECTED = [0, 2]

SKLEARN_INFERENCE = """
import os
import joblib

def model_fn(model_dir):
    print("loading the iris model", flush=True)
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogisticRegression on iris with an inference.py that defines only model_fn."""
    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return write_model(
        tmp_path_factory.mktemp("sklearn"), SKLEARN_INFERENCE, {"model.joblib": buffer.getvalue()}
    )


@pytest.fixture(scope="module")
def iris_endpoint(server: Server, sklearn_model: Path) -> str:
    description = deploy(server, "iris", str(sklearn_model))
    assert description["EndpointStatus"] == "InService", description
    return "iris"


def invoke(server: Server, name: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
    runtime = server.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(EndpointName=name, Body=body, **kwargs)
    response["Body"] = response["Body"].read()
    return dict(response)


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> dict[str, Any]:
    return dict(excinfo.value.response)


def test_json_invocation_returns_predictions(server: Server, iris_endpoint: str) -> None:
    response = invoke(
        server, iris_endpoint, json.dumps(ROWS).encode(), ContentType="application/json"
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert json.loads(response["Body"]) == EXPECTED
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert len(response["ResponseMetadata"]["RequestId"]) == 36


def test_csv_invocation_returns_csv(server: Server, iris_endpoint: str) -> None:
    body = "\n".join(",".join(str(value) for value in row) for row in ROWS).encode()

    response = invoke(
        server, iris_endpoint, body, ContentType="text/csv; charset=utf-8", Accept="text/csv"
    )

    assert response["ContentType"] == "text/csv"
    assert response["Body"].decode().split() == ["0", "2"]


def test_npy_invocation_returns_npy(server: Server, iris_endpoint: str) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array(ROWS))

    response = invoke(
        server,
        iris_endpoint,
        buffer.getvalue(),
        ContentType="application/x-npy",
        Accept="application/x-npy",
    )

    assert response["ContentType"] == "application/x-npy"
    assert np.load(io.BytesIO(response["Body"]), allow_pickle=False).tolist() == EXPECTED


def test_aws_cli_writes_body_to_file(server: Server, iris_endpoint: str, tmp_path: Path) -> None:
    request = tmp_path / "in.json"
    request.write_text(json.dumps(ROWS))
    output = tmp_path / "out.txt"

    result = server.aws(
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        iris_endpoint,
        "--content-type",
        "application/json",
        "--body",
        f"fileb://{request}",
        str(output),
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "ContentType": "application/json",
        "InvokedProductionVariant": "AllTraffic",
    }
    assert json.loads(output.read_text()) == EXPECTED


def test_unknown_endpoint_is_validation_error(server: Server) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ValidationError) as excinfo:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"[]")

    error = error_of(excinfo)
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Message"] == (
        "Endpoint no-such-endpoint of account 123456789012 not found."
    )


def test_aws_cli_reports_unknown_endpoint(server: Server, tmp_path: Path) -> None:
    output = tmp_path / "out.txt"

    result = server.aws(
        "sagemaker-runtime",
        "invoke-endpoint",
        "--endpoint-name",
        "missing",
        "--body",
        "[]",
        str(output),
    )

    assert result.returncode == 255
    assert (
        "An error occurred (ValidationError) when calling the InvokeEndpoint operation: "
        "Endpoint missing of account 123456789012 not found." in result.stderr
    )
    assert not output.exists()


def test_endpoint_name_is_case_sensitive_on_invoke(server: Server, iris_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ValidationError):
        runtime.invoke_endpoint(EndpointName="IRIS", Body=b"[]", ContentType="application/json")


def test_oversized_body_is_refused(server: Server, iris_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ValidationError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=iris_endpoint, Body=b"x" * (6 * 2**20 + 1), ContentType="text/csv"
        )

    error = error_of(excinfo)
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "6291457 bytes" in error["Error"]["Message"]
    logs = server.sageport("logs", iris_endpoint, "--data-dir", str(server.data_dir))
    assert "xxxxxxxx" not in logs.stdout


def test_body_at_the_limit_reaches_the_model(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return str(len(data)), "text/plain"
""",
    )
    deploy(server, "size-echo", str(archive))

    response = invoke(server, "size-echo", b"x" * 6 * 2**20, ContentType="application/octet-stream")

    assert response["Body"] == str(6 * 2**20).encode()


def test_invalid_endpoint_name_is_rejected(server: Server) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ValidationError) as excinfo:
        runtime.invoke_endpoint(EndpointName="bad_name/with slash", Body=b"[]")

    assert "bad_name/with slash" in error_of(excinfo)["Error"]["Message"]


def test_handler_error_is_model_error(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
def model_fn(model_dir):
    return None

def predict_fn(data, model):
    raise ValueError("the model cannot score this input")
""",
    )
    deploy(server, "raises", str(archive))
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(EndpointName="raises", Body=b"[1]", ContentType="application/json")

    error = error_of(excinfo)
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert "ValueError: the model cannot score this input" in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith("Received server error (500) from primary")
    assert error["LogStreamArn"] == (
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/raises"
    )


def test_csv_of_a_dict_is_model_error(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
def model_fn(model_dir):
    return None

def predict_fn(data, model):
    return {"label": "setosa"}
""",
    )
    deploy(server, "dict-to-csv", str(archive))
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName="dict-to-csv",
            Body=b"[1]",
            ContentType="application/json",
            Accept="text/csv",
        )

    error = error_of(excinfo)
    assert error["OriginalStatusCode"] == 500
    assert error["OriginalMessage"].startswith("the default output_fn cannot encode a dict as CSV.")
    assert "setosa" not in error["OriginalMessage"]


def test_unsupported_content_type_is_model_error_415(server: Server, iris_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(EndpointName=iris_endpoint, Body=b"<x/>", ContentType="text/xml")

    error = error_of(excinfo)
    assert error["OriginalStatusCode"] == 415
    assert error["Error"]["Message"].startswith("Received client error (415) from primary")


def test_unparsable_json_is_model_error_400(server: Server, iris_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=iris_endpoint, Body=b"[[1, 2", ContentType="application/json"
        )

    assert error_of(excinfo)["OriginalStatusCode"] == 400


def test_custom_attributes_and_output_content_type(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
import json

def model_fn(model_dir, context):
    return {"loaded": True}

def input_fn(data, content_type, context):
    return {"text": data, "content_type": content_type}

def predict_fn(data, model, context):
    return {**data, "attributes": context.custom_attributes}

def output_fn(prediction, accept, context):
    context.response_custom_attributes = "seen=" + str(prediction["attributes"])
    return json.dumps(prediction), "application/vnd.sageport+json"
""",
    )
    deploy(server, "context", str(archive))

    response = invoke(
        server, "context", b'{"a": 1}', ContentType="application/json", CustomAttributes="trace=42"
    )

    assert response["ContentType"] == "application/vnd.sageport+json"
    assert response["CustomAttributes"] == "seen=trace=42"
    assert json.loads(response["Body"]) == {
        "text": '{"a": 1}',
        "content_type": "application/json",
        "attributes": "trace=42",
    }


def test_slow_model_times_out_and_instance_recovers(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    if data == b"slow":
        time.sleep(30)
    return b"fast", "text/plain"
""",
    )
    deploy(server, "slow", str(archive), environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "1"})
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(EndpointName="slow", Body=b"slow", ContentType="text/plain")
    response = invoke(server, "slow", b"quick", ContentType="text/plain")

    error = error_of(excinfo)
    assert error["OriginalStatusCode"] == 0
    assert "timed out after 1 seconds" in error["Error"]["Message"]
    assert response["Body"] == b"fast"


def test_requests_spread_over_instances(server: Server, tmp_path: Path) -> None:
    # Each call waits until both calls reached a model, so both are in flight
    # together however slowly the machine starts the second one.
    archive = write_model(
        tmp_path,
        """
import os
import time
import uuid

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    arrivals = data.decode()
    open(os.path.join(arrivals, uuid.uuid4().hex), "w").close()
    deadline = time.monotonic() + 10
    while len(os.listdir(arrivals)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return str(os.getpid()), "text/plain"
""",
    )
    description = deploy(server, "two-instances", str(archive), instance_count=2)
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    pids: list[bytes] = []

    def call() -> None:
        body = str(arrivals).encode()
        pids.append(invoke(server, "two-instances", body, ContentType="text/plain")["Body"])

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert description["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert len(pids) == 2
    assert len(set(pids)) == 2
    assert os.getpid() not in {int(pid) for pid in pids}


def test_logs_command_prints_instance_output(server: Server, iris_endpoint: str) -> None:
    result = server.sageport("logs", iris_endpoint, "--data-dir", str(server.data_dir))

    assert result.returncode == 0, result.stderr
    assert "==> AllTraffic/i-" in result.stdout
    assert "loading the iris model" in result.stdout


def test_logs_command_unknown_endpoint(server: Server) -> None:
    result = server.sageport("logs", "nothing-here", "--data-dir", str(server.data_dir))

    assert result.returncode == 3
    assert "No logs for endpoint nothing-here" in result.stderr


def test_logs_command_invalid_name(server: Server) -> None:
    secret = server.data_dir / "secret" / "v" / "x.log"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("SECRET-LINE")

    result = server.sageport("logs", "../secret", "--data-dir", str(server.data_dir))

    assert result.returncode == 2
    assert "Invalid endpoint name '../secret'" in result.stderr
    assert "SECRET-LINE" not in result.stdout


def test_model_code_runs_outside_server(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        textwrap.dedent(
            """
            import os

            def model_fn(model_dir):
                return None

            def transform_fn(model, data, content_type, accept):
                os._exit(1)
            """
        ),
    )
    deploy(server, "crashes", str(archive))
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ModelError) as excinfo:
        runtime.invoke_endpoint(EndpointName="crashes", Body=b"x", ContentType="text/plain")
    sagemaker = server.client("sagemaker")

    assert error_of(excinfo)["OriginalStatusCode"] == 0
    assert sagemaker.describe_endpoint(EndpointName="crashes")["EndpointStatus"] == "InService"
    assert server.process is not None
    assert server.process.poll() is None


@pytest.mark.parametrize("attributes", ["trace=\x01", "trace=\x7f"])
def test_control_characters_in_custom_attributes_rejected(
    server: Server, iris_endpoint: str, attributes: str
) -> None:
    runtime = server.client("sagemaker-runtime")

    with pytest.raises(runtime.exceptions.ValidationError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=iris_endpoint,
            Body=json.dumps(ROWS).encode(),
            ContentType="application/json",
            CustomAttributes=attributes,
        )

    # The HTTP parser rejects the request before any handler receives it.
    assert "is not valid HTTP/1.1" in error_of(excinfo)["Error"]["Message"]


# The model sends back the request body as its custom attributes.
ATTRIBUTES_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept, context):
    context.response_custom_attributes = data.decode()
    return b"ok", "text/plain"
"""

DROPPED_ATTRIBUTES_WARNING = "returned custom attributes that are not visible ASCII"


@pytest.fixture(scope="module")
def attributes_endpoint(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = write_model(tmp_path_factory.mktemp("attributes"), ATTRIBUTES_MODEL)
    description = deploy(server, "attributes-echo", str(archive))
    assert description["EndpointStatus"] == "InService", description
    return "attributes-echo"


@pytest.mark.parametrize(
    "attributes",
    ["x" * 2000, "a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "caf\u00e9", "snow\u2603man"],
    ids=["too-long", "crlf", "lf", "cr", "nul", "latin-1", "non-latin-1"],
)
def test_invalid_response_custom_attributes_dropped(
    server: Server, attributes_endpoint: str, attributes: str
) -> None:
    warnings_before = server.output().count(DROPPED_ATTRIBUTES_WARNING)

    response = invoke(server, attributes_endpoint, attributes.encode(), ContentType="text/plain")

    assert response["Body"] == b"ok"
    assert "CustomAttributes" not in response
    assert server.output().count(DROPPED_ATTRIBUTES_WARNING) == warnings_before + 1


def test_line_break_attributes_dropped_from_stream(
    server: Server, attributes_endpoint: str
) -> None:
    runtime = server.client("sagemaker-runtime")
    warnings_before = server.output().count(DROPPED_ATTRIBUTES_WARNING)

    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName=attributes_endpoint, Body=b"a\r\nX-Injected: 1", ContentType="text/plain"
    )
    parts = [event["PayloadPart"]["Bytes"] for event in response["Body"]]

    assert parts == [b"ok"]
    assert "CustomAttributes" not in response
    assert server.output().count(DROPPED_ATTRIBUTES_WARNING) == warnings_before + 1


def test_valid_response_custom_attributes_relayed(server: Server, attributes_endpoint: str) -> None:
    response = invoke(server, attributes_endpoint, b"trace=on; id=7", ContentType="text/plain")

    assert response["CustomAttributes"] == "trace=on; id=7"


def test_instance_environment_has_no_server_secrets(tmp_path: Path) -> None:
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "server-secret-value",
        "SAGEPORT_ACCESS_KEYS": "AKIDSERVERKEY0001:server-key-secret",
        "AWS_SESSION_TOKEN": "server-session-token",
    }
    server = Server(
        tmp_path / "data",
        extra_environment=secrets,
        client_keys={
            "AWS_ACCESS_KEY_ID": "AKIDSERVERKEY0001",
            "AWS_SECRET_ACCESS_KEY": "server-key-secret",
        },
    )
    server.start()
    try:
        archive = write_model(
            tmp_path / "model",
            """
import json
import os

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return json.dumps(dict(os.environ)), "application/json"
""",
        )
        deploy(
            server,
            "environment",
            str(archive),
            environment={"MODEL_SETTING": "kept"},
        )
        environment = json.loads(invoke(server, "environment", b"x")["Body"])
    finally:
        server.stop()

    assert environment["MODEL_SETTING"] == "kept"
    for name, value in secrets.items():
        assert name not in environment
        assert value not in json.dumps(environment)
