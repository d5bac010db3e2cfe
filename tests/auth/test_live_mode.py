"""A server started without --auth and without keys: the first key turns SigV4 on while it runs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from tests.auth.test_server import create_key, error_of, key_environment, retry_for, sageport
from tests.harness import Server, wait_until


@pytest.fixture
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    instance = Server(tmp_path_factory.mktemp("live") / "data")
    instance.start()
    yield instance
    instance.stop()


def unsigned_list(server: Server) -> int:
    request = urllib.request.Request(
        server.url + "/",
        data=b"{}",
        headers={
            "X-Amz-Target": "SageMaker.ListEndpoints",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_first_key_switches_to_sigv4(open_server: Server) -> None:
    before = unsigned_list(open_server)
    created = sageport("keys", "create", "--data-dir", str(open_server.data_dir))
    key = json.loads(created.stdout)["AccessKey"]
    signed = Server(open_server.data_dir, port=open_server.port, client_keys=key_environment(key))

    switched = wait_until(lambda: unsigned_list(open_server) == 403, timeout=10)
    listed = retry_for(2.5, lambda: signed.client("sagemaker").list_endpoints())
    with pytest.raises(urllib.error.HTTPError) as console:
        urllib.request.urlopen(open_server.url + "/console/api/endpoints", timeout=10)

    assert before == 200
    assert created.returncode == 0
    assert "This is the first access key" in created.stderr
    assert "switches to sigv4 within a second" in created.stderr
    assert switched
    assert listed["Endpoints"] == []
    assert console.value.code == 401
    assert "authentication switched from none to sigv4" in open_server.output()
    assert (open_server.data_dir / "console-token").exists()


def test_deleting_last_key_keeps_sigv4(open_server: Server) -> None:
    key = create_key(open_server.data_dir)
    assert wait_until(lambda: unsigned_list(open_server) == 403, timeout=10)

    sageport("keys", "delete", key["AccessKeyId"], "--data-dir", str(open_server.data_dir))
    # The server notices on the next request after the key ring reloads.
    reported = wait_until(
        lambda: (
            unsigned_list(open_server) == 403 and "No access keys are left" in open_server.output()
        ),
        timeout=10,
    )
    signed = Server(open_server.data_dir, port=open_server.port, client_keys=key_environment(key))
    with pytest.raises(ClientError) as excinfo:
        signed.client("sagemaker").list_endpoints()

    assert reported
    assert unsigned_list(open_server) == 403
    assert error_of(excinfo)[0] == "InvalidSignatureException"


def test_second_key_note(tmp_path_factory: pytest.TempPathFactory) -> None:
    data_dir = tmp_path_factory.mktemp("note") / "data"
    create_key(data_dir)

    second = sageport("keys", "create", "--data-dir", str(data_dir))

    assert second.returncode == 0
    assert second.stderr.strip() == (
        f"A running 'sageport serve' that uses {data_dir / 'credentials.json'} accepts this "
        "key within a second."
    )


def test_explicit_none_ignores_keys(tmp_path_factory: pytest.TempPathFactory) -> None:
    server = Server(tmp_path_factory.mktemp("fixed") / "data", extra_args=["--auth", "none"])
    server.start()
    try:
        create_key(server.data_dir)
        # Two reload intervals of the key ring.
        wait_until(lambda: False, timeout=2.5)
        status = unsigned_list(server)
    finally:
        server.stop()

    assert status == 200
    assert "fixed by --auth none" in server.output()
