"""Converge running instances to the desired state in the store.

The control plane only writes the store and calls ``Reconciler.notify``. Here
each endpoint gets at most one convergence task at a time: Creating → fetch the
model data, start the instances, wait for ``/ping``, install the route and mark
InService, or mark Failed with the reason; Deleting → drain, stop, forget. On
start-up ``recover`` kills instances a crashed server left behind and brings
every endpoint back.

A supervisor task per instance restarts it, with backoff, when it dies while
its endpoint is in service; meanwhile the data plane routes around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sageport.config import Settings
from sageport.control.arns import Arns
from sageport.control.plane import ENDPOINT, set_status
from sageport.dataplane.routing import EndpointRoute, InstanceRoute, RoutingTable, VariantRoute
from sageport.hosting.artifacts import ArtifactError, fetch_model_data
from sageport.hosting.process import (
    InstanceProcess,
    InstanceSpec,
    InstanceStartError,
    ProcessBackend,
    kill_orphan,
)
from sageport.store import Record, Store
from sageport.store.sqlite import InstanceRow

logger = logging.getLogger("sageport.reconcile")

RESTART_BACKOFF_INITIAL = 0.5
RESTART_BACKOFF_MAX = 30.0


@dataclass
class Instance:
    """One instance slot: its spec, its current process and its route."""

    spec: InstanceSpec
    route: InstanceRoute
    process: InstanceProcess | None = None
    supervisor: asyncio.Task[None] | None = None
    stopping: bool = False


@dataclass
class Fleet:
    """The instances of one deployment of an endpoint."""

    instances: list[Instance] = field(default_factory=list)


class Reconciler:
    """Runs instances for the endpoints in the store."""

    def __init__(self, settings: Settings, store: Store, routing: RoutingTable, arns: Arns) -> None:
        self._settings = settings
        self._store = store
        self._routing = routing
        self._arns = arns
        self._backend = ProcessBackend()
        self._fleets: dict[str, Fleet] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()
        # Unix socket paths are limited to about 100 bytes, so sockets live in a
        # short temporary directory rather than under --data-dir.
        self._run_dir = Path(tempfile.mkdtemp(prefix="sageport-"))

    def notify(self, name: str) -> None:
        """Schedule convergence of one endpoint; repeated calls coalesce."""
        key = name.lower()
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self._pending.add(key)
            return
        self._tasks[key] = asyncio.get_running_loop().create_task(self._converge_loop(key))

    async def recover(self) -> None:
        """Clean up after a previous server and bring every endpoint back."""
        for row in list(self._store.instances()):
            if kill_orphan(row.pid, row.started):
                logger.warning(
                    "Killed instance %s (pid %d) left running by a previous server",
                    row.instance_id,
                    row.pid,
                )
            self._store.remove_instance(row.instance_id)

        for record in self._store.list(ENDPOINT):
            if record.status == "InService":
                self._routing.starting.add(record.name)
            if record.status in ("InService", "Creating", "Updating", "Deleting"):
                self.notify(record.name)

    async def close(self) -> None:
        """Stop every instance; called on server shutdown."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(self._stop_fleet(key) for key in list(self._fleets)))
        shutil.rmtree(self._run_dir, ignore_errors=True)

    async def wait_idle(self) -> None:
        """Wait until no convergence is running (for orderly shutdown and tests)."""
        while any(not task.done() for task in self._tasks.values()):
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # Convergence.

    async def _converge_loop(self, key: str) -> None:
        while True:
            self._pending.discard(key)
            try:
                await self._converge(key)
            except Exception:
                logger.exception("Converging endpoint %s failed unexpectedly", key)
            if key not in self._pending:
                return

    async def _converge(self, key: str) -> None:
        record = self._store.get(ENDPOINT, key)
        if record is None:
            await self._stop_fleet(key)
            return

        if record.status == "Deleting":
            await self._delete(record)
        elif record.status in ("Creating", "InService") and key not in self._fleets:
            await self._deploy(record)
        elif record.status == "Failed":
            await self._stop_fleet(key)

    async def _delete(self, record: Record) -> None:
        key = record.name.lower()
        await self._stop_fleet(key)
        self._store.delete(ENDPOINT, record.name)
        shutil.rmtree(self._settings.endpoints_dir / key, ignore_errors=True)
        logger.info("Deleted endpoint %s", record.name)

    async def _deploy(self, record: Record) -> None:
        key = record.name.lower()
        logger.info("Deploying endpoint %s", record.name)
        fleet = Fleet()
        self._fleets[key] = fleet
        try:
            variants = await self._start_variants(record, fleet)
        except (ArtifactError, InstanceStartError) as exc:
            await self._fail(record, str(exc))
            return
        except Exception as exc:
            logger.exception("Deploying endpoint %s failed unexpectedly", record.name)
            await self._fail(record, f"Sageport failed to deploy the endpoint: {exc!r}")
            return

        region = record.spec.get("Region", self._settings.region)
        route = EndpointRoute(record.name, variants, self._arns.log_group(region, record.name))
        previous = self._routing.put(route)
        if previous is not None:
            await previous.close()
        for instance in fleet.instances:
            instance.supervisor = asyncio.get_running_loop().create_task(
                self._supervise(record.name, instance)
            )

        record.doc["ProductionVariants"] = [
            _variant_summary(variant, record) for variant in variants
        ]
        set_status(record, "InService")
        self._store.update(record)
        logger.info("Endpoint %s is InService", record.name)

    async def _fail(self, record: Record, reason: str) -> None:
        logger.warning("Endpoint %s failed: %s", record.name, reason)
        await self._stop_fleet(record.name.lower())
        set_status(record, "Failed", reason)
        self._store.update(record)

    async def _start_variants(self, record: Record, fleet: Fleet) -> list[VariantRoute]:
        config = record.spec["EndpointConfig"]
        variants: list[VariantRoute] = []
        for variant in config["ProductionVariants"]:
            model = record.spec["Models"][variant["ModelName"]]
            container = _single_container(model, variant["VariantName"])
            model_dir = await self._fetch(record, variant["VariantName"], container)
            specs = [
                self._instance_spec(record, variant, container, model_dir)
                for _ in range(int(variant.get("InitialInstanceCount", 1)))
            ]
            instances = [Instance(spec, _route(spec)) for spec in specs]
            fleet.instances.extend(instances)
            timeout = specs[0].timeout if specs else 60.0
            variants.append(
                VariantRoute(
                    variant["VariantName"],
                    float(variant.get("InitialVariantWeight", 1.0)),
                    [instance.route for instance in instances],
                    timeout,
                )
            )

        startup_timeout = self._settings.startup_timeout
        await asyncio.gather(
            *(
                self._start_instance(record.name, instance, startup_timeout)
                for instance in fleet.instances
            )
        )
        return variants

    async def _fetch(self, record: Record, variant_name: str, container: dict[str, Any]) -> Path:
        deployment = str(record.spec["DeploymentId"])
        model_dir = self._settings.endpoints_dir / record.name.lower() / deployment / variant_name
        url = container.get("ModelDataUrl") or _data_source_uri(container)
        if url is None:
            model_dir.mkdir(parents=True, exist_ok=True)
            return model_dir
        logger.info("Fetching model data for %s/%s from %s", record.name, variant_name, url)
        await asyncio.to_thread(fetch_model_data, url, model_dir)
        return model_dir

    def _instance_spec(
        self, record: Record, variant: dict[str, Any], container: dict[str, Any], model_dir: Path
    ) -> InstanceSpec:
        instance_id = f"i-{uuid.uuid4().hex[:12]}"
        environment = dict(self._settings.instance_environment)
        environment.update(container.get("Environment") or {})
        logs = self._settings.logs_dir / record.name.lower() / variant["VariantName"]
        return InstanceSpec(
            instance_id=instance_id,
            endpoint_name=record.name,
            variant_name=variant["VariantName"],
            model_dir=model_dir,
            socket_path=self._run_dir / f"{instance_id}.sock",
            log_path=logs / f"{instance_id}.log",
            failure_file=self._run_dir / f"{instance_id}.failure",
            environment=environment,
        )

    async def _start_instance(self, endpoint: str, instance: Instance, timeout: float) -> None:
        process = await self._backend.start(instance.spec)
        instance.process = process
        self._store.add_instance(
            InstanceRow(instance.spec.instance_id, endpoint.lower(), process.pid, process.started)
        )
        await process.wait_healthy(timeout)
        instance.route.healthy = True
        logger.info("Instance %s of endpoint %s passed /ping", instance.spec.instance_id, endpoint)

    # Supervision and stopping.

    async def _supervise(self, endpoint: str, instance: Instance) -> None:
        backoff = RESTART_BACKOFF_INITIAL
        while not instance.stopping:
            assert instance.process is not None
            code = await instance.process.process.wait()
            if instance.stopping:
                return
            instance.route.healthy = False
            self._store.remove_instance(instance.spec.instance_id)
            logger.warning(
                "Instance %s of endpoint %s exited with status %s; restarting in %g s",
                instance.spec.instance_id,
                endpoint,
                code,
                backoff,
            )
            await asyncio.sleep(backoff)
            try:
                await self._start_instance(endpoint, instance, self._settings.startup_timeout)
                backoff = RESTART_BACKOFF_INITIAL
            except InstanceStartError as exc:
                logger.warning("Restarting instance %s failed: %s", instance.spec.instance_id, exc)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    async def _stop_fleet(self, key: str) -> None:
        fleet = self._fleets.pop(key, None)
        route = None
        for name in self._routing.names():
            if name.lower() == key:
                route = self._routing.remove(name)
        if fleet is not None:
            await asyncio.gather(*(self._stop_instance(instance) for instance in fleet.instances))
        if route is not None:
            await route.close()

    async def _stop_instance(self, instance: Instance) -> None:
        instance.stopping = True
        instance.route.healthy = False
        if instance.supervisor is not None:
            instance.supervisor.cancel()
        if instance.process is not None:
            await instance.process.stop()
            self._store.remove_instance(instance.spec.instance_id)
            logger.info("Stopped instance %s", instance.spec.instance_id)
        if instance.route not in _routed(self._routing):
            await instance.route.close()


