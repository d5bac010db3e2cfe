"""The SageMaker Python SDK (v2) against Sageport: Predictor, Model.deploy, SKLearnModel.

The SDK talks to three services: SageMaker and its runtime (Sageport) and, for
``SKLearnModel(entry_point=...)``, S3, where it uploads the repacked model.
Sageport serves no S3, so that test runs moto's S3 server on loopback. Every
other connection is refused by a guard, so nothing here reaches AWS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import sagemaker
from moto.server import ThreadedMotoServer
from sagemaker.deserializers import CSVDeserializer, JSONDeserializer, NumpyDeserializer
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import CSVSerializer, JSONSerializer, NumpySerializer
from sagemaker.sklearn.model import SKLearnModel

from tests.harness import REPO, Server, client_environment

ROLE = "arn:aws:iam::123456789012:role/sageport"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
SPECIES = ["setosa", "virginica"]
# The SDK reports usage to AWS unless configured not to.
SDK_CONFIG = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any name lookup or connection this test process makes beyond loopback."""
    connect = socket.socket.connect
    getaddrinfo = socket.getaddrinfo

    def guarded_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookups of {host}")
        return getaddrinfo(host, *args, **kwargs)

    def guarded(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in LOOPBACK:
                raise ConnectionRefusedError(f"test guard: no connections to {host}")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)


@pytest.fixture(autouse=True)
def quick_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the SDK's endpoint waiter poll every 0.2 s instead of every 30 s."""
    fast_time = types.SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith("__")}
    )
    fast_time.sleep = lambda seconds: time.sleep(min(seconds, 0.2))
    monkeypatch.setattr(sagemaker.session, "time", fast_time)


def sdk_session(server: Server, default_bucket: str | None = None) -> sagemaker.Session:
    environment = client_environment(server.url)
    boto_session = boto3.Session(
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    return sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=server.client("sagemaker"),
        sagemaker_runtime_client=server.client("sagemaker-runtime"),
        sagemaker_config=SDK_CONFIG,
        default_bucket=default_bucket,
    )


@pytest.fixture(scope="module")
def iris_archive(iris_model: Path) -> Path:
    return iris_model


def test_model_deploy_predict_delete(server: Server, iris_archive: Path) -> None:
    session = sdk_session(server)
    model = Model(
        image_uri="sageport/sklearn",
        model_data=f"file://{iris_archive}",
        role=ROLE,
        sagemaker_session=session,
        predictor_cls=Predictor,
        name="sdk-iris-model",
    )

    predictor = model.deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-iris"
    )
    assert isinstance(predictor, Predictor)
    predictor.serializer = JSONSerializer()
    predictor.deserializer = JSONDeserializer()
    as_json = predictor.predict(ROWS)
    predictor.serializer = CSVSerializer()
    predictor.deserializer = CSVDeserializer()
    as_csv = predictor.predict(ROWS, initial_args={"Accept": "text/csv"})
    predictor.serializer = NumpySerializer()
    predictor.deserializer = NumpyDeserializer(allow_pickle=False)
    as_npy = predictor.predict(np.array(ROWS), initial_args={"Accept": "application/x-npy"})
    predictor.delete_model()
    predictor.delete_endpoint()

    assert as_json == SPECIES
    assert as_csv == [[name] for name in SPECIES]
    assert as_npy.tolist() == SPECIES
    remaining = server.client("sagemaker").list_endpoints(NameContains="sdk-iris")["Endpoints"]
    assert [e["EndpointStatus"] for e in remaining] in ([], ["Deleting"])
    assert server.client("sagemaker").list_models(NameContains="sdk-iris-model")["Models"] == []


def test_predictor_for_existing_endpoint(server: Server, iris_archive: Path) -> None:
    session = sdk_session(server)
    Model(
        image_uri="sageport/sklearn",
        model_data=f"file://{iris_archive}",
        role=ROLE,
        sagemaker_session=session,
        name="sdk-existing",
    ).deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-existing")

    predictor = Predictor(
        "sdk-existing",
        sagemaker_session=session,
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )

    assert predictor.predict(ROWS) == SPECIES


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    # Port 0: the server binds a free port itself, so no other process can take it first.
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    yield f"http://{host}:{port}"
    moto.stop()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory, moto_s3: str) -> Iterator[Server]:
    """A Sageport server whose model data fetches from the moto S3 server."""
    instance = Server(
        tmp_path_factory.mktemp("sdk-s3") / "data",
        extra_environment={"AWS_ENDPOINT_URL_S3": moto_s3},
    )
    instance.start()
    yield instance
    instance.stop()


def test_sklearn_model_with_entry_point(
    s3_server: Server, moto_s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK makes S3 clients of its own for uploads; this points all of them at moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    session = sdk_session(s3_server, default_bucket="sageport-sdk")
    session.boto_session.client("s3").create_bucket(Bucket="sageport-sdk")
    weights = tmp_path / "weights"
    subprocess.run(
        [sys.executable, str(REPO / "examples" / "sklearn-iris" / "train.py"), "--output",
         str(weights / "model.tar.gz")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    model = SKLearnModel(
        entry_point=str(REPO / "examples" / "sklearn-iris" / "code" / "inference.py"),
        model_data=f"file://{weights / 'model.tar.gz'}",
        role=ROLE,
        framework_version="1.2-1",
        sagemaker_session=session,
    )

    predictor = model.deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-sklearn"
    )
    answer = predictor.predict(np.array(ROWS))
    description = s3_server.client("sagemaker").describe_endpoint(EndpointName="sdk-sklearn")
    predictor.delete_endpoint()

    assert description["EndpointStatus"] == "InService"
    assert np.asarray(answer).tolist() == SPECIES
