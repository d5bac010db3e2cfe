"""A real server with --auth sigv4: boto3, the AWS CLI, the keys command and the start-up modes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.harness import Server, client_environment, free_port

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your access key ID, secret access key and signing method."
)


def sageport(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sageport", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def create_key(data_dir: Path, *extra: str) -> dict[str, str]:
    result = sageport("keys", "create", "--data-dir", str(data_dir), *extra)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["AccessKey"])


def key_environment(key: dict[str, str]) -> dict[str, str]:
    environment = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    if "SessionToken" in key:
        environment["AWS_SESSION_TOKEN"] = key["SessionToken"]
    return environment


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("auth") / "data"
    key = create_key(data_dir, "--user-name", "alice")
    server = Server(data_dir, client_keys=key_environment(key))
    server.start()
    yield server, key
    server.stop()


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_keys_create_list_delete(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    key = create_key(data_dir, "--user-name", "bob")
    listed = json.loads(sageport("keys", "list", "--data-dir", str(data_dir)).stdout)
    deleted = sageport("keys", "delete", key["AccessKeyId"], "--data-dir", str(data_dir))
    missing = sageport("keys", "delete", key["AccessKeyId"], "--data-dir", str(data_dir))
    after = json.loads(sageport("keys", "list", "--data-dir", str(data_dir)).stdout)

    assert sorted(key) == ["AccessKeyId", "CreateDate", "SecretAccessKey", "Status", "UserName"]
    assert key["UserName"] == "bob"
    assert key["Status"] == "Active"
    assert key["AccessKeyId"].startswith("AKSP")
    assert len(key["AccessKeyId"]) == 20
    assert len(key["SecretAccessKey"]) == 40
    assert listed == {
        "AccessKeyMetadata": [
            {
                "UserName": "bob",
                "AccessKeyId": key["AccessKeyId"],
                "Status": "Active",
                "CreateDate": key["CreateDate"],
            }
        ]
    }
    assert key["SecretAccessKey"] not in json.dumps(listed)
    assert (data_dir / "credentials.json").stat().st_mode & 0o777 == 0o600
    assert deleted.returncode == 0
    assert missing.returncode == 3
    assert "No access key" in missing.stderr
    assert after == {"AccessKeyMetadata": []}


def test_both_planes_accept_a_good_key(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, _ = auth_server

    listed = server.client("sagemaker").list_endpoints()
    with pytest.raises(ClientError) as excinfo:
        server.client("sagemaker-runtime").invoke_endpoint(EndpointName="absent", Body=b"{}")

    assert listed["Endpoints"] == []
    # Past authentication, the runtime looked the endpoint up.
    assert error_of(excinfo) == (
        "ValidationError",
        "Endpoint absent of account 123456789012 not found.",
        400,
    )


@pytest.mark.parametrize("service", ["sagemaker", "sagemaker-runtime"])
def test_wrong_secret_is_rejected(auth_server: tuple[Server, dict[str, str]], service: str) -> None:
    server, key = auth_server
    wrong = Server(
        server.data_dir,
        port=server.port,
        client_keys={
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789abcdefghijklmnop",
        },
    )

    with pytest.raises(ClientError) as excinfo:
        call(wrong.client(service), service)

    assert error_of(excinfo) == ("InvalidSignatureException", SIGNATURE_MISMATCH, 400)


@pytest.mark.parametrize("service", ["sagemaker", "sagemaker-runtime"])
def test_unknown_key_gets_the_same_answer(
    auth_server: tuple[Server, dict[str, str]], service: str
) -> None:
    server, _ = auth_server
    unknown = Server(server.data_dir, port=server.port)

    with pytest.raises(ClientError) as excinfo:
        call(unknown.client(service), service)

    assert error_of(excinfo) == ("InvalidSignatureException", SIGNATURE_MISMATCH, 400)


def call(client: Any, service: str) -> object:
    if service == "sagemaker":
        return client.list_endpoints()
    return client.invoke_endpoint(EndpointName="absent", Body=b"{}")


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        (
            "/",
            {
                "X-Amz-Target": "SageMaker.ListEndpoints",
                "Content-Type": "application/x-amz-json-1.1",
            },
        ),
        ("/endpoints/absent/invocations", {"Content-Type": "application/json"}),
    ],
    ids=["control-plane", "runtime"],
)
def test_unsigned_request_is_rejected(
    auth_server: tuple[Server, dict[str, str]], path: str, headers: dict[str, str]
) -> None:
    server, _ = auth_server
    request = urllib.request.Request(server.url + path, data=b"{}", headers=headers)

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=10)

    body = json.loads(excinfo.value.read())
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"].split(":")[0] == (
        "MissingAuthenticationTokenException"
    )
    assert body["Message"] == "Request is missing Authentication Token"


def test_console_needs_sign_in_while_auth_is_on(
    auth_server: tuple[Server, dict[str, str]],
) -> None:
    server, _ = auth_server

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(server.url + "/console/api/endpoints", timeout=10)

    assert excinfo.value.code == 401
    assert json.loads(excinfo.value.read())["error"]["code"] == "NotSignedIn"


def test_aws_cli_with_good_and_bad_key(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, key = auth_server
    bad = Server(
        server.data_dir,
        port=server.port,
        client_keys={
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": "wrong-secret-0123456789abcdefghijklmnop",
        },
    )

    good_result = server.aws("sagemaker", "list-endpoints")
    bad_result = bad.aws("sagemaker", "list-endpoints")

    assert good_result.returncode == 0, good_result.stderr
    assert json.loads(good_result.stdout) == {"Endpoints": []}
    assert bad_result.returncode == 255
    assert (
        "An error occurred (InvalidSignatureException) when calling the ListEndpoints "
        f"operation: {SIGNATURE_MISMATCH}"
    ) in bad_result.stderr


def test_key_created_and_deleted_while_running(
    auth_server: tuple[Server, dict[str, str]],
) -> None:
    server, _ = auth_server
    key = create_key(server.data_dir, "--user-name", "carol")
    newcomer = Server(server.data_dir, port=server.port, client_keys=key_environment(key))

    listed = retry_for(10, lambda: newcomer.client("sagemaker").list_endpoints())
    sageport("keys", "delete", key["AccessKeyId"], "--data-dir", str(server.data_dir))
    time.sleep(1.2)
    with pytest.raises(ClientError) as excinfo:
        newcomer.client("sagemaker").list_endpoints()

    assert listed["Endpoints"] == []
    assert error_of(excinfo)[0] == "InvalidSignatureException"


def retry_for(seconds: float, action: Any) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_session_token_key(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, _ = auth_server
    key = create_key(server.data_dir, "--session-token")
    with_token = Server(server.data_dir, port=server.port, client_keys=key_environment(key))
    without_token = Server(
        server.data_dir,
        port=server.port,
        client_keys={
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        },
    )

    listed = retry_for(10, lambda: with_token.client("sagemaker").list_endpoints())
    with pytest.raises(ClientError) as excinfo:
        without_token.client("sagemaker").list_endpoints()

    assert listed["Endpoints"] == []
    assert error_of(excinfo) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
    )


def test_environment_keys_are_accepted(tmp_path: Path) -> None:
    key_id, secret = "AKSPENVIRONMENT00001", "environment-secret-0123456789"
    server = Server(
        tmp_path / "data",
        extra_environment={"SAGEPORT_ACCESS_KEYS": f"{key_id}:{secret}"},
        client_keys={"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret},
    )
    server.start()
    try:
        listed = server.client("sagemaker").list_endpoints()
        unsigned = Server(server.data_dir, port=server.port)
        with pytest.raises(ClientError) as excinfo:
            unsigned.client("sagemaker").list_endpoints()
    finally:
        server.stop()

    assert listed["Endpoints"] == []
    assert error_of(excinfo)[0] == "InvalidSignatureException"
    assert "Authentication: sigv4 (1 access keys" in server.output()
    assert secret not in server.output()


def test_no_secret_reaches_the_log(auth_server: tuple[Server, dict[str, str]]) -> None:
    server, key = auth_server
    server.client("sagemaker").list_endpoints()
    server.aws("sagemaker", "list-endpoints")

    output = server.output()

    assert "Authentication: sigv4" in output
    assert key["SecretAccessKey"] not in output
    assert "Signature=" not in output
    assert "AWS4-HMAC-SHA256" not in output


def test_default_mode_is_none_without_keys(fresh_server: Server) -> None:
    assert "Authentication: none" in fresh_server.output()


def test_none_on_all_interfaces_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    result = sageport(
        "serve",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--auth",
        "none",
        "--data-dir",
        str(tmp_path / "data"),
        env=client_environment("http://127.0.0.1:9"),
    )

    assert result.returncode == 2
    assert "--auth none is not allowed on 0.0.0.0" in result.stderr
    assert "sageport keys create --data-dir DIR" in result.stderr
    assert "Uvicorn running" not in result.stderr
    # Nothing took the port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_default_mode_on_all_interfaces_is_sigv4(tmp_path: Path) -> None:
    from sageport.auth.mode import resolve_auth_mode

    assert resolve_auth_mode(None, "0.0.0.0", 0) == "sigv4"
    assert resolve_auth_mode(None, "::", 0) == "sigv4"
    assert resolve_auth_mode(None, "127.0.0.1", 1) == "sigv4"
    assert resolve_auth_mode(None, "127.0.0.1", 0) == "none"
    assert resolve_auth_mode(None, "::1", 0) == "none"
    assert resolve_auth_mode(None, "localhost", 0) == "none"
    assert resolve_auth_mode(None, "myhost.example", 0) == "sigv4"
    assert resolve_auth_mode("none", "127.0.0.2", 5) == "none"
