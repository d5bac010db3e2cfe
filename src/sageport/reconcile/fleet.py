"""Fleets: the running instances of one deployment of an endpoint, and their supervision.

A deployment is the snapshot an endpoint runs: its endpoint config, the models
that config names, and any weights or instance counts changed since by
UpdateEndpointWeightsAndCapacities. ``FleetManager.launch`` turns one into
running, healthy instances, or raises with the reason and leaves nothing
running. A supervisor task per instance restarts it when it dies or stops
responding to ``/ping``; meanwhile the data plane routes around it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sageport.config import Settings
from sageport.dataplane.multimodel import (
    MultiModelBudget,
    MultiModelVariant,
    default_memory_budget,
)
from sageport.dataplane.routing import InstanceRoute, VariantRoute
from sageport.hosting.artifacts import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    display_url,
    download_timed_out,
    fetch_model_data,
)
from sageport.hosting.detached import run_detached
from sageport.hosting.environments import model_python
from sageport.hosting.images import REJECT, ImageRule, resolve_image
from sageport.hosting.process import (
    InstanceProcess,
    InstanceSpec,
    InstanceStartError,
    ProcessBackend,
    invocation_timeout,
)
from sageport.store import Store
from sageport.store.sqlite import InstanceRow

logger = logging.getLogger("sageport.hosting")

RESTART_BACKOFF_INITIAL = 0.5
RESTART_BACKOFF_MAX = 30.0
# Consecutive failed /ping checks after which an idle instance is replaced.
HEALTH_CHECK_FAILURES = 3
# An instance being replaced for failing its checks gets this long to exit.
UNHEALTHY_STOP_GRACE = 5.0
# How often a draining instance is checked for requests still in flight.
DRAIN_POLL_INTERVAL = 0.05


@dataclass
class Instance:
    """One instance slot: its spec, its current process and its route."""

    spec: InstanceSpec
    route: InstanceRoute
    process: InstanceProcess | None = None
    supervisor: asyncio.Task[None] | None = None
    stopping: bool = False


@dataclass
class FleetVariant:
    """A production variant's instances and the route the data plane uses."""

    name: str
    image: str | None
    model_dir: Path
    container: dict[str, Any]
    route: VariantRoute
    rule: ImageRule
    python: str
    instances: list[Instance] = field(default_factory=list)
    # Seconds each instance gets to pass its first /ping.
    startup_timeout: float = 600.0


@dataclass
class Fleet:
    """The running instances of one deployment."""

    endpoint_name: str
    deployment_id: str
    variants: list[FleetVariant] = field(default_factory=list)

    @property
    def instances(self) -> list[Instance]:
        return [instance for variant in self.variants for instance in variant.instances]

    def variant(self, name: str) -> FleetVariant | None:
        return next((variant for variant in self.variants if variant.name == name), None)


