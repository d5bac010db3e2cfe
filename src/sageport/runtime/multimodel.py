"""Multi-model mode of a worker: load, list, unload and invoke models by name.

With ``SAGEMAKER_MULTI_MODEL=true`` a worker loads no model at start-up and
serves the multi-model container contract of SageMaker's model server
instead of ``POST /invocations``:

- ``POST /models`` with ``{"model_name": ..., "url": <local directory>}``
  imports the directory's ``code/<SAGEMAKER_PROGRAM>`` (or the instance's own
  code directory when the directory has none) and calls ``model_fn`` on it;
- ``GET /models`` lists the loaded models;
- ``DELETE /models/{name}`` unloads one;
- ``POST /models/{name}/invoke`` runs one invocation on it.

Each worker keeps its own models. The Sageport server sends the model's
directory in ``X-Sageport-Model-Url`` with every request, so a worker that has
not loaded that model loads it on the spot. Every worker of an instance can
thus serve every model the instance loaded. A model whose directory has
disappeared is dropped before the next request, which is how an unload requested from one
worker reaches the others: the server removes the directory it gave.

A model's code runs inside its own ``CodeScope`` (runtime/loader.py), so two
models that both ship ``code/utils.py`` each import their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sageport.runtime.config import RuntimeConfig
from sageport.runtime.errors import StartupError
from sageport.runtime.loader import (
    CodeScope,
    Handler,
    UserHandlers,
    bind_handlers,
    import_user_module,
    load_user_handlers,
    locate_program,
)
from sageport.runtime.pipeline import InferencePipeline
from sageport.runtime.protocol import Request, Response

if TYPE_CHECKING:
    from sageport.runtime.worker import InvocationServer

logger = logging.getLogger("sageport.runtime")

# The header that carries a model's local directory on an invocation.
MODEL_URL_HEADER = "x-sageport-model-url"
_JSON = ("Content-Type", "application/json")
_PREFIX = "/models/"
_INVOKE_SUFFIX = "/invoke"


class LoadedModel:
    """A model loaded in this worker, the directory it came from and what it cost."""

    __slots__ = ("code_scope", "memory_bytes", "pipeline", "url")

    def __init__(
        self,
        pipeline: InferencePipeline,
        code_scope: CodeScope | None,
        url: str,
        memory_bytes: int | None,
    ) -> None:
        self.pipeline = pipeline
        # None when the model runs the instance's code rather than code of its own.
        self.code_scope = code_scope
        self.url = url
        self.memory_bytes = memory_bytes


class MultiModelServer:
    """The ``/models`` routes of one worker."""

    def __init__(self, config: RuntimeConfig, server: InvocationServer) -> None:
        self.config = config
        self.server = server
        self.models: OrderedDict[str, LoadedModel] = OrderedDict()

    def dispatch(self, request: Request) -> Response:
        """Return the response to a request under ``/models``."""
        self._drop_removed_models()
        path, method = request.path, request.method
        if path == "/models":
            if method == "POST":
                return self.load_request(request)
            if method == "GET":
                return self.list_models()
            return _error(405, f"{method} {path} is not allowed; use GET or POST")

        rest = path[len(_PREFIX) :]
        if rest.endswith(_INVOKE_SUFFIX):
            name = unquote(rest[: -len(_INVOKE_SUFFIX)])
            if method != "POST":
                return _error(405, f"{method} {path} is not allowed; use POST")
            return self.invoke(name, request)
        name = unquote(rest)
        if method == "DELETE":
            return self.unload(name)
        if method == "GET":
            return self.describe(name)
        return _error(405, f"{method} {path} is not allowed; use GET or DELETE")

    def load_request(self, request: Request) -> Response:
        try:
            document = json.loads(request.body)
        except ValueError as exc:
            return _error(400, f"the request body is not JSON: {exc}")
        if not isinstance(document, dict):
            return _error(400, 'send a JSON object {"model_name": ..., "url": ...}')
        name, url = document.get("model_name"), document.get("url")
        if not isinstance(name, str) or not name or not isinstance(url, str) or not url:
            return _error(400, "model_name and url must be non-empty strings")

        loaded = self.models.get(name)
        if loaded is not None and loaded.url == url:
            self.models.move_to_end(name)
            return _json(200, _summary(name, loaded))
        error = self.load(name, url)
        if error is not None:
            return error
        return _json(200, _summary(name, self.models[name]))

    def load(self, name: str, url: str) -> Response | None:
        """Load ``name`` from the directory ``url``; return an error response, or None."""
        model_dir = Path(url)
        if not model_dir.is_dir():
            return _error(404, f"model {name}: the directory {url} does not exist")

        logger.info("Worker %d is loading model %s from %s", os.getpid(), name, url)
        started = time.monotonic()
        rss_before = resident_bytes()
        try:
            with self.server.slot.loading():
                pipeline, code_scope = self._load_pipeline(model_dir)
        except StartupError as exc:
            logger.error("Worker %d failed to load model %s: %s", os.getpid(), name, exc)
            return _error(500, f"model {name} failed to load: {exc}")
        rss_after = resident_bytes()
        memory = rss_after - rss_before if rss_before is not None and rss_after else None

        self.models.pop(name, None)
        self.models[name] = LoadedModel(pipeline, code_scope, url, memory)
        logger.info(
            "Worker %d loaded model %s in %d ms",
            os.getpid(),
            name,
            (time.monotonic() - started) * 1000,
        )
        return None

    def list_models(self) -> Response:
        models = [_summary(name, loaded) for name, loaded in self.models.items()]
        return _json(200, {"models": models})

    def describe(self, name: str) -> Response:
        loaded = self.models.get(name)
        if loaded is None:
            return _error(404, f"model {name} is not loaded")
        return _json(200, _summary(name, loaded))

    def unload(self, name: str) -> Response:
        if self.models.pop(name, None) is None:
            return _error(404, f"model {name} is not loaded")
        logger.info("Worker %d unloaded model %s", os.getpid(), name)
        return _json(200, {"status": f"model {name} unloaded"})

    def invoke(self, name: str, request: Request) -> Response:
        loaded = self.models.get(name)
        url = request.headers.get(MODEL_URL_HEADER)
        if loaded is None or (url is not None and loaded.url != url):
            if url is None:
                return _error(404, f"model {name} is not loaded; load it with POST /models")
            error = self.load(name, url)
            if error is not None:
                return error
            loaded = self.models[name]
        self.models.move_to_end(name)
        if loaded.code_scope is None:
            return self.server.invoke(request, loaded.pipeline)
        # Imports inside the handlers find this model's helpers, not another's.
        with loaded.code_scope.active():
            return self.server.invoke(request, loaded.pipeline)

    def _load_pipeline(self, model_dir: Path) -> tuple[InferencePipeline, CodeScope | None]:
        """Import the model's code and run model_fn, then return the pipeline and its CodeScope."""
        code_dir = model_dir / "code"
        program = self.config.program
        default_accept = self.config.default_accept
        try:
            locate_program(code_dir, program)
        except StartupError:
            # A model without code of its own uses the instance's code.
            handlers = load_user_handlers(self.config.code_dir, program)
            return InferencePipeline.load(handlers, model_dir, default_accept), None

        code_scope = CodeScope(code_dir)
        with code_scope.active():
            handlers = bind_handlers(_import_model_module(code_dir, program), program)
            pipeline = InferencePipeline.load(handlers, model_dir, default_accept)
        return pipeline, code_scope

    def _drop_removed_models(self) -> None:
        for name in [name for name, loaded in self.models.items() if not Path(loaded.url).exists()]:
            del self.models[name]
            logger.info("Worker %d dropped model %s: its directory was removed", os.getpid(), name)


