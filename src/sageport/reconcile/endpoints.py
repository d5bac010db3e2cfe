"""Bring each endpoint's running fleet in line with its status in the store.

The control plane only writes the store and calls ``Reconciler.notify``. Each
endpoint then gets at most one convergence task at a time:

- Creating: launch the fleet, install its route, mark InService; or mark
  Failed with the reason.
- Updating with a pending deployment (UpdateEndpoint): blue/green. The new
  fleet starts and passes ``/ping`` while the old one serves. Then the route
  swaps in one step, and the old fleet drains its requests in flight and
  stops. If the new fleet fails, it is stopped and the endpoint stays InService on the old
  one, with the reason in FailureReason, as SageMaker rolls back.
- Updating with new weights or instance counts: applied in place.
- Deleting: drain, stop, forget.

On start-up ``recover`` kills instances a crashed server left behind and brings
every endpoint back from its stored deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from typing import Any

from sageport.config import Settings
from sageport.control.arns import Arns
from sageport.control.plane import ENDPOINT, set_status
from sageport.dataplane.routing import EndpointRoute, RoutingTable
from sageport.hosting.artifacts import ArtifactError
from sageport.hosting.environments import RequirementsError
from sageport.hosting.process import InstanceStartError, kill_orphan
from sageport.hosting.run_directory import create_run_directory, remove_run_directory
from sageport.reconcile.fleet import Fleet, FleetManager, FleetVariant
from sageport.store import Record, Store

logger = logging.getLogger("sageport.reconcile")

# The keys of an endpoint's spec that make up one deployment.
DEPLOYMENT_KEYS = ("DeploymentId", "EndpointConfig", "Models", "Overrides")


class Reconciler:
    """Runs instances for the endpoints in the store."""

    def __init__(self, settings: Settings, store: Store, routing: RoutingTable, arns: Arns) -> None:
        self._settings = settings
        self._store = store
        self._routing = routing
        self._arns = arns
        # Instances keep their Unix sockets here. Creating it removes the one a
        # server killed with SIGKILL left behind.
        self._run_dir = create_run_directory(settings.data_dir)
        self._fleets = FleetManager(settings, store, self._run_dir)
        self._running: dict[str, Fleet] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[str] = set()

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
            if record.status in ("InService", "Updating"):
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
        await asyncio.gather(*(self._stop(key) for key in list(self._running)))
        remove_run_directory(self._settings.data_dir, self._run_dir)

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
            await self._stop(key)
            return

        status = record.status
        if status == "Deleting":
            await self._delete(record)
        elif status == "Failed":
            await self._stop(key)
        elif status in ("Creating", "InService", "Updating"):
            if key not in self._running and not await self._deploy(record):
                return
            if "Pending" in record.spec:
                await self._update(record)
            elif "DesiredWeightsAndCapacities" in record.spec:
                await self._reweigh(record)
            elif status != "InService":
                self._settle(record)

    async def _deploy(self, record: Record) -> bool:
        """Launch the endpoint's current deployment; on failure mark it Failed."""
        logger.info("Deploying endpoint %s", record.name)
        try:
            fleet = await self._fleets.launch(record.name, _deployment(record.spec))
        except Exception as exc:  # noqa: BLE001 - any failure must end as Failed, not Creating
            self._fail(record, _failure_reason(record, exc))
            return False

        self._running[record.name.lower()] = fleet
        self._install(record, fleet)
        if record.status == "Creating":
            self._settle(record)
            logger.info("Endpoint %s is InService", record.name)
        else:
            self._describe_fleet(record, fleet)
        return True

    async def _update(self, record: Record) -> None:
        """Blue/green: start the pending deployment, swap, then drain the old fleet."""
        pending = record.spec["Pending"]
        config_name = pending["EndpointConfig"]["EndpointConfigName"]
        logger.info("Updating endpoint %s to endpoint config %s", record.name, config_name)
        try:
            fleet = await self._fleets.launch(record.name, pending)
        except Exception as exc:  # noqa: BLE001 - any failure must roll back, not hang in Updating
            reason = _failure_reason(record, exc)
            logger.warning("Update of endpoint %s rolled back: %s", record.name, reason)
            del record.spec["Pending"]
            record.doc.pop("PendingDeploymentSummary", None)
            set_status(
                record,
                "InService",
                f"Updating to endpoint config {config_name} failed, so the endpoint was "
                f"rolled back to its previous config: {reason}",
            )
            self._store.update(record)
            return

        key = record.name.lower()
        old = self._running[key]
        self._running[key] = fleet
        self._install(record, fleet)
        for name in DEPLOYMENT_KEYS:
            record.spec.pop(name, None)
        record.spec.update(record.spec.pop("Pending"))
        record.doc["EndpointConfigName"] = config_name
        self._settle(record)
        logger.info("Endpoint %s now runs endpoint config %s", record.name, config_name)

        await self._fleets.stop(old, drain=True)
        shutil.rmtree(self._settings.endpoints_dir / key / old.deployment_id, ignore_errors=True)

    async def _reweigh(self, record: Record) -> None:
        """Apply UpdateEndpointWeightsAndCapacities to the running fleet in place."""
        fleet = self._running[record.name.lower()]
        desired: dict[str, dict[str, Any]] = record.spec.pop("DesiredWeightsAndCapacities")
        overrides: dict[str, dict[str, Any]] = record.spec.setdefault("Overrides", {})
        reason = None
        for variant_name, change in desired.items():
            variant = fleet.variant(variant_name)
            if variant is None:
                continue
            if "DesiredWeight" in change:
                variant.route.weight = float(change["DesiredWeight"])
            if "DesiredInstanceCount" in change:
                try:
                    await self._fleets.resize(fleet, variant, int(change["DesiredInstanceCount"]))
                except (ArtifactError, InstanceStartError) as exc:
                    reason = f"Scaling production variant {variant_name} failed: {exc}"
                    continue
            overrides.setdefault(variant_name, {}).update(change)
        self._settle(record, reason)

    async def _delete(self, record: Record) -> None:
        key = record.name.lower()
        await self._stop(key, drain=True)
        self._store.delete(ENDPOINT, record.name)
        shutil.rmtree(self._settings.endpoints_dir / key, ignore_errors=True)
        logger.info("Deleted endpoint %s", record.name)

    # Shared steps.

    def _install(self, record: Record, fleet: Fleet) -> None:
        """Point the data plane at ``fleet``; requests in flight keep their instance."""
        region = record.spec.get("Region", self._settings.region)
        route = EndpointRoute(
            record.name,
            [variant.route for variant in fleet.variants],
            self._arns.log_group(region, record.name),
            ready_wait=self._settings.instance_ready_wait,
        )
        self._routing.put(route)

    def _settle(self, record: Record, failure_reason: str | None = None) -> None:
        """Mark the endpoint InService and describe what now runs."""
        fleet = self._running[record.name.lower()]
        record.doc["ProductionVariants"] = [_variant_summary(variant) for variant in fleet.variants]
        record.doc.pop("PendingDeploymentSummary", None)
        set_status(record, "InService", failure_reason)
        self._store.update(record)

    def _describe_fleet(self, record: Record, fleet: Fleet) -> None:
        """Store the summary of a fleet started again after a restart, if it changed."""
        summary = [_variant_summary(variant) for variant in fleet.variants]
        # The fleet may be smaller than before, when the instance limit was lowered.
        if record.doc.get("ProductionVariants") != summary:
            record.doc["ProductionVariants"] = summary
            self._store.update(record)

    def _fail(self, record: Record, reason: str) -> None:
        logger.warning("Endpoint %s failed: %s", record.name, reason)
        self._routing.remove(record.name)
        record.spec.pop("Pending", None)
        record.spec.pop("DesiredWeightsAndCapacities", None)
        record.doc.pop("PendingDeploymentSummary", None)
        set_status(record, "Failed", reason)
        self._store.update(record)

    async def _stop(self, key: str, *, drain: bool = False) -> None:
        fleet = self._running.pop(key, None)
        for name in self._routing.names():
            if name.lower() == key:
                self._routing.remove(name)
        if fleet is not None:
            await self._fleets.stop(fleet, drain=drain)


def _deployment(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: spec[name] for name in DEPLOYMENT_KEYS if name in spec}


def _failure_reason(record: Record, exc: Exception) -> str:
    if isinstance(exc, ArtifactError | InstanceStartError | RequirementsError):
        return str(exc)
    logger.error("Deploying endpoint %s failed unexpectedly", record.name, exc_info=exc)
    return f"Sageport failed to deploy the endpoint: {exc!r}"


def _variant_summary(variant: FleetVariant) -> dict[str, Any]:
    count = len(variant.instances)
    summary: dict[str, Any] = {
        "VariantName": variant.name,
        "CurrentWeight": variant.route.weight,
        "DesiredWeight": variant.route.weight,
        "CurrentInstanceCount": count,
        "DesiredInstanceCount": count,
    }
    if variant.image:
        summary["DeployedImages"] = [
            {"SpecifiedImage": variant.image, "ResolvedImage": variant.image}
        ]
    return summary
