"""Loading the user module, binding handlers and running the pipeline in-process."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sageport.runtime.context import Context
from sageport.runtime.errors import InvocationError, StartupError
from sageport.runtime.loader import UserHandlers, load_user_handlers, locate_program
from sageport.runtime.pipeline import InferencePipeline

LoadSource = Callable[[str], UserHandlers]


@pytest.fixture
def load_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoadSource]:
    """Return a function that writes inference.py and loads its handlers."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    counter = iter(range(1000))

    def load(source: str) -> UserHandlers:
        code_dir = tmp_path / f"code{next(counter)}"
        code_dir.mkdir()
        (code_dir / "inference.py").write_text(textwrap.dedent(source))
        return load_user_handlers(code_dir, "inference.py")

    yield load
    sys.modules.pop("inference", None)


class DoublingModel:
    def predict(self, data: Any) -> Any:
        return np.asarray(data) * 2


def pipeline_for(handlers: UserHandlers, model: Any = None) -> InferencePipeline:
    return InferencePipeline(
        handlers, model or DoublingModel(), Path("/models/m"), "application/json"
    )


def test_handlers_without_context(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return model_dir
        def input_fn(input_data, content_type): return input_data
        def predict_fn(data, model): return data
        def output_fn(prediction, accept): return prediction
        """
    )
    assert not handlers.model_fn.takes_context
    assert handlers.input_fn is not None and not handlers.input_fn.takes_context
    assert not handlers.uses_context


def test_handlers_with_context(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir, context): return model_dir
        def input_fn(input_data, content_type, context=None): return input_data
        def predict_fn(*args): return args[0]
        """
    )
    assert handlers.model_fn.takes_context
    assert handlers.input_fn is not None and handlers.input_fn.takes_context
    assert handlers.predict_fn is not None and handlers.predict_fn.takes_context
    assert handlers.uses_context


def test_handler_with_wrong_arity(load_source: LoadSource) -> None:
    with pytest.raises(StartupError, match=r"expected input_fn\(input_data, content_type"):
        load_source(
            """
            def model_fn(model_dir): return 1
            def input_fn(input_data): return input_data
            """
        )


def test_handler_with_too_many_required_arguments(load_source: LoadSource) -> None:
    with pytest.raises(StartupError, match=r"expected predict_fn\(data, model\[, context\]\)"):
        load_source(
            """
            def model_fn(model_dir): return 1
            def predict_fn(data, model, context, extra): return data
            """
        )


def test_transform_fn_with_input_fn_is_rejected(load_source: LoadSource) -> None:
    with pytest.raises(StartupError) as caught:
        load_source(
            """
            def model_fn(model_dir): return 1
            def transform_fn(model, data, content_type, accept): return data
            def input_fn(input_data, content_type): return input_data
            def output_fn(prediction, accept): return prediction
            """
        )
    assert str(caught.value) == (
        "inference.py defines transform_fn together with input_fn, output_fn; define either "
        "transform_fn or input_fn/predict_fn/output_fn"
    )


def test_missing_model_fn_is_rejected(load_source: LoadSource) -> None:
    with pytest.raises(StartupError, match=r"inference\.py defines no model_fn"):
        load_source("def predict_fn(data, model): return data\n")


def test_import_error_reason(load_source: LoadSource) -> None:
    with pytest.raises(StartupError) as caught:
        load_source("import a_module_that_does_not_exist\n")
    assert str(caught.value) == (
        "importing inference.py raised ModuleNotFoundError: "
        "No module named 'a_module_that_does_not_exist'"
    )


def test_locate_program_missing(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="user code not found"):
        locate_program(tmp_path, "inference.py")


def test_locate_program_without_suffix(tmp_path: Path) -> None:
    (tmp_path / "serve.py").write_text("")
    assert locate_program(tmp_path, "serve") == tmp_path / "serve.py"


def test_model_fn_error_reason(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir):
            raise ValueError("the weights file model.joblib is missing")
        """
    )
    with pytest.raises(StartupError) as caught:
        InferencePipeline.load(handlers, Path("/models/m"), "application/json")
    assert (
        str(caught.value) == "model_fn raised ValueError: the weights file model.joblib is missing"
    )


def test_model_without_predict_needs_predict_fn(load_source: LoadSource) -> None:
    handlers = load_source("def model_fn(model_dir): return {'weights': 1}\n")
    with pytest.raises(StartupError, match="model_fn returned dict, which has no predict method"):
        InferencePipeline.load(handlers, Path("/models/m"), "application/json")


def test_model_fn_gets_context(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir, context):
            return context.system_properties
        def predict_fn(data, model): return data
        """
    )
    pipeline = InferencePipeline.load(handlers, Path("/models/m"), "application/json")
    assert pipeline.model == {"model_dir": "/models/m", "gpu_id": None, "batch_size": 1}


