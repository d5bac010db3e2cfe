"""Host and Origin checks: DNS-rebinding pages and cross-site forms against a real server."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from sageport.auth.origin import is_loopback_host
from tests.auth.test_server import create_key, key_environment
from tests.harness import Server

REBIND_HOST = "rebind.attacker.example"
LIST_ENDPOINTS = {
    "X-Amz-Target": "SageMaker.ListEndpoints",
    "Content-Type": "application/x-amz-json-1.1",
}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"127.0.0.1:8765", True),
        (b"127.0.0.1", True),
        (b"127.8.9.10:1", True),
        (b"localhost:8765", True),
        (b"LOCALHOST", True),
        (b"[::1]:8765", True),
        (b"[::1]", True),
        (b"rebind.attacker.example:8765", False),
        (b"localhost.attacker.example", False),
        (b"127.0.0.1.nip.io:8765", False),
        (b"localhost.:8765", False),
        (b"[::1]x", False),
        (b"127.0.0.1:80x", False),
        (b"10.0.0.1:8765", False),
        (b"", False),
        (None, False),
    ],
)
def test_loopback_host_names(host: bytes | None, expected: bool) -> None:
    assert is_loopback_host(host) is expected


def send(
    server: Server, method: str, path: str, headers: dict[str, str], body: bytes = b"{}"
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host="Host" in headers)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def rebind_host(server: Server) -> str:
    return f"{REBIND_HOST}:{server.port}"


def test_control_plane_rejects_foreign_host(server: Server) -> None:
    status, headers, body = send(
        server, "POST", "/", {**LIST_ENDPOINTS, "Host": rebind_host(server)}
    )

    payload = json.loads(body)
    assert status == 403
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert payload["__type"] == "AccessDeniedException"
    assert payload["Message"] == (
        "This server runs without authentication, so it serves only requests addressed to "
        f"localhost, 127.0.0.1 or [::1], not to Host '{rebind_host(server)}'. Use "
        f"http://127.0.0.1:{server.port}, or create an access key with 'sageport keys "
        "create' to turn on SigV4, which accepts any host name."
    )


def test_runtime_rejects_foreign_host(server: Server) -> None:
    status, headers, _ = send(
        server,
        "POST",
        "/endpoints/absent/invocations",
        {"Host": rebind_host(server), "Content-Type": "text/plain"},
        b"hello",
    )

    assert status == 403
    assert headers["x-amzn-errortype"].split(":")[0] == "AccessDeniedException"
    assert headers["connection"] == "close"


def test_console_rejects_foreign_host(server: Server) -> None:
    host = rebind_host(server)
    page_status, page_headers, page = send(server, "GET", "/", {"Host": host}, b"")
    api_status, _, api_body = send(
        server,
        "POST",
        "/console/api/endpoints/absent/invocations",
        {"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"},
        b'{"body": "hello"}',
    )

    assert page_status == 403
    assert page_headers["content-type"] == "text/plain; charset=utf-8"
    assert page.startswith(b"This server runs without authentication")
    assert api_status == 403
    assert json.loads(api_body)["error"]["code"] == "AccessDeniedException"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_hosts_are_served(server: Server, host: str) -> None:
    status, _, body = send(server, "POST", "/", {**LIST_ENDPOINTS, "Host": f"{host}:{server.port}"})

    assert status == 200
    assert json.loads(body) == {"Endpoints": []}


def test_clients_through_localhost_work(server: Server) -> None:
    localhost_url = f"http://localhost:{server.port}"
    client = boto3.session.Session(
        aws_access_key_id="AKIDSAGEPORTTEST",
        aws_secret_access_key="sageport-test-secret",
        region_name="us-east-1",
    ).client("sagemaker", endpoint_url=localhost_url)
    through_localhost = Server(
        server.data_dir, port=server.port, client_keys={"AWS_ENDPOINT_URL": localhost_url}
    )

    listed = client.list_endpoints()
    cli = through_localhost.aws("sagemaker", "list-endpoints")

    assert listed["Endpoints"] == []
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"Endpoints": []}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/", LIST_ENDPOINTS),
        ("/endpoints/absent/invocations", {"Content-Type": "text/plain"}),
    ],
    ids=["control-plane", "runtime"],
)
@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_api_rejects_cross_site_origin(
    server: Server, path: str, headers: dict[str, str], origin: str
) -> None:
    status, response_headers, body = send(
        server, "POST", path, {**headers, "Origin": origin}, b"hello"
    )

    assert status == 403
    assert response_headers["x-amzn-errortype"].split(":")[0] == "AccessDeniedException"
    assert f"another origin ('{origin}')" in json.loads(body)["Message"]


def test_api_accepts_same_origin(server: Server) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    status, _, body = send(server, "POST", "/", {**LIST_ENDPOINTS, "Origin": origin})

    assert status == 200
    assert json.loads(body) == {"Endpoints": []}


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("signed") / "data"
    key = create_key(data_dir)
    instance = Server(data_dir, client_keys=key_environment(key))
    instance.start()
    yield instance
    instance.stop()


def test_sigv4_serves_any_signed_host(signed_server: Server) -> None:
    public_host = f"sageport.test:{signed_server.port}"
    client = signed_server.client("sagemaker")

    def sign_for_public_host(request: Any, **kwargs: Any) -> None:
        # The server is reached on loopback, but the client signs, and sends,
        # the name a proxy or DNS would give it.
        request.headers["Host"] = public_host

    client.meta.events.register("before-sign.sagemaker.ListEndpoints", sign_for_public_host)
    try:
        listed = client.list_endpoints()
    finally:
        client.meta.events.unregister("before-sign.sagemaker.ListEndpoints", sign_for_public_host)

    assert listed["Endpoints"] == []


def test_sigv4_still_rejects_cross_site_origin(signed_server: Server) -> None:
    status, headers, _ = send(
        signed_server, "POST", "/", {**LIST_ENDPOINTS, "Origin": "http://evil.example"}
    )

    assert status == 403
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
