"""InvokeEndpointWithResponseStream against a real server, parsed by boto3 event by event."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from tests.harness import Server, client_environment, deploy, write_model

# transform_fn streams; the request body is JSON naming the behaviour wanted,
# so one endpoint serves every case. A "gate" is a file the test creates to let
# the model continue, which proves a part reached the client while the model
# was still blocked.
STREAMING_INFERENCE = """
import json
import os
import time

GATE_WAIT_SECONDS = 30


class EmptyPromptError(Exception):
    status_code = 400


def model_fn(model_dir):
    return None


def wait_for(path):
    deadline = time.monotonic() + GATE_WAIT_SECONDS
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never created {path}")
        time.sleep(0.01)


def transform_fn(model, data, content_type, accept, context):
    request = json.loads(data)
    case = request["case"]
    context.response_custom_attributes = "seen=" + (context.custom_attributes or "none")

    def parts():
        if case == "fail-first":
            raise RuntimeError("failed before the first part")
        if case == "refuse-first":
            raise EmptyPromptError("the prompt is empty")
        yield "accept=" + accept
        yield b" bytes"
        if case == "gate":
            wait_for(request["gate"])
            yield " after-gate"
        if case == "fail-later":
            raise RuntimeError("failed after the first part")
        if case == "slow":
            time.sleep(30)
            yield "too late"
        if case == "leave":
            # Runs until the server closes the connection, or for 30 s at most.
            wait_for(request["gate"])
            try:
                for _ in range(3000):
                    yield "."
                    time.sleep(0.01)
            except GeneratorExit:
                outcome = "closed"
                raise
            else:
                outcome = "finished"
            finally:
                # Written aside, then renamed: the test reads it as soon as it exists.
                with open(request["gate"] + ".partial", "w") as file:
                    file.write(outcome)
                os.replace(request["gate"] + ".partial", request["gate"] + ".outcome")
        yield ""
        yield bytearray(b" end")

    return parts(), "text/event-stream"
"""

# A handler that returns one whole body, as every existing model does.
PLAIN_INFERENCE = """
def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept):
    return b"whole:" + data.encode() if isinstance(data, str) else b"whole:" + data, "text/plain"