def placeholder_pipeline(config: RuntimeConfig) -> InferencePipeline:
    """Return the instance-wide pipeline of a multi-model worker, which has no model.

    It is never invoked, because the worker rejects ``POST /invocations`` in
    multi-model mode.
    """

    def no_model(model_dir: str) -> None:
        return None

    handlers = UserHandlers(model_fn=Handler(no_model, takes_context=False))
    return InferencePipeline(handlers, None, config.model_dir, config.default_accept)


def resident_bytes() -> int | None:
    """Return this process's resident memory in bytes, or None where /proc is missing."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def _import_model_module(code_dir: Path, program: str) -> ModuleType:
    """Import one model's inference module under a name of its own.

    Every model's module is usually called ``inference``; a unique name per
    directory keeps one model's handlers from replacing another's in
    ``sys.modules``. Its helper modules are kept apart by the model's CodeScope.
    """
    path = locate_program(code_dir, program)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return import_user_module(code_dir, program, f"sageport_model_{digest}")


def _summary(name: str, loaded: LoadedModel) -> dict[str, Any]:
    return {"modelName": name, "modelUrl": loaded.url, "memoryBytes": loaded.memory_bytes}


def _json(status: int, document: dict[str, Any]) -> Response:
    return Response(status, json.dumps(document).encode(), [_JSON])


def _error(status: int, message: str) -> Response:
    return Response(status, message.encode(errors="replace"), [("Content-Type", "text/plain")])
