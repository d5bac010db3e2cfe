"""Control-plane input that is deeply nested, huge or misrouted: a clean AWS-shaped error."""

from __future__ import annotations

import http.client
import json

import pytest

from sageport.errors import SerializationException
from sageport.protocol.awsjson import parse_control_request
from tests.harness import Server

TOO_DEEP = (
    "The request body nests JSON objects and arrays more than 64 levels deep; "
    "SageMaker inputs need far fewer."
)


@pytest.mark.parametrize("depth", [64, 500, 900, 5000])
def test_deep_nesting_is_rejected(depth: int) -> None:
    body = b'{"ModelName": ' + b"[" * depth + b"]" * depth + b"}"

    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.CreateModel", body)

    assert excinfo.value.message == TOO_DEEP


def test_unclosed_brackets_get_the_depth_message() -> None:
    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.ListModels", b"[" * 200_000)

    assert excinfo.value.message == TOO_DEEP


def test_huge_integer_is_rejected_plainly() -> None:
    body = b'{"MaxResults": -' + b"9" * 5000 + b"}"

    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.ListModels", body)

    assert excinfo.value.message == (
        "The request body contains an integer of 5000 digits; the control plane accepts "
        "at most 100, and SageMaker's integer members fit in 19."
    )
    assert "sys.set_int_max_str_digits" not in excinfo.value.message


def test_nesting_below_the_limit_reaches_validation() -> None:
    body = b'{"ModelName": ' + b"[" * 62 + b"]" * 62 + b"}"

    with pytest.raises(SerializationException) as excinfo:
        parse_control_request("SageMaker.CreateModel", body)

    assert excinfo.value.message.startswith(
        "Invalid value at 'modelName': expected a string, got a JSON array"
    )


def test_null_member_counts_as_absent() -> None:
    _, params = parse_control_request(
        "SageMaker.ListModels", b'{"MaxResults": null, "NameContains": "a"}'
    )

    assert params == {"NameContains": "a"}


def raw_request(
    server: Server, method: str, path: str, headers: dict[str, str], body: bytes = b"{}"
) -> tuple[int, dict[str, str], dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        payload = json.loads(response.read())
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
    finally:
        connection.close()


@pytest.mark.parametrize(("method", "path"), [("PUT", "/"), ("DELETE", "/"), ("POST", "/api")])
def test_target_outside_post_root_gets_aws_error(server: Server, method: str, path: str) -> None:
    status, headers, body = raw_request(
        server,
        method,
        path,
        {"X-Amz-Target": "SageMaker.ListModels", "Content-Type": "application/x-amz-json-1.1"},
    )

    assert status == 400
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert body["__type"] == "UnknownOperationException"
    assert body["Message"] == (
        f"The control plane accepts only POST / with X-Amz-Target; got {method} {path}. "
        "Set the endpoint URL to the server's root, for example http://127.0.0.1:8765."
    )


def test_non_ascii_content_type_is_shown_as_sent(server: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/endpoints/absent/invocations")
        connection.putheader("Content-Type", "\u2603/x".encode())
        connection.putheader("Content-Length", "2")
        connection.endheaders(b"{}")
        response = connection.getresponse()
        body = json.loads(response.read())
        error_type = response.getheader("x-amzn-ErrorType", "")
    finally:
        connection.close()

    assert response.status == 400
    assert error_type.split(":")[0] == "ValidationError"
    assert body["Message"] == (
        "The content-type header has the value '\u2603/x', which is not ASCII; SageMaker "
        "accepts only ASCII in invocation headers."
    )