"""


@pytest.fixture(scope="module")
def streaming_endpoint(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = write_model(tmp_path_factory.mktemp("streaming"), STREAMING_INFERENCE)
    description = deploy(server, "streaming", str(archive))
    assert description["EndpointStatus"] == "InService", description
    return "streaming"


@pytest.fixture(scope="module")
def slow_endpoint(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = write_model(tmp_path_factory.mktemp("slow"), STREAMING_INFERENCE)
    description = deploy(
        server, "slow-stream", str(archive), environment={"SAGEMAKER_MODEL_SERVER_TIMEOUT": "2"}
    )
    assert description["EndpointStatus"] == "InService", description
    return "slow-stream"


@pytest.fixture(scope="module")
def plain_endpoint(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    archive = write_model(tmp_path_factory.mktemp("plain"), PLAIN_INFERENCE)
    description = deploy(server, "plain-stream", str(archive))
    assert description["EndpointStatus"] == "InService", description
    return "plain-stream"


def start_stream(server: Server, name: str, request: dict[str, Any], **kwargs: Any) -> Any:
    runtime = server.client("sagemaker-runtime")
    return runtime.invoke_endpoint_with_response_stream(
        EndpointName=name,
        Body=json.dumps(request).encode(),
        ContentType="application/json",
        **kwargs,
    )


def parts_of(events: Iterator[dict[str, Any]]) -> list[bytes]:
    parts = []
    for event in events:
        assert list(event) == ["PayloadPart"]
        parts.append(event["PayloadPart"]["Bytes"])
    return parts


def raw_stream(server: Server, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send a signed request with urllib and return the raw status, headers and body."""
    environment = client_environment(server.url)
    credentials = Credentials(
        environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]
    )
    request = AWSRequest(
        method="POST",
        url=f"{server.url}/endpoints/{name}/invocations-response-stream",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(credentials, "sagemaker", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(
        request.url, data=body, headers=dict(request.headers.items()), method="POST"
    )
    with urllib.request.urlopen(prepared, timeout=60) as response:
        headers = {key.lower(): value for key, value in response.getheaders()}
        return response.status, headers, response.read()


def decode_messages(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_stream_yields_each_part(server: Server, streaming_endpoint: str) -> None:
    response = start_stream(
        server,
        streaming_endpoint,
        {"case": "plain"},
        Accept="text/event-stream",
        CustomAttributes="trace=1",
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "text/event-stream"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["CustomAttributes"] == "seen=trace=1"
    assert len(response["ResponseMetadata"]["RequestId"]) == 36
    assert parts_of(response["Body"]) == [b"accept=text/event-stream", b" bytes", b" end"]


def test_stream_delivers_parts_before_model_finishes(
    server: Server, streaming_endpoint: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    response = start_stream(server, streaming_endpoint, {"case": "gate", "gate": str(gate)})
    events = iter(response["Body"])

    # The model is now blocked until the gate exists, so these parts were
    # relayed while it was still running.
    assert next(events) == {"PayloadPart": {"Bytes": b"accept=application/json"}}
    assert next(events) == {"PayloadPart": {"Bytes": b" bytes"}}
    gate.touch()
    assert parts_of(events) == [b" after-gate", b" end"]


def test_error_before_first_part_is_model_error(server: Server, streaming_endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        start_stream(server, streaming_endpoint, {"case": "fail-first"})

    error = excinfo.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert "RuntimeError: failed before the first part" in error["OriginalMessage"]


def test_status_error_before_first_part_keeps_status(
    server: Server, streaming_endpoint: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        start_stream(server, streaming_endpoint, {"case": "refuse-first"})

    error = excinfo.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"] == "the prompt is empty"


def test_error_mid_stream_raises_model_stream_error(
    server: Server, streaming_endpoint: str
) -> None:
    response = start_stream(server, streaming_endpoint, {"case": "fail-later"})
    received = []

    with pytest.raises(EventStreamError) as excinfo:
        for event in response["Body"]:
            received.append(event["PayloadPart"]["Bytes"])

    assert received == [b"accept=application/json", b" bytes"]
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ModelStreamError"
    assert error["Message"] == (
        "The response stream from container primary ended before it was complete, after 29 "
        "bytes: the model raised an error or its instance stopped. See the endpoint's logs "
        "(sageport logs streaming) for the reason."
    )


def test_mid_stream_error_message_is_stream_broken(server: Server, streaming_endpoint: str) -> None:
    status, headers, body = raw_stream(
        server, streaming_endpoint, json.dumps({"case": "fail-later"}).encode()
    )

    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-amzn-sagemaker-content-type"] == "text/event-stream"
    assert len(headers["x-amzn-requestid"]) == 36
    messages = decode_messages(body)
    assert [headers for headers, _ in messages] == [
        {
            ":message-type": "event",
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
        },
        {
            ":message-type": "event",
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
        },
        {
            ":message-type": "exception",
            ":exception-type": "ModelStreamError",
            ":content-type": "application/json",
        },
    ]
    assert json.loads(messages[2][1])["ErrorCode"] == "StreamBroken"


def test_stream_recovers_after_mid_stream_error(server: Server, streaming_endpoint: str) -> None:
    for _ in range(3):
        response = start_stream(server, streaming_endpoint, {"case": "fail-later"})
        with pytest.raises(EventStreamError):
            parts_of(response["Body"])

    response = start_stream(server, streaming_endpoint, {"case": "plain"})
    assert parts_of(response["Body"]) == [b"accept=application/json", b" bytes", b" end"]


def test_stream_past_timeout_is_time_exceeded(server: Server, slow_endpoint: str) -> None:
    status, _, body = raw_stream(server, slow_endpoint, json.dumps({"case": "slow"}).encode())

    assert status == 200
    messages = decode_messages(body)
    assert [payload for _, payload in messages[:2]] == [b"accept=application/json", b" bytes"]
    assert messages[2][0][":exception-type"] == "ModelStreamError"
    error = json.loads(messages[2][1])
    assert error == {
        "ErrorCode": "ModelInvocationTimeExceeded",
        "Message": (
            "The response stream from container primary did not finish within 2 seconds, the "
            "model server timeout of production variant AllTraffic. Raise "
            "SAGEMAKER_MODEL_SERVER_TIMEOUT in the model's container Environment for longer "
            "streams."
        ),
    }
    assert len(messages) == 3


def test_client_leaving_stops_generator(
    server: Server, streaming_endpoint: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    response = start_stream(server, streaming_endpoint, {"case": "leave", "gate": str(gate)})
    assert next(iter(response["Body"])) == {"PayloadPart": {"Bytes": b"accept=application/json"}}

    response["Body"].close()
    gate.touch()
    outcome = Path(f"{gate}.outcome")
    deadline = time.monotonic() + 60
    while not outcome.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcome.read_text() == "closed"


def test_invoke_endpoint_joins_streamed_parts(server: Server, streaming_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(
        EndpointName=streaming_endpoint, Body=json.dumps({"case": "plain"}).encode()
    )

    assert response["ContentType"] == "text/event-stream"
    assert response["Body"].read() == b"accept=application/json bytes end"


def test_invoke_endpoint_mid_stream_error_is_model_error(
    server: Server, streaming_endpoint: str
) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(
            EndpointName=streaming_endpoint, Body=json.dumps({"case": "fail-later"}).encode()
        )

    error = excinfo.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == 0


def test_plain_handler_streams_one_part(server: Server, plain_endpoint: str) -> None:
    runtime = server.client("sagemaker-runtime")
    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName=plain_endpoint, Body=b"hello", ContentType="text/plain"
    )

    assert response["ContentType"] == "text/plain"
    assert parts_of(response["Body"]) == [b"whole:hello"]


def test_stream_and_invoke_share_one_worker(server: Server, plain_endpoint: str) -> None:
    # The instance has one worker, which serves one connection at a time; the
    # stream must reuse the invocation's keep-alive connection, not queue behind it.
    runtime = server.client("sagemaker-runtime")
    first = runtime.invoke_endpoint(
        EndpointName=plain_endpoint, Body=b"a", ContentType="text/plain"
    )
    streamed = runtime.invoke_endpoint_with_response_stream(
        EndpointName=plain_endpoint, Body=b"b", ContentType="text/plain"
    )
    parts = parts_of(streamed["Body"])
    last = runtime.invoke_endpoint(EndpointName=plain_endpoint, Body=b"c", ContentType="text/plain")

    assert first["Body"].read() == b"whole:a"
    assert parts == [b"whole:b"]
    assert last["Body"].read() == b"whole:c"


def test_unknown_endpoint_is_validation_error(server: Server) -> None:
    runtime = server.client("sagemaker-runtime")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint_with_response_stream(EndpointName="missing", Body=b"{}")

    error = excinfo.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["Error"]["Message"] == "Endpoint missing of account 123456789012 not found."
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_target_variant_is_validation_error(
    server: Server, streaming_endpoint: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        start_stream(server, streaming_endpoint, {"case": "plain"}, TargetVariant="Blue")

    error = excinfo.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert error["Message"] == (
        "Endpoint streaming has no production variant Blue. Its variants are: AllTraffic."
    )


def test_invalid_accept_header_is_validation_error(server: Server, streaming_endpoint: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        start_stream(server, streaming_endpoint, {"case": "plain"}, Accept="x" * 1025)

    error = excinfo.value.response["Error"]
    assert error["Code"] == "ValidationError"
    assert "accept" in error["Message"].lower()