def variant_settings(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the deployment's production variants with weight and count overrides applied."""
    overrides = deployment.get("Overrides", {})
    variants = []
    for variant in deployment["EndpointConfig"]["ProductionVariants"]:
        settled = dict(variant)
        override = overrides.get(variant["VariantName"], {})
        if "DesiredWeight" in override:
            settled["InitialVariantWeight"] = override["DesiredWeight"]
        if "DesiredInstanceCount" in override:
            settled["InitialInstanceCount"] = override["DesiredInstanceCount"]
        variants.append(settled)
    return variants


class FleetManager:
    """Starts, supervises, resizes and stops fleets of instance processes."""

    def __init__(self, settings: Settings, store: Store, run_dir: Path) -> None:
        self._settings = settings
        self._store = store
        self._run_dir = run_dir
        self._backend = ProcessBackend()

    async def launch(self, endpoint_name: str, deployment: dict[str, Any]) -> Fleet:
        """Start every instance of a deployment and wait until all pass ``/ping``.

        Raises ArtifactError or InstanceStartError with the FailureReason; by
        then every instance started for the fleet has been stopped.
        """
        fleet = Fleet(endpoint_name, str(deployment["DeploymentId"]))
        try:
            for variant in variant_settings(deployment):
                fleet.variants.append(await self._prepare_variant(fleet, deployment, variant))
            await _all_or_none(
                [self._start_instance(fleet, instance) for instance in fleet.instances]
            )
        except BaseException:
            await self.stop(fleet)
            raise

        for instance in fleet.instances:
            self._supervise_in_background(fleet, instance)
        return fleet

    async def resize(self, fleet: Fleet, variant: FleetVariant, count: int) -> None:
        """Add or drain instances until the variant has ``count``, at most the server's limit."""
        count = self._allowed_count(fleet, variant.name, count)
        while len(variant.instances) < count:
            instance = self._new_instance(fleet, variant)
            try:
                await self._start_instance(fleet, instance)
            except BaseException:
                await self._stop_instance(instance)
                raise
            variant.instances.append(instance)
            variant.route.instances.append(instance.route)
            self._supervise_in_background(fleet, instance)

        while len(variant.instances) > count:
            instance = variant.instances.pop()
            await self._retire(variant.route, instance)

    async def stop(self, fleet: Fleet, *, drain: bool = False) -> None:
        """Stop every instance; with ``drain``, first let requests in flight finish."""
        if drain:
            await asyncio.gather(*(self._wait_drained(instance) for instance in fleet.instances))
        await asyncio.gather(*(self._stop_instance(instance) for instance in fleet.instances))
        for instance in fleet.instances:
            await instance.route.close()

    # Building a fleet.

    async def _prepare_variant(
        self, fleet: Fleet, deployment: dict[str, Any], variant: dict[str, Any]
    ) -> FleetVariant:
        name = variant["VariantName"]
        model = deployment["Models"][variant["ModelName"]]
        container = _single_container(model, name)
        rule = resolve_image(container.get("Image"), self._settings.image_rules)
        if rule.runtime == REJECT:
            raise InstanceStartError(
                f"Sageport cannot run image {container.get('Image')} of production variant "
                f"{name}: the image table rejects images matching {rule.match!r}. Map the "
                "image to a command or to the built-in runtime in the table."
            )
        download_timeout = float(
            variant.get("ModelDataDownloadTimeoutInSeconds") or DEFAULT_DOWNLOAD_TIMEOUT
        )
        model_dir = await self._fetch(fleet, name, container, download_timeout)
        python = await model_python(model_dir, self._settings.environments_dir)
        route = VariantRoute(
            name,
            float(variant.get("InitialVariantWeight", 1.0)),
            [],
            invocation_timeout(container.get("Environment") or {}),
        )
        if _is_multi_model(container):
            route.multi_model = self._multi_model(fleet, name, container)
        fleet_variant = FleetVariant(
            name, container.get("Image"), model_dir, container, route, rule, python
        )
        fleet_variant.startup_timeout = float(
            variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
            or self._settings.startup_timeout
        )
        count = self._allowed_count(fleet, name, int(variant.get("InitialInstanceCount", 1)))
        for _ in range(count):
            instance = self._new_instance(fleet, fleet_variant)
            fleet_variant.instances.append(instance)
            route.instances.append(instance.route)
        return fleet_variant

    def _allowed_count(self, fleet: Fleet, variant_name: str, count: int) -> int:
        # The control plane rejects counts over the limit, but a store written
        # by an older version, or under a higher --max-instances-per-variant,
        # may still hold one. Starting them all could exhaust the machine.
        limit = self._settings.max_instances_per_variant
        if count <= limit:
            return count
        logger.warning(
            "Production variant %s of endpoint %s asks for %d instances, more than the "
            "limit of %d; starting %d. Restart with a higher --max-instances-per-variant "
            "to allow more.",
            variant_name,
            fleet.endpoint_name,
            count,
            limit,
            limit,
        )
        return limit

    async def _fetch(
        self, fleet: Fleet, variant_name: str, container: dict[str, Any], timeout: float
    ) -> Path:
        key = fleet.endpoint_name.lower()
        model_dir = self._settings.endpoints_dir / key / fleet.deployment_id / variant_name
        url = container.get("ModelDataUrl") or _data_source_uri(container)
        # A multi-model container's URL is the prefix its archives live under;
        # each is fetched on its first invocation (dataplane/multimodel.py).
        if url is None or _is_multi_model(container):
            model_dir.mkdir(parents=True, exist_ok=True)
            return model_dir
        logger.info("Fetching model data for %s/%s from %s", fleet.endpoint_name, variant_name, url)
        fetch = run_detached(fetch_model_data, url, model_dir, timeout=timeout)
        try:
            # The fetch checks its deadline between reads, but one blocking call
            # (an S3 download, a stalled read) may outlast it. The thread then
            # stops at its next check and removes its partial files.
            await asyncio.wait_for(fetch, timeout)
        except TimeoutError:
            raise download_timed_out(display_url(url), timeout) from None
        return model_dir

    def _multi_model(
        self, fleet: Fleet, variant_name: str, container: dict[str, Any]
    ) -> MultiModelVariant:
        key = fleet.endpoint_name.lower()
        cache_dir = (
            self._settings.endpoints_dir / key / fleet.deployment_id / f"{variant_name}.models"
        )
        settings = self._settings
        budget = MultiModelBudget(
            load_wait=settings.multi_model_load_wait,
            max_models=settings.multi_model_max_models,
            memory_bytes=settings.multi_model_memory_mib * 2**20 or default_memory_budget(),
        )
        prefix = container.get("ModelDataUrl") or _data_source_uri(container)
        if not prefix:
            raise InstanceStartError(
                f"The model of production variant {variant_name} has Mode MultiModel but no "
                "ModelDataUrl. Set ModelDataUrl to the prefix its archives are under, such as "
                "s3://bucket/models/ or file:///srv/models/."
            )
        return MultiModelVariant(fleet.endpoint_name, prefix, cache_dir, budget)

    def _new_instance(self, fleet: Fleet, variant: FleetVariant) -> Instance:
        instance_id = f"i-{uuid.uuid4().hex[:12]}"
        environment = dict(self._settings.instance_environment)
        if variant.python != sys.executable:
            # A model with its own requirements: its environment comes first on PATH
            # for a server of the user's own too.
            bin_dir = str(Path(variant.python).parent)
            environment["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
            environment["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
        if _is_multi_model(variant.container):
            # SageMaker sets this for Mode MultiModel containers.
            environment["SAGEMAKER_MULTI_MODEL"] = "true"
        environment.update(variant.container.get("Environment") or {})
        logs = self._settings.logs_dir / fleet.endpoint_name.lower() / variant.name
        spec = InstanceSpec(
            instance_id=instance_id,
            endpoint_name=fleet.endpoint_name,
            variant_name=variant.name,
            model_dir=variant.model_dir,
            socket_path=self._run_dir / f"{instance_id}.sock",
            log_path=logs / f"{instance_id}.log",
            failure_file=self._run_dir / f"{instance_id}.failure",
            environment=environment,
            command=variant.rule.command,
            port=_free_port() if variant.rule.command else None,
            python=variant.python,
            startup_timeout=variant.startup_timeout,
        )
        route = InstanceRoute(
            instance_id, spec.address, spec.workers, self._settings.max_queued_requests
        )
        route.healthy = False
        return Instance(spec, route)

    async def _start_instance(self, fleet: Fleet, instance: Instance) -> None:
        process = await self._backend.start(instance.spec)
        instance.process = process
        self._store.add_instance(
            InstanceRow(
                instance.spec.instance_id, fleet.endpoint_name.lower(), process.pid, process.started
            )
        )
        await process.wait_healthy(instance.spec.startup_timeout)
        instance.route.healthy = True
        logger.info(
            "Instance %s of endpoint %s passed /ping",
            instance.spec.instance_id,
            fleet.endpoint_name,
        )

    # Supervision.

    def _supervise_in_background(self, fleet: Fleet, instance: Instance) -> None:
        instance.supervisor = asyncio.get_running_loop().create_task(
            self._supervise(fleet, instance)
        )

    async def _supervise(self, fleet: Fleet, instance: Instance) -> None:
        """Restart the instance whenever it dies or stops responding to /ping."""
        backoff = 0.0
        while not instance.stopping:
            reason = await self._watch(instance)
            if instance.stopping:
                return
            instance.route.healthy = False
            logger.warning(
                "Instance %s of endpoint %s %s; restarting it in %g s",
                instance.spec.instance_id,
                fleet.endpoint_name,
                reason,
                backoff,
            )
            assert instance.process is not None
            await instance.process.stop(grace=UNHEALTHY_STOP_GRACE)
            self._store.remove_instance(instance.spec.instance_id)

            # The first restart is immediate so that a lone instance is back
            # within about a second; repeated failures back off.
            await asyncio.sleep(backoff)
            try:
                await self._start_instance(fleet, instance)
                backoff = 0.0
            except InstanceStartError as exc:
                backoff = min(max(backoff * 2, RESTART_BACKOFF_INITIAL), RESTART_BACKOFF_MAX)
                logger.warning(
                    "Restarting instance %s of endpoint %s failed: %s",
                    instance.spec.instance_id,
                    fleet.endpoint_name,
                    exc,
                )

    async def _watch(self, instance: Instance) -> str:
        """Wait until the instance's process exits or fails its health checks; return why."""
        assert instance.process is not None
        process = instance.process.process
        failures = 0
        while True:
            try:
                code = await asyncio.wait_for(process.wait(), self._settings.health_check_interval)
                return f"exited with status {code}"
            except TimeoutError:
                pass
            # A busy instance may not respond to /ping within its 2 seconds, because its
            # workers are all serving. Requests in flight have their own
            # deadline, so only an idle instance is checked.
            if instance.route.in_flight > 0:
                failures = 0
                continue
            if await instance.route.ping():
                failures = 0
                continue
            failures += 1
            if failures >= HEALTH_CHECK_FAILURES:
                return f"failed {failures} health checks in a row"

    # Stopping.

    async def _retire(self, variant: VariantRoute, instance: Instance) -> None:
        """Take an instance out of routing, let its requests finish, then stop it."""
        instance.route.healthy = False
        if instance.route in variant.instances:
            variant.instances.remove(instance.route)
        await self._wait_drained(instance)
        await self._stop_instance(instance)
        await instance.route.close()
        if variant.multi_model is not None:
            variant.multi_model.remove_instance(instance.route)

    async def _wait_drained(self, instance: Instance) -> None:
        # Bounded by the requests' own deadline: each one in flight either
        # finishes or times out within the variant's timeout.
        instance.route.healthy = False
        while instance.route.in_flight > 0:
            await asyncio.sleep(DRAIN_POLL_INTERVAL)

    async def _stop_instance(self, instance: Instance) -> None:
        instance.stopping = True
        instance.route.healthy = False
        if instance.supervisor is not None:
            instance.supervisor.cancel()
        if instance.process is not None:
            await instance.process.stop()
            self._store.remove_instance(instance.spec.instance_id)
            logger.info("Stopped instance %s", instance.spec.instance_id)


async def _all_or_none(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines together; on the first failure cancel the rest and raise it.

    When the caller is cancelled (the server stops during a start), the tasks
    are cancelled and awaited too. Left running, each would fail once its
    instance is stopped, and nothing would retrieve that exception.
    """
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exception = task.exception()
        if exception is not None:
            raise exception


def _single_container(model: dict[str, Any], variant_name: str) -> dict[str, Any]:
    if "PrimaryContainer" in model:
        return dict(model["PrimaryContainer"])
    containers = model.get("Containers") or []
    if len(containers) != 1:
        raise InstanceStartError(
            f"Model {model['ModelName']} of production variant {variant_name} has "
            f"{len(containers)} containers; Sageport runs single-container models only."
        )
    return dict(containers[0])


def _is_multi_model(container: dict[str, Any]) -> bool:
    return container.get("Mode") == "MultiModel"


def _free_port() -> int:
    # The port is free now; a server of the user's own binds it moments later.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _data_source_uri(container: dict[str, Any]) -> str | None:
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    uri = source.get("S3Uri")
    return str(uri) if uri else None
