"""The console's JSON API without a browser: listing, describing, invoking, and every
custom URL and header the test-target guard must reject."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sageport.console.headers import HeaderRejected, check_headers
from sageport.console.targets import (
    InvalidOrigin,
    TargetGuard,
    TargetRejected,
    is_forbidden_address,
    normalize_origin,
)
from tests.console.conftest import ConnectionRecorder, TargetServer
from tests.harness import Server, deploy, write_model


def call(
    server: Server,
    path: str,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        server.url + path,
        data=data,
        method="POST" if data else "GET",
        headers=headers or {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def invoke(server: Server, endpoint: str, **envelope: Any) -> tuple[int, Any]:
    return call(server, f"/console/api/endpoints/{endpoint}/invocations", envelope)


def test_list_reports_total_and_variants(console_server: Server, behaviour_endpoint: str) -> None:
    status, payload = call(console_server, "/console/api/endpoints?search=BEHAV&page_size=5")

    assert status == 200
    assert payload["total"] == 1
    assert payload["page"] == 1
    row = payload["endpoints"][0]
    assert row["EndpointName"] == behaviour_endpoint
    assert row["EndpointStatus"] == "InService"
    assert row["Variants"][0]["VariantName"] == "AllTraffic"
    assert row["Variants"][0]["InstanceType"] == "ml.m5.large"


def test_list_rejects_unknown_status(console_server: Server) -> None:
    status, payload = call(console_server, "/console/api/endpoints?status=Sleeping")

    assert status == 400
    assert payload["error"]["code"] == "BadRequest"
    assert "Sleeping" in payload["error"]["message"]


def test_describe_unknown_endpoint_is_404(console_server: Server) -> None:
    status, payload = call(console_server, "/console/api/endpoints/no-such-endpoint")

    assert status == 404
    assert payload["error"]["code"] == "NotFound"


@pytest.mark.parametrize("name", ["..%2F..%2Fsecret", "..%2Fsecret", "a.b"])
def test_logs_invalid_name_is_400(console_server: Server, name: str) -> None:
    secret = console_server.data_dir / "secret" / "v" / "x.log"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("SECRET-LINE")

    status, payload = call(console_server, f"/console/api/endpoints/{name}/logs")

    assert status == 400
    assert payload["error"]["code"] == "BadRequest"
    assert "Invalid endpoint name" in payload["error"]["message"]
    assert "SECRET-LINE" not in json.dumps(payload)


def test_invoke_returns_timings_and_preview(
    console_server: Server, behaviour_endpoint: str
) -> None:
    status, payload = invoke(
        console_server, behaviour_endpoint, body='{"a": 1}', content_type="application/json"
    )

    assert status == 200
    assert payload["status"] == "Complete"
    assert payload["variant"] == "AllTraffic"
    assert payload["execution_ms"] > 0
    assert payload["model_ms"] is not None
    assert payload["completed_at"] >= payload["sent_at"]
    assert json.loads(payload["body"]["text"]) == {
        "echo": {"a": 1},
        "content_type": "application/json",
    }
    with urllib.request.urlopen(console_server.url + payload["body"]["download"]) as response:
        assert json.loads(response.read())["echo"] == {"a": 1}
        assert response.headers["Content-Disposition"].startswith("attachment")


def test_invoke_failing_model_reports_model_error(
    console_server: Server, behaviour_endpoint: str
) -> None:
    status, payload = invoke(
        console_server,
        behaviour_endpoint,
        body='{"action": "fail"}',
        content_type="application/json",
    )

    assert status == 200
    assert payload["status"] == "Failed"
    assert payload["error"]["code"] == "ModelError"
    assert payload["error"]["original_status"] == 500
    assert "the model rejects this input" in payload["error"]["original_message"]


def test_invoke_file_body_as_base64(console_server: Server, behaviour_endpoint: str) -> None:
    status, payload = invoke(
        console_server, behaviour_endpoint, body_base64="aGVsbG8=", content_type="text/plain"
    )

    assert status == 200
    assert json.loads(payload["body"]["text"])["echo"] == {"text": "hello"}


def test_target_variant_unknown_fails(console_server: Server, behaviour_endpoint: str) -> None:
    status, payload = invoke(console_server, behaviour_endpoint, body="{}", target_variant="Nope")

    assert status == 200
    assert payload["status"] == "Failed"
    assert payload["error"]["code"] == "ValidationError"
    assert "Nope" in payload["error"]["message"]


REJECTED_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]:8080/",
    "http://[::ffff:169.254.169.254]/",
    "file:///etc/passwd",
    "ftp://127.0.0.1/",
    "gopher://127.0.0.1:70/",
    "not a url",
    "//127.0.0.1/",
]


@pytest.mark.parametrize("url", REJECTED_TARGETS)
def test_custom_url_rejected(console_server: Server, behaviour_endpoint: str, url: str) -> None:
    status, payload = invoke(console_server, behaviour_endpoint, body="{}", custom_url=url)

    assert status == 403
    assert payload["error"]["code"] == "TestTargetRejected"
    assert "--allow-test-target" in payload["error"]["message"]


def test_unlisted_origin_rejected_unconnected(
    console_server: Server, behaviour_endpoint: str, recorder: ConnectionRecorder
) -> None:
    before = recorder.connections

    status, payload = invoke(
        console_server, behaviour_endpoint, body="{}", custom_url=recorder.origin + "/invocations"
    )

    assert status == 403
    assert payload["error"]["code"] == "TestTargetRejected"
    assert recorder.connections == before


def test_near_miss_origins_rejected(
    console_server: Server, behaviour_endpoint: str, allowed_origin: str
) -> None:
    port = allowed_origin.rsplit(":", 1)[1]
    near_misses = [
        f"https://127.0.0.1:{port}/",
        f"http://127.0.0.2:{port}/",
        f"http://localhost:{port}/",
        f"http://user:secret@127.0.0.1:{port}/",
        f"http://127.0.0.1:{int(port) + 1}/",
    ]
    bodies = set()
    for url in near_misses:
        status, payload = invoke(console_server, behaviour_endpoint, body="{}", custom_url=url)
        assert status == 403, url
        bodies.add(json.dumps(payload))

    # Every rejection reads the same, so the feature cannot tell hosts or ports apart.
    assert len(bodies) == 1


def test_allowed_origin_is_tried(
    console_server: Server, behaviour_endpoint: str, allowed_origin: str
) -> None:
    # Nothing listens on the allowed port, so the guard lets the request through
    # and the connection itself fails: a Failed card, not a rejection.
    status, payload = invoke(
        console_server, behaviour_endpoint, body="{}", custom_url=allowed_origin + "/invocations"
    )

    assert status == 200
    assert payload["status"] == "Failed"
    assert payload["error"]["code"] == "TestTargetFailed"


REJECTED_HEADERS = [
    ("Host", "example.com"),
    ("Cookie", "session=1"),
    ("Authorization", "AWS4-HMAC-SHA256 Credential=x"),
    ("Connection", "close"),
    ("Keep-Alive", "timeout=5"),
    ("Transfer-Encoding", "chunked"),
    ("TE", "trailers"),
    ("Trailer", "X-Checksum"),
    ("Upgrade", "websocket"),
    ("Proxy-Authorization", "Basic eA=="),
    ("Proxy-Authenticate", "Basic"),
    ("Content-Length", "5"),
    ("X-Forwarded-For", "10.0.0.1"),
    ("X-Amzn-SageMaker-Custom-Attributes\r\nHost", "x"),
    ("X-Amzn-SageMaker-Custom-Attributes", "a\r\nHost: evil"),
    ("X-Amzn-SageMaker-Custom-Attributes", "a\nb"),
    ("Accept", "a\rb"),
    ("Bad Name", "x"),
    ("", "x"),
]


@pytest.mark.parametrize(("name", "value"), REJECTED_HEADERS)
def test_header_rejected(
    console_server: Server, behaviour_endpoint: str, calls_file: Path, name: str, value: str
) -> None:
    calls_before = calls_file.read_text().count("call")

    status, payload = invoke(console_server, behaviour_endpoint, body="{}", headers=[[name, value]])

    assert status == 400
    assert payload["error"]["code"] == "HeaderRejected"
    assert calls_file.read_text().count("call") == calls_before


def test_sagemaker_headers_allowed() -> None:
    headers = check_headers(
        [
            ("content-type", "application/json"),
            ("x-amzn-sagemaker-custom-attributes", "trace=1"),
            ("X-Amzn-SageMaker-Inference-Id", "abc"),
        ]
    )

    assert headers == {
        "Content-Type": "application/json",
        "X-Amzn-SageMaker-Custom-Attributes": "trace=1",
        "X-Amzn-SageMaker-Inference-Id": "abc",
    }


def test_too_many_headers_rejected() -> None:
    with pytest.raises(HeaderRejected):
        check_headers([("Accept", "x")] * 40)


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("HTTP://LocalHost", "http://localhost:80"),
        ("https://models.internal/", "https://models.internal:443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_normalize_origin(origin: str, normalized: str) -> None:
    assert normalize_origin(origin) == normalized


@pytest.mark.parametrize(
    "origin", ["ftp://host", "http://host/path", "http://u:p@host", "127.0.0.1:80", "http://"]
)
def test_normalize_origin_rejects(origin: str) -> None:
    with pytest.raises(InvalidOrigin):
        normalize_origin(origin)


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("169.254.169.254", True),
        ("169.254.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fd00:ec2::254", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
    ],
)
def test_forbidden_addresses(address: str, forbidden: bool) -> None:
    assert is_forbidden_address(address) is forbidden


@pytest.mark.parametrize(
    "origin",
    [
        "http://169.254.169.254:80",
        "http://[fe80::1]:80",
        "http://[::ffff:169.254.169.254]:80",
        "http://[fd00:ec2::254]:80",
    ],
)
def test_metadata_rejected_even_if_allowed(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    # Any attempt to open a socket fails the test, so a rejection proves that the
    # guard decided before connecting and no packet left the machine.
    def no_connect(*args: object, **kwargs: object) -> None:
        raise AssertionError("the guard opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", no_connect)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", no_connect)
    monkeypatch.setattr(asyncio.BaseEventLoop, "sock_connect", no_connect)
    guard = TargetGuard((origin,))

    with pytest.raises(TargetRejected):
        asyncio.run(guard.send(origin + "/latest/meta-data/", b"{}", {}))


def test_pinned_connection_reaches_allowed_loopback(recorder: ConnectionRecorder) -> None:
    guard = TargetGuard((recorder.origin,))
    before = recorder.connections

    # The recorder closes every connection at once, so the send fails after connecting.
    with pytest.raises(Exception, match="custom URL"):
        asyncio.run(guard.send(recorder.origin + "/invocations", b"{}", {}))

    assert recorder.connections == before + 1


def test_list_pages_with_accurate_total(
    console_server: Server, behaviour_endpoint: str, tmp_path: Path
) -> None:
    # A second endpoint whose model never loads, so the list contains two statuses.
    archive = write_model(tmp_path, "def model_fn(model_dir):\n    raise OSError('no weights')\n")
    deploy(console_server, "paging-broken", str(archive))

    status, first = call(
        console_server, "/console/api/endpoints?page_size=1&sort=Name&order=Ascending"
    )
    _, second = call(
        console_server, "/console/api/endpoints?page_size=1&page=2&sort=Name&order=Ascending"
    )
    _, failed = call(console_server, "/console/api/endpoints?status=Failed")

    assert status == 200
    assert first["total"] == second["total"] >= 2
    assert first["endpoints"][0]["EndpointName"] < second["endpoints"][0]["EndpointName"]
    assert [row["EndpointName"] for row in failed["endpoints"]] == ["paging-broken"]
    assert failed["total"] == 1


def test_custom_url_sends_only_allowed_headers(
    console_server: Server, behaviour_endpoint: str, target_server: TargetServer
) -> None:
    target_server.requests.clear()

    status, payload = invoke(
        console_server,
        behaviour_endpoint,
        body='{"x": 1}',
        content_type="application/json",
        accept="application/json",
        target_variant="Blue",
        custom_url=target_server.origin + "/invocations",
        headers=[["X-Amzn-SageMaker-Custom-Attributes", "trace=1"]],
    )

    assert status == 200
    assert payload["status"] == "Complete"
    assert payload["custom_attributes"] == "from-target"
    assert json.loads(payload["body"]["text"]) == {"path": "/invocations", "body": '{"x": 1}'}
    [received] = target_server.requests
    # Host, Content-Length and Connection: close are the client's own; the rest are the rows.
    assert {name.lower() for name in received["headers"]} == {  # type: ignore[attr-defined]
        "host",
        "connection",
        "content-length",
        "content-type",
        "accept",
        "x-amzn-sagemaker-custom-attributes",
        "x-amzn-sagemaker-target-variant",
    }
    assert received["headers"]["Host"] == target_server.origin.removeprefix("http://")  # type: ignore[index]


def test_custom_url_redirect_not_followed(
    console_server: Server,
    behaviour_endpoint: str,
    target_server: TargetServer,
    recorder: ConnectionRecorder,
) -> None:
    # The target redirects to the recorder, which must see no connection.
    before = recorder.connections

    status, payload = invoke(
        console_server, behaviour_endpoint, body="{}", custom_url=target_server.origin + "/redirect"
    )

    assert status == 200
    assert payload["status"] == "Failed"
    assert payload["error"]["original_status"] == 302
    assert recorder.connections == before


def test_custom_url_oversized_response_fails(
    console_server: Server, behaviour_endpoint: str, target_server: TargetServer
) -> None:
    status, payload = invoke(
        console_server, behaviour_endpoint, body="{}", custom_url=target_server.origin + "/huge"
    )

    assert status == 200
    assert payload["status"] == "Failed"
    assert payload["error"]["code"] == "TestTargetFailed"
    assert "25 MB" in payload["error"]["message"]


def test_hostname_resolved_once(
    monkeypatch: pytest.MonkeyPatch, target_server: TargetServer
) -> None:
    # The first lookup answers loopback, every later one the metadata address.
    # The request must reach the target server, so no second lookup was used.
    port = int(target_server.origin.rsplit(":", 1)[1])
    lookups: list[str] = []
    real_getaddrinfo = asyncio.BaseEventLoop.getaddrinfo

    async def rebinding(self: asyncio.BaseEventLoop, host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        answer = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return await real_getaddrinfo(self, answer, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", rebinding)
    guard = TargetGuard((f"http://rebind.test:{port}",))
    target_server.requests.clear()

    response = asyncio.run(guard.send(f"http://rebind.test:{port}/invocations", b"{}", {}))

    assert response.status == 200
    assert lookups == ["rebind.test"]
    assert target_server.requests[0]["headers"]["Host"] == f"rebind.test:{port}"  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"Content-Type": "text/plain"}, "BadRequest"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, "BadRequest"),
        (
            {"Content-Type": "application/json", "Origin": "http://evil.example"},
            "CrossOriginRejected",
        ),
    ],
)
def test_cross_site_post_rejected(
    console_server: Server,
    behaviour_endpoint: str,
    calls_file: Path,
    headers: dict[str, str],
    code: str,
) -> None:
    calls_before = calls_file.read_text().count("call")

    status, payload = call(
        console_server,
        f"/console/api/endpoints/{behaviour_endpoint}/invocations",
        {"body": "{}"},
        headers,
    )

    assert status in (400, 403)
    assert payload["error"]["code"] == code
    assert calls_file.read_text().count("call") == calls_before


def test_same_origin_post_accepted(console_server: Server, behaviour_endpoint: str) -> None:
    status, payload = call(
        console_server,
        f"/console/api/endpoints/{behaviour_endpoint}/invocations",
        {"body": "{}", "content_type": "application/json"},
        {"Content-Type": "application/json", "Origin": console_server.url},
    )

    assert status == 200
    assert payload["status"] == "Complete"
