"""Servers of the user's own through the image table, and models with requirements.txt."""

from __future__ import annotations

import base64
import hashlib
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import Server, deploy, wait_for_status, write_model

# A model server that follows SageMaker's container contract with the stdlib only.
OWN_SERVER = """
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

assert sys.argv[1:] == ["serve"], sys.argv
MODEL_DIR = os.environ["SM_MODEL_DIR"]
GREETING = open(os.path.join(MODEL_DIR, "greeting.txt"), "rb").read()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = GREETING + b", " + body
        self.send_response(200)
        self.send_header("Content-Type", "text/x-greeting")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


HTTPServer(("127.0.0.1", int(os.environ["SAGEMAKER_BIND_TO_PORT"])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("own-server")
    script = root / "greeter.py"
    script.write_text(OWN_SERVER)
    table = root / "images.toml"
    table.write_text(
        textwrap.dedent(
            f"""
            [[image]]
            match = "example.com/greeter:*"
            command = [{sys.executable!r}, {str(script)!r}]

            [[image]]
            match = "example.com/missing:*"
            command = ["/nonexistent/server-binary"]

            [[image]]
            match = "example.com/tensorflow-serving:*"
            runtime = "reject"
            """
        )
    )
    server = Server(root / "data", extra_args=["--image-table", str(table)])
    server.start()
    yield server
    server.stop()


def deploy_image(server: Server, name: str, image: str, archive: Path) -> dict[str, Any]:
    sagemaker = server.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={"Image": image, "ModelDataUrl": str(archive)},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
    )
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
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_for_status(server, name, {"InService", "Failed"})


def greeting_archive(directory: Path) -> Path:
    return write_model(directory, "", {"greeting.txt": b"hello"})


def test_own_server_serves_invocations(own_server: Server, tmp_path: Path) -> None:
    described = deploy_image(
        own_server, "greeter", "example.com/greeter:1.0", greeting_archive(tmp_path)
    )
    response = own_server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="greeter", Body=b"world", ContentType="text/plain"
    )

    assert described["EndpointStatus"] == "InService"
    assert described["ProductionVariants"][0]["DeployedImages"][0]["SpecifiedImage"] == (
        "example.com/greeter:1.0"
    )
    assert response["Body"].read() == b"hello, world"
    assert response["ContentType"] == "text/x-greeting"


def test_rejected_image_fails_endpoint(own_server: Server, tmp_path: Path) -> None:
    described = deploy_image(
        own_server, "rejected", "example.com/tensorflow-serving:2", greeting_archive(tmp_path)
    )

    assert described["EndpointStatus"] == "Failed"
    assert "cannot run image example.com/tensorflow-serving:2" in str(described["FailureReason"])


def test_missing_command_fails_endpoint(own_server: Server, tmp_path: Path) -> None:
    described = deploy_image(
        own_server, "no-binary", "example.com/missing:1", greeting_archive(tmp_path)
    )

    assert described["EndpointStatus"] == "Failed"
    assert "Could not start /nonexistent/server-binary" in str(described["FailureReason"])


def test_unlisted_image_runs_built_in(own_server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    return b"built-in", "text/plain"
""",
    )

    described = deploy_image(own_server, "builtin-image", "anything/else:latest", archive)
    response = own_server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName="builtin-image", Body=b"x", ContentType="text/plain"
    )

    assert described["EndpointStatus"] == "InService"
    assert response["Body"].read() == b"built-in"


def build_wheel(directory: Path, name: str, value: str) -> Path:
    """Write a minimal pure-Python wheel by hand, so installing it needs no network."""
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n".encode(),
        f"{name}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
        ),
        f"{name}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record_lines = []
    for path, content in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={digest},{len(content)}")
    record_lines.append(f"{name}-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, content in files.items():
            archive.writestr(path, content)
        archive.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record_lines) + "\n")
    return wheel


REQUIREMENTS_MODEL = """
import sageport_tiny

def model_fn(model_dir):
    return sageport_tiny.VALUE

def transform_fn(model, data, content_type, accept):
    return model, "text/plain"
"""


def test_requirements_install_into_own_environment(server: Server, tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path, "sageport_tiny", "from the wheel")
    archive = write_model(
        tmp_path / "model", REQUIREMENTS_MODEL, {"code/requirements.txt": f"{wheel}\n".encode()}
    )

    first = deploy(server, "with-requirements", str(archive))
    second = deploy(server, "same-requirements", str(archive))
    answer = (
        server.client("sagemaker-runtime")
        .invoke_endpoint(EndpointName="with-requirements", Body=b"x", ContentType="text/plain")[
            "Body"
        ]
        .read()
    )

    assert first["EndpointStatus"] == "InService", first.get("FailureReason")
    assert second["EndpointStatus"] == "InService"
    assert answer == b"from the wheel"
    with pytest.raises(ImportError):
        __import__("sageport_tiny")
    assert "Reusing the environment" in server.output()


def test_bad_requirement_fails_endpoint(server: Server, tmp_path: Path) -> None:
    archive = write_model(
        tmp_path,
        REQUIREMENTS_MODEL,
        {"code/requirements.txt": b"./no-such-package-1.0-py3-none-any.whl\n"},
    )

    described = deploy(server, "bad-requirements", str(archive))

    assert described["EndpointStatus"] == "Failed"
    reason = str(described["FailureReason"])
    assert reason.startswith("Installing the model's code/requirements.txt failed")
    assert "no-such-package" in reason