async def _all_or_none(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines together; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        exception = task.exception()
        if exception is not None:
            raise exception


def _routed(routing: RoutingTable) -> list[InstanceRoute]:
    routes: list[InstanceRoute] = []
    for name in routing.names():
        route = routing.get(name)
        if route is not None:
            routes.extend(i for variant in route.variants for i in variant.instances)
    return routes


def _route(spec: InstanceSpec) -> InstanceRoute:
    route = InstanceRoute(spec.instance_id, str(spec.socket_path), spec.workers)
    route.healthy = False
    return route


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


def _data_source_uri(container: dict[str, Any]) -> str | None:
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    uri = source.get("S3Uri")
    return str(uri) if uri else None


def _variant_summary(variant: VariantRoute, record: Record) -> dict[str, Any]:
    count = len(variant.instances)
    config_variant = next(
        v
        for v in record.spec["EndpointConfig"]["ProductionVariants"]
        if v["VariantName"] == variant.name
    )
    model = record.spec["Models"][config_variant["ModelName"]]
    image = (model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]).get("Image")
    summary: dict[str, Any] = {
        "VariantName": variant.name,
        "CurrentWeight": variant.weight,
        "DesiredWeight": variant.weight,
        "CurrentInstanceCount": count,
        "DesiredInstanceCount": count,
    }
    if image:
        summary["DeployedImages"] = [{"SpecifiedImage": image, "ResolvedImage": image}]
    return summary
