"""The runtime's multi-model mode: the /models routes, per worker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.runtime.conftest import StartRuntime, exchange, write_model

MODEL_SOURCE = """
import os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "name.txt")) as source:
        return source.read()

def transform_fn(model, input_data, content_type, accept):
    return model + ":" + input_data, "text/plain"
"""

MULTI_MODEL = {"SAGEMAKER_MULTI_MODEL": "true"}


def make_model(root: Path, name: str) -> Path:
    model_dir = write_model(root / name, MODEL_SOURCE)
    (model_dir / "name.txt").write_text(name)
    return model_dir


def load_body(name: str, model_dir: Path) -> bytes:
    return json.dumps({"model_name": name, "url": str(model_dir)}).encode()


def test_load_list_invoke_and_unload(start_runtime: StartRuntime, tmp_path: Path) -> None:
    empty = tmp_path / "instance"
    empty.mkdir()
    first = make_model(tmp_path, "first")
    second = make_model(tmp_path, "second")
    runtime = start_runtime(empty, env=MULTI_MODEL)

    loaded_first = runtime.request("POST", "/models", load_body("first", first))
    loaded_second = runtime.request("POST", "/models", load_body("second", second))
    listed = runtime.request("GET", "/models")
    answer_first = runtime.request(
        "POST", "/models/first/invoke", b"1", {"Content-Type": "text/csv"}
    )
    answer_second = runtime.request(
        "POST", "/models/second/invoke", b"2", {"Content-Type": "text/csv"}
    )
    unloaded = runtime.request("DELETE", "/models/first")
    after_unload = runtime.request("POST", "/models/first/invoke", b"3")

    assert loaded_first.status == 200
    assert json.loads(loaded_first.body)["modelName"] == "first"
    assert loaded_second.status == 200
    assert [model["modelName"] for model in json.loads(listed.body)["models"]] == [
        "first",
        "second",
    ]
    assert (answer_first.status, answer_first.body) == (200, b"first:1")
    assert (answer_second.status, answer_second.body) == (200, b"second:2")
    assert unloaded.status == 200
    assert after_unload.status == 404
    assert b"model first is not loaded" in after_unload.body


def test_plain_invocations_rejected(start_runtime: StartRuntime, tmp_path: Path) -> None:
    empty = tmp_path / "instance"
    empty.mkdir()
    runtime = start_runtime(empty, env=MULTI_MODEL)

    reply = runtime.request("POST", "/invocations", b"1")

    assert reply.status == 400
    assert b"POST /models/{name}/invoke" in reply.body


def test_missing_directory_is_not_found(start_runtime: StartRuntime, tmp_path: Path) -> None:
    empty = tmp_path / "instance"
    empty.mkdir()
    runtime = start_runtime(empty, env=MULTI_MODEL)

    reply = runtime.request("POST", "/models", load_body("ghost", tmp_path / "ghost"))

    assert reply.status == 404
    assert b"does not exist" in reply.body


def test_every_worker_loads_and_drops(start_runtime: StartRuntime, tmp_path: Path) -> None:
    empty = tmp_path / "instance"
    empty.mkdir()
    model_dir = make_model(tmp_path, "shared")
    runtime = start_runtime(empty, env={**MULTI_MODEL, "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    first_worker = runtime.connect()
    second_worker = runtime.connect()
    try:
        # A worker serves one connection at a time, so two open connections
        # are served by two different workers.
        loaded = exchange(first_worker, "POST", "/models", load_body("shared", model_dir))
        without_url = exchange(second_worker, "POST", "/models/shared/invoke", b"1")
        with_url = exchange(
            second_worker,
            "POST",
            "/models/shared/invoke",
            b"2",
            {"Content-Type": "text/csv", "X-Sageport-Model-Url": str(model_dir)},
        )
        shutil.rmtree(model_dir)
        listed_first = exchange(first_worker, "GET", "/models")
        listed_second = exchange(second_worker, "GET", "/models")
    finally:
        first_worker.close()
        second_worker.close()

    assert loaded.status == 200
    assert without_url.status == 404
    assert (with_url.status, with_url.body) == (200, b"shared:2")
    assert json.loads(listed_first.body) == {"models": []}
    assert json.loads(listed_second.body) == {"models": []}


# Each model's helpers return the model's name: utils is imported with the
# module, helpers when a request arrives, and labels is a package.
HELPER_USER = """
import utils
from labels.names import LABEL


def model_fn(model_dir):
    return utils.NAME


def transform_fn(model, input_data, content_type, accept):
    import helpers

    return ",".join([model, utils.NAME, helpers.NAME, LABEL]), "text/plain"
"""


def make_model_with_helpers(root: Path, name: str) -> Path:
    model_dir = write_model(root / name, HELPER_USER)
    code = model_dir / "code"
    (code / "utils.py").write_text(f"NAME = {name!r}\n")
    (code / "helpers.py").write_text(f"NAME = {name!r}\n")
    (code / "labels").mkdir()
    (code / "labels" / "__init__.py").write_text("")
    (code / "labels" / "names.py").write_text(f"LABEL = {name!r}\n")
    return model_dir


def test_models_import_their_own_helpers(start_runtime: StartRuntime, tmp_path: Path) -> None:
    models = {name: make_model_with_helpers(tmp_path, name) for name in ("first", "second")}
    (tmp_path / "instance").mkdir()
    runtime = start_runtime(tmp_path / "instance", env=MULTI_MODEL)
    conn = runtime.connect()
    try:
        loads = [
            exchange(conn, "POST", "/models", load_body(name, model_dir))
            for name, model_dir in models.items()
        ]
        answers = [
            exchange(conn, "POST", f"/models/{name}/invoke", b"", {"Content-Type": "text/plain"})
            for name in ("second", "first", "second")
        ]
    finally:
        conn.close()

    assert [load.status for load in loads] == [200, 200]
    assert [(answer.status, answer.body) for answer in answers] == [
        (200, b"second,second,second,second"),
        (200, b"first,first,first,first"),
        (200, b"second,second,second,second"),
    ]
