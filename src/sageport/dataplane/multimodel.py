"""Multi-model endpoints: load the model that TargetModel names, then invoke it.

A production variant whose model has ``Mode: MultiModel`` serves many models
from one fleet. ``ModelDataUrl`` is a prefix (``file:///models/``,
``s3://bucket/prefix/``), and TargetModel is the path of one archive under
it. On the first invocation of a model on an instance:

1. the archive is fetched and unpacked once per endpoint deployment into
   ``<data dir>/endpoints/<endpoint>/<deployment>/<variant>.models/``;
2. the instance loads it through ``POST /models`` (the multi-model contract
   of SageMaker's model server) from a per-instance link to that directory;
3. the instance's least recently used models are unloaded
   (``DELETE /models/{name}``, and the link is removed) while the instance is
   over its budget of loaded models or of their memory.

Invocations go to ``POST /models/{name}/invoke``, preferring an instance that
already has the model. Callers of a model that is still loading share one
load. A caller that has waited ``load_wait`` seconds gets
ModelNotReadyException (429), which botocore retries, while the load goes on,
as SageMaker does while a large model downloads.

Every request to an instance goes through its ``upstream`` pool. A runtime
worker serves one connection at a time, so a connection of its own would wait
behind the pool's idle connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from sageport.dataplane.invoke import (
    CONTAINER_NAME,
    InvocationResult,
    connection_lost_error,
    invocation_result,
    mark_unreachable,
    model_error,
    ready_deadline,
    timed_out_error,
    usable_instance,
    wait_for_instance,
)
from sageport.dataplane.path_names import is_relative_path
from sageport.dataplane.routing import EndpointRoute, InstanceRoute, VariantRoute
from sageport.dataplane.upstream import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamResponse,
)
from sageport.errors import (
    ModelError,
    ModelNotReadyException,
    ServiceUnavailable,
    ValidationError,
)
from sageport.hosting.artifacts import ArtifactError, fetch_model_data, local_path
from sageport.hosting.detached import run_detached

logger = logging.getLogger("sageport.dataplane")

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
# The built-in runtime loads a model it lacks from this directory, so every
# worker of an instance can serve it. Other servers ignore the header.
MODEL_URL_HEADER = b"X-Sageport-Model-Url"
# SageMaker keeps loading a model for up to 360 seconds after the caller got
# ModelNotReadyException ("Invoke a Multi-Model Endpoint", SageMaker Developer Guide).
MODEL_LOAD_TIMEOUT = 360.0
# How long an unload may take before the instance is left to drop the model itself.
MODEL_UNLOAD_TIMEOUT = 30.0
_JSON_HEADERS = [(b"Content-Type", b"application/json")]


@dataclass(frozen=True)
class MultiModelBudget:
    """How long callers wait for a load, and how much each instance keeps loaded."""

    load_wait: float
    # 0 sets no limit on the number of loaded models.
    max_models: int
    memory_bytes: int


@dataclass
class LoadedModel:
    """A model loaded, or loading, on one instance."""

    name: str
    load: asyncio.Task[None]
    # The runtime's measured resident memory growth across model_fn, times the
    # instance's workers; the unpacked archive size when the server reports none.
    memory_bytes: int = 0
    in_flight: int = 0


@dataclass
class InstanceModels:
    """The models of one instance, least recently used first."""

    link_dir: Path
    models: OrderedDict[str, LoadedModel] = field(default_factory=OrderedDict)


class MultiModelVariant:
    """The archives and loaded models of one multi-model production variant."""

    def __init__(
        self, endpoint_name: str, prefix: str, cache_dir: Path, budget: MultiModelBudget
    ) -> None:
        self.endpoint_name = endpoint_name
        self.prefix = prefix if prefix.endswith("/") else f"{prefix}/"
        self.cache_dir = cache_dir
        self.budget = budget
        self._archives: dict[str, asyncio.Task[tuple[Path, int]]] = {}
        self._instances: dict[str, InstanceModels] = {}
        # Instances a resize removed: a load still under way must not link for them again.
        self._removed: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()

    def instance_models(self, instance: InstanceRoute) -> InstanceModels:
        models = self._instances.get(instance.instance_id)
        if models is None:
            models = self._instances[instance.instance_id] = InstanceModels(
                self._link_dir(instance)
            )
        return models

    def remove_instance(self, instance: InstanceRoute) -> None:
        """Forget the models of an instance that was stopped for good, and delete its links."""
        self._removed.add(instance.instance_id)
        self._instances.pop(instance.instance_id, None)
        shutil.rmtree(self._link_dir(instance), ignore_errors=True)

    def pick_instance(self, variant: VariantRoute, name: str) -> InstanceRoute | None:
        """Return the least busy healthy instance, preferring those that have the model."""
        healthy = [instance for instance in variant.instances if instance.healthy]
        having = [i for i in healthy if name in self.instance_models(i).models]
        candidates = having or healthy
        return min(candidates, key=lambda instance: instance.in_flight, default=None)

    def start_load(self, route: EndpointRoute, instance: InstanceRoute, name: str) -> LoadedModel:
        """Return the model's entry on the instance, starting its load if there is none."""
        models = self.instance_models(instance)
        loaded = models.models.get(name)
        if loaded is None:
            task = asyncio.get_running_loop().create_task(self._load(route, instance, name))
            loaded = models.models[name] = LoadedModel(name, task)
            task.add_done_callback(_retrieve_exception)
        models.models.move_to_end(name)
        return loaded

    def forget(self, instance: InstanceRoute, name: str) -> None:
        """Drop the record of a model the instance no longer has."""
        models = self._instances.get(instance.instance_id)
        if models is not None:
            models.models.pop(name, None)

    # Loading.

    async def _load(self, route: EndpointRoute, instance: InstanceRoute, name: str) -> None:
        started = time.monotonic()
        try:
            archive_dir, archive_bytes = await self._archive(name)
            link = self._link(instance, name, archive_dir)
            document = {"model_name": name, "url": str(link)}
            logger.info(
                "Loading model %s on instance %s of endpoint %s",
                name,
                instance.instance_id,
                self.endpoint_name,
            )
            payload = json.dumps(document).encode()
            response = await _post(
                route, instance, b"/models", _JSON_HEADERS, payload, MODEL_LOAD_TIMEOUT
            )
        except TimeoutError:
            self.forget(instance, name)
            raise _load_timed_out(route, instance, name) from None
        except UpstreamDisconnected as exc:
            self.forget(instance, name)
            raise connection_lost_error(route, instance, exc) from None
        except BaseException:
            self.forget(instance, name)
            raise
        if not 200 <= response.status < 300:
            self.forget(instance, name)
            raise model_error(route, response.status, response.body)

        models = self._instances.get(instance.instance_id)
        loaded = models.models.get(name) if models is not None else None
        if loaded is not None:
            reported = _reported_memory(response.body)
            loaded.memory_bytes = (
                reported * instance.workers if reported is not None else archive_bytes
            )
        logger.info(
            "Loaded model %s on instance %s of endpoint %s in %.1f s",
            name,
            instance.instance_id,
            self.endpoint_name,
            time.monotonic() - started,
        )
        self._evict_over_budget(instance, keep=name)

    async def _archive(self, name: str) -> tuple[Path, int]:
        """Fetch and unpack the archive once for all instances; return its directory and size."""
        task = self._archives.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(name))
            self._archives[name] = task
        try:
            return await asyncio.shield(task)
        except ValidationError:
            # The archive may be uploaded later, so the next call fetches again.
            if self._archives.get(name) is task:
                del self._archives[name]
            raise

    async def _fetch(self, name: str) -> tuple[Path, int]:
        # A file:// URL is percent-decoded when it is read, so the name is
        # encoded here to reach the file named exactly as TargetModel reads.
        # Local paths and S3 keys are used as they are.
        is_file_url = urlsplit(self.prefix).scheme == "file"
        url = self.prefix + (quote(name, safe="/") if is_file_url else name)
        directory = self.cache_dir / "archives" / _directory_name(name)
        try:
            # A local prefix confines what TargetModel can reach, links included.
            within = local_path(self.prefix)
            await run_detached(fetch_model_data, url, directory, within=within)
        except ArtifactError as exc:
            # SageMaker's API reference names no error for an archive it cannot
            # download. The fix is in the request or the prefix, so ValidationError.
            raise ValidationError(
                f"Failed to download model data for TargetModel {name} of endpoint "
                f"{self.endpoint_name}: {exc}"
            ) from None
        return directory, await asyncio.to_thread(_tree_size, directory)

    def _link(self, instance: InstanceRoute, name: str, archive_dir: Path) -> Path:
        # The instance loads from a link of its own, so removing the link on
        # unload makes every worker of that instance, and no other instance,
        # drop the model.
        if instance.instance_id in self._removed:
            raise ServiceUnavailable(
                f"Instance {instance.instance_id} of endpoint {self.endpoint_name} was removed "
                "while the model was loading. Retry the request."
            )
        self.instance_models(instance).link_dir.mkdir(parents=True, exist_ok=True)
        link = self.link_path(instance, name)
        if not link.is_symlink():
            link.symlink_to(archive_dir, target_is_directory=True)
        return link

    # Unloading.

    def _evict_over_budget(self, instance: InstanceRoute, keep: str) -> None:
        models = self.instance_models(instance)
        while self._over_budget(models):
            victim = next(
                (
                    loaded
                    for loaded in models.models.values()
                    if loaded.name != keep and loaded.in_flight == 0 and _succeeded(loaded.load)
                ),
                None,
            )
            if victim is None:
                return
            del models.models[victim.name]
            self._unlink(models, victim.name)
            task = asyncio.get_running_loop().create_task(self._unload(instance, victim.name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _over_budget(self, models: InstanceModels) -> bool:
        max_models = self.budget.max_models
        if max_models and len(models.models) > max_models:
            return True
        used = sum(loaded.memory_bytes for loaded in models.models.values())
        return used > self.budget.memory_bytes and len(models.models) > 1

    async def _unload(self, instance: InstanceRoute, name: str) -> None:
        logger.info(
            "Unloading model %s from instance %s of endpoint %s: the instance is over its budget",
            name,
            instance.instance_id,
            self.endpoint_name,
        )
        path = b"/models/" + quote(name, safe="").encode()
        try:
            response = await instance.upstream.delete(path, MODEL_UNLOAD_TIMEOUT)
        except (UpstreamConnectError, UpstreamDisconnected, TimeoutError) as exc:
            logger.warning(
                "Unloading model %s from instance %s failed: %s", name, instance.instance_id, exc
            )
            return
        # 404: a worker already dropped it when its link disappeared.
        if response.status not in (200, 204, 404):
            logger.warning(
                "Unloading model %s from instance %s returned status %d",
                name,
                instance.instance_id,
                response.status,
            )

    def link_path(self, instance: InstanceRoute, name: str) -> Path:
        """Return the path the instance loads model ``name`` from."""
        return self._link_dir(instance) / _directory_name(name)

    def _link_dir(self, instance: InstanceRoute) -> Path:
        return self.cache_dir / "instances" / instance.instance_id

    def _unlink(self, models: InstanceModels, name: str) -> None:
        (models.link_dir / _directory_name(name)).unlink(missing_ok=True)


async def invoke_model(
    route: EndpointRoute,
    variant: VariantRoute,
    body: bytes,
    headers: dict[str, str],
    caller_gone: Callable[[], Awaitable[object]] | None = None,
) -> InvocationResult:
    """Invoke the model that TargetModel names on a multi-model production variant.

    ``caller_gone`` drops a request still queued for the instance, as in ``invoke``.
    """
    models = variant.multi_model
    name = headers.get(TARGET_MODEL_HEADER)
    if models is None:
        raise ValidationError(
            f"Endpoint {route.name} is not a multi-model endpoint and does not support "
            "TargetModel. Leave TargetModel out, or deploy a model with Mode MultiModel."
        )
    if name is None:
        raise ValidationError(
            f"Endpoint {route.name} is a multi-model endpoint: name the model archive to "
            "invoke with TargetModel, a path relative to the model's ModelDataUrl."
        )
    check_target_model(name)

    forwarded = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]
    started = time.perf_counter_ns()
    deadline = ready_deadline(route)
    # One retry covers an instance that lost the model, e.g. after a restart.
    for attempt in range(2):
        instance = await _available_instance(route, variant, models, name, deadline)
        loaded = models.start_load(route, instance, name)
        await _wait_loaded(route, name, loaded, models.budget.load_wait)

        link = models.link_path(instance, name)
        path = b"/models/" + quote(name, safe="").encode() + b"/invoke"
        headers_out = [*forwarded, (MODEL_URL_HEADER, str(link).encode())]
        loaded.in_flight += 1
        try:
            response = await _post(
                route, instance, path, headers_out, body, variant.timeout, caller_gone
            )
        except TimeoutError:
            raise timed_out_error(route, variant) from None
        except UpstreamDisconnected as exc:
            raise connection_lost_error(route, instance, exc) from None
        finally:
            loaded.in_flight -= 1
        if response.status == 404 and attempt == 0 and _not_loaded(response):
            models.forget(instance, name)
            continue
        break
    upstream_us = (time.perf_counter_ns() - started) // 1000

    if not 200 <= response.status < 300:
        raise model_error(route, response.status, response.body)
    return invocation_result(route, variant, response, upstream_us)


def check_target_model(name: str) -> None:
    """Reject a TargetModel that is not a relative path inside the model's prefix.

    The name is checked as sent and after each round of percent-decoding,
    because a ``file://`` prefix is decoded before it becomes a path.
    """
    if not is_relative_path(name):
        raise ValidationError(
            f"Invalid TargetModel {name!r}: use a relative path under the model's ModelDataUrl, "
            "such as model-a.tar.gz or group/model-b.tar.gz, without '.' or '..' segments, "
            "backslashes or surrounding spaces, also once percent-decoded."
        )


def default_memory_budget() -> int:
    """Return half of this machine's physical memory in bytes (1 GiB where unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 2**30


async def _available_instance(
    route: EndpointRoute,
    variant: VariantRoute,
    models: MultiModelVariant,
    name: str,
    deadline: float,
) -> InstanceRoute:
    instance = await wait_for_instance(
        variant, lambda: models.pick_instance(variant, name), deadline
    )
    return usable_instance(route, variant, instance)


async def _wait_loaded(route: EndpointRoute, name: str, loaded: LoadedModel, wait: float) -> None:
    if loaded.load.done():
        loaded.load.result()
        return
    try:
        await asyncio.wait_for(asyncio.shield(loaded.load), wait)
    except TimeoutError:
        raise ModelNotReadyException(
            f"Model {name} of endpoint {route.name} is still loading. Retry the request; "
            "the load continues in the background."
        ) from None


async def _post(
    route: EndpointRoute,
    instance: InstanceRoute,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    timeout: float,
    caller_gone: Callable[[], Awaitable[object]] | None = None,
) -> UpstreamResponse:
    instance.in_flight += 1
    try:
        return await instance.upstream.post(path, headers, body, timeout, caller_gone)
    except UpstreamConnectError as exc:
        mark_unreachable(route, instance, exc)
        raise ServiceUnavailable(
            f"Instance {instance.instance_id} could not be reached. Retry shortly."
        ) from None
    finally:
        instance.in_flight -= 1


def _load_timed_out(route: EndpointRoute, instance: InstanceRoute, name: str) -> ModelError:
    logger.warning(
        "Loading model %s on instance %s of endpoint %s timed out after %g s",
        name,
        instance.instance_id,
        route.name,
        MODEL_LOAD_TIMEOUT,
    )
    message = (
        f"Loading model {name} timed out after {MODEL_LOAD_TIMEOUT:g} seconds. Make its "
        "model_fn faster or its archive smaller."
    )
    return ModelError(
        f'Received server error (0) from {CONTAINER_NAME} with message "{message}".',
        OriginalStatusCode=0,
        OriginalMessage=message,
        LogStreamArn=route.log_group_arn,
        ErrorCode="MODEL_LOAD_TIMEOUT",
    )


def _not_loaded(response: UpstreamResponse) -> bool:
    return b"not loaded" in response.body[:200]


def _reported_memory(body: bytes) -> int | None:
    try:
        value = json.loads(body).get("memoryBytes")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None


def _succeeded(task: asyncio.Task[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _retrieve_exception(task: asyncio.Task[None]) -> None:
    # Callers still waiting get the error itself. Those that got
    # ModelNotReadyException see it on their retry, which loads again.
    if not task.cancelled() and task.exception() is not None:
        logger.warning("Loading a multi-model endpoint's model failed: %s", task.exception())


def _directory_name(name: str) -> str:
    # TargetModel may contain '/', so directories are named by its digest.
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _tree_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