def test_default_pipeline(load_source: LoadSource) -> None:
    handlers = load_source("def model_fn(model_dir): return None\n")
    pipeline = pipeline_for(handlers)
    assert pipeline.invoke(b"[1, 2]", "application/json", None, None) == (
        b"[2, 4]",
        "application/json",
    )
    assert pipeline.invoke(b"1,2", "text/csv", "text/csv", None) == (b"2.0,4.0\n", "text/csv")


def test_output_fn_tuple_declares_content_type(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return None
        def output_fn(prediction, accept): return "ok", "text/plain"
        """
    )
    assert pipeline_for(handlers).invoke(b"[1]", "application/json", None, None) == (
        b"ok",
        "text/plain",
    )


def test_output_fn_without_declaration_uses_accept(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return None
        def output_fn(prediction, accept): return bytearray(b"raw")
        """
    )
    pipeline = pipeline_for(handlers)
    assert pipeline.invoke(b"[1]", "application/json", "text/x-custom, text/csv", None) == (
        bytearray(b"raw"),
        "text/x-custom",
    )
    assert pipeline.invoke(b"[1]", "application/json", "*/*", None) == (
        bytearray(b"raw"),
        "application/json",
    )


def test_output_fn_returning_number_is_an_error(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return None
        def output_fn(prediction, accept): return 42
        """
    )
    with pytest.raises(InvocationError, match="output_fn returned int"):
        pipeline_for(handlers).invoke(b"[1]", "application/json", None, None)


def test_user_input_fn_gets_str_for_json(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return None
        def input_fn(input_data, content_type): return type(input_data).__name__
        def predict_fn(data, model): return data
        def output_fn(prediction, accept): return prediction
        """
    )
    pipeline = pipeline_for(handlers)
    assert pipeline.invoke(b"[1]", "application/json; charset=utf-8", None, None)[0] == b"str"
    assert pipeline.invoke(b"\x00", "application/octet-stream", None, None)[0] == b"bytes"


def test_transform_fn_with_context(load_source: LoadSource) -> None:
    handlers = load_source(
        """
        def model_fn(model_dir): return None
        def transform_fn(model, input_data, content_type, accept, context):
            context.set_response_content_type(0, "text/plain")
            context.response_custom_attributes = "seen=" + context.custom_attributes
            return input_data.upper()
        """
    )
    pipeline = pipeline_for(handlers)
    context = pipeline.new_context({"x-amzn-sagemaker-custom-attributes": "a=1"})
    assert context is not None
    assert pipeline.invoke(b'"hi"', "application/json", None, context) == (b'"HI"', "text/plain")
    assert context.response_custom_attributes == "seen=a=1"


def test_context_request_headers() -> None:
    context = Context(
        "/models/m",
        {"x-amzn-sagemaker-inference-id": "id-1", "content-type": "text/csv"},
    )
    assert context.inference_id == "id-1"
    assert context.custom_attributes is None
    assert context.get_request_header(0, "Content-Type") == "text/csv"
    assert context.get_all_request_header(0)["content-type"] == "text/csv"


def test_context_response_headers() -> None:
    context = Context("/models/m")
    context.set_response_header(0, "X-Model-Version", "3")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "k=v")
    context.set_response_header(0, "content-type", "text/csv")
    assert context.response_headers == {"X-Model-Version": "3"}
    assert context.response_custom_attributes == "k=v"
    assert context.get_response_content_type(0) == "text/csv"


def test_context_rejects_reserved_and_broken_headers() -> None:
    context = Context("/models/m")
    with pytest.raises(ValueError, match="cannot be set by a handler"):
        context.set_response_header(0, "Content-Length", "1")
    with pytest.raises(ValueError, match="line break"):
        context.set_response_header(0, "X-Evil", "a\r\nb: c")
    with pytest.raises(IndexError, match="out of range"):
        context.get_request_header(1, "accept")
