"""The control plane: SageMaker's hosting operations over the store.

Each public coroutine of ``ControlPlane`` is one SageMaker operation. It gets
the request members already validated against botocore's model (timestamps as
``datetime``) and returns the output members; the protocol layer serialises
them. Rules mirror SageMaker's: "not found" and duplicates are
ValidationException with the messages the SageMaker Python SDK matches on, and
the endpoint lifecycle is Creating → InService | Failed, then Deleting.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sageport.control import listing
from sageport.control.arns import Arns
from sageport.errors import (
    ResourceLimitExceeded,
    UnknownOperationException,
    ValidationException,
)
from sageport.hosting.artifacts import DEFAULT_DOWNLOAD_TIMEOUT
from sageport.store import AlreadyExists, Record, Store, now

logger = logging.getLogger("sageport.control")

MODEL = "model"
ENDPOINT_CONFIG = "endpoint-config"
ENDPOINT = "endpoint"

# Statuses in which SageMaker refuses UpdateEndpoint and DeleteEndpoint.
IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})

Operation = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


class ControlPlane:
    """SageMaker's hosting operations; ``notify`` is called when an endpoint needs converging."""

    def __init__(
        self,
        store: Store,
        arns: Arns,
        notify: Callable[[str], None],
        max_instances_per_variant: int = 20,
        startup_timeout: float = 600.0,
    ) -> None:
        self._store = store
        self._arns = arns
        self._notify = notify
        self._max_instances = max_instances_per_variant
        self._startup_timeout = startup_timeout
        self.operations: dict[str, Operation] = {
            "CreateModel": self.create_model,
            "DescribeModel": self.describe_model,
            "ListModels": self.list_models,
            "DeleteModel": self.delete_model,
            "CreateEndpointConfig": self.create_endpoint_config,
            "DescribeEndpointConfig": self.describe_endpoint_config,
            "ListEndpointConfigs": self.list_endpoint_configs,
            "DeleteEndpointConfig": self.delete_endpoint_config,
            "CreateEndpoint": self.create_endpoint,
            "DescribeEndpoint": self.describe_endpoint,
            "ListEndpoints": self.list_endpoints,
            "DeleteEndpoint": self.delete_endpoint,
            "UpdateEndpoint": self.update_endpoint,
            "UpdateEndpointWeightsAndCapacities": self.update_endpoint_weights_and_capacities,
        }

    async def call(self, operation: str, params: dict[str, Any], region: str) -> dict[str, Any]:
        handler = self.operations.get(operation)
        if handler is None:
            raise UnknownOperationException(
                f"Sageport does not implement SageMaker.{operation}. It serves the real-time "
                f"hosting operations: {', '.join(sorted(self.operations))}."
            )
        return await handler(params, region)

    # Models.

    async def create_model(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["ModelName"]
        arn = self._arns.model(region, name)
        containers = _containers(params)
        if not containers:
            raise ValidationException(
                "Either PrimaryContainer or Containers must be given: "
                "Sageport needs the container's ModelDataUrl to host the model."
            )
        if "PrimaryContainer" in params and "Containers" in params:
            raise ValidationException("Give either PrimaryContainer or Containers, not both.")

        created = now()
        doc = {key: value for key, value in params.items() if key != "Tags"}
        doc.update(ModelArn=arn, CreationTime=created)
        self._insert(
            Record(MODEL, name, created, created, doc),
            f'Cannot create already existing model "{arn}".',
        )
        logger.info("Created model %s", name)
        return {"ModelArn": arn}

    async def describe_model(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return self._get(MODEL, params["ModelName"], region).doc

    async def list_models(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return listing.page(
            self._store.list(MODEL),
            params,
            result_key="Models",
            fields=("ModelName", "ModelArn", "CreationTime"),
        )

    async def delete_model(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        # SageMaker deletes only the record, even while an endpoint uses the model;
        # endpoints keep the snapshot they were created from.
        name = params["ModelName"]
        if not self._store.delete(MODEL, name):
            raise ValidationException(f'Could not find model "{self._arns.model(region, name)}".')
        logger.info("Deleted model %s", name)
        return {}

    # Endpoint configs.

    async def create_endpoint_config(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        arn = self._arns.endpoint_config(region, name)
        variants = [_with_variant_defaults(variant) for variant in params["ProductionVariants"]]
        _check_unique_variants(variants)
        for variant in variants:
            self._check_instance_count(variant["VariantName"], variant.get("InitialInstanceCount"))
        for variant in variants:
            model_name = variant.get("ModelName")
            if model_name is None:
                raise ValidationException(
                    f"Production variant {variant['VariantName']} has no ModelName. "
                    "Sageport hosts models; inference components are not supported."
                )
            self._get(MODEL, model_name, region)

        created = now()
        doc = {key: value for key, value in params.items() if key != "Tags"}
        doc.update(ProductionVariants=variants, EndpointConfigArn=arn, CreationTime=created)
        self._insert(
            Record(ENDPOINT_CONFIG, name, created, created, doc),
            f'Cannot create already existing endpoint configuration "{arn}".',
        )
        logger.info("Created endpoint config %s", name)
        return {"EndpointConfigArn": arn}

    async def describe_endpoint_config(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return self._get(ENDPOINT_CONFIG, params["EndpointConfigName"], region).doc

    async def list_endpoint_configs(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return listing.page(
            self._store.list(ENDPOINT_CONFIG),
            params,
            result_key="EndpointConfigs",
            fields=("EndpointConfigName", "EndpointConfigArn", "CreationTime"),
        )

    async def delete_endpoint_config(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        # Allowed while an endpoint uses it, as on SageMaker: the endpoint keeps
        # serving from its snapshot and still reports the config's name.
        name = params["EndpointConfigName"]
        if not self._store.delete(ENDPOINT_CONFIG, name):
            arn = self._arns.endpoint_config(region, name)
            raise ValidationException(f'Could not find endpoint configuration "{arn}".')
        logger.info("Deleted endpoint config %s", name)
        return {}

    # Endpoints.

    async def create_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        name = params["EndpointName"]
        arn = self._arns.endpoint(region, name)
        config = self._get(ENDPOINT_CONFIG, params["EndpointConfigName"], region)
        models = {}
        for variant in config.doc["ProductionVariants"]:
            model = self._get(MODEL, variant["ModelName"], region)
            models[variant["ModelName"]] = model.doc

        created = now()
        doc = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": config.name,
            "EndpointStatus": "Creating",
            "CreationTime": created,
            "LastModifiedTime": created,
        }
        # The snapshot: the endpoint keeps running what it was created from, even
        # if the config or models are deleted afterwards.
        spec = {
            "DeploymentId": uuid.uuid4().hex[:12],
            "EndpointConfig": config.doc,
            "Models": models,
            "Region": region,
        }
        record = Record(ENDPOINT, name, created, created, doc, spec, status="Creating")
        self._insert(record, f'Cannot create already existing endpoint "{arn}".')
        logger.info("Creating endpoint %s from config %s", name, config.name)
        self._notify(name)
        return {"EndpointArn": arn}

    async def describe_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return self._get(ENDPOINT, params["EndpointName"], region).doc

    async def list_endpoints(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        return listing.page(
            self._store.list(ENDPOINT),
            params,
            result_key="Endpoints",
            fields=(
                "EndpointName",
                "EndpointArn",
                "CreationTime",
                "LastModifiedTime",
                "EndpointStatus",
            ),
        )

    async def delete_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        record = self._get(ENDPOINT, params["EndpointName"], region)
        if record.status in IN_PROGRESS:
            # SageMaker's message reads "update" for deletes too, and SageMaker
            # also rejects deleting a Creating endpoint. The second sentence is
            # Sageport's, so that the caller knows how long to wait.
            message = f'Cannot update in-progress endpoint "{record.doc["EndpointArn"]}".'
            if record.status == "Creating":
                message += " " + self._creation_bound(record)
            raise ValidationException(message)
        set_status(record, "Deleting")
        self._store.update(record)
        logger.info("Deleting endpoint %s", record.name)
        self._notify(record.name)
        return {}

    async def update_endpoint(self, params: dict[str, Any], region: str) -> dict[str, Any]:
        record = self._get(ENDPOINT, params["EndpointName"], region)
        self._check_updatable(record)
        config = self._get(ENDPOINT_CONFIG, params["EndpointConfigName"], region)
        models = {}
        for variant in config.doc["ProductionVariants"]:
            models[variant["ModelName"]] = self._get(MODEL, variant["ModelName"], region).doc

        config_doc = config.doc
        if params.get("RetainAllVariantProperties"):
            config_doc = _retain_variant_properties(config_doc, record.doc)
        # A config created while the server allowed more instances is checked again.
        for variant in config_doc["ProductionVariants"]:
            self._check_instance_count(variant["VariantName"], variant.get("InitialInstanceCount"))
        started = now()
        record.spec["Pending"] = {
            "DeploymentId": uuid.uuid4().hex[:12],
            "EndpointConfig": config_doc,
            "Models": models,
        }
        record.doc["PendingDeploymentSummary"] = {
            "EndpointConfigName": config.name,
            "StartTime": started,
            "ProductionVariants": [
                {
                    "VariantName": variant["VariantName"],
                    "DesiredWeight": variant.get("InitialVariantWeight", 1.0),
                    "DesiredInstanceCount": variant.get("InitialInstanceCount", 1),
                    "VariantStatus": [{"Status": "Creating", "StartTime": started}],
                }
                for variant in config_doc["ProductionVariants"]
            ],
        }
        set_status(record, "Updating", record.doc.get("FailureReason"))
        self._store.update(record)
        logger.info("Updating endpoint %s to config %s", record.name, config.name)
        self._notify(record.name)
        return {"EndpointArn": record.doc["EndpointArn"]}

    async def update_endpoint_weights_and_capacities(
        self, params: dict[str, Any], region: str
    ) -> dict[str, Any]:
        record = self._get(ENDPOINT, params["EndpointName"], region)
        self._check_updatable(record)
        current = {variant["VariantName"]: variant for variant in record.doc["ProductionVariants"]}
        desired: dict[str, dict[str, Any]] = {}
        for change in params["DesiredWeightsAndCapacities"]:
            name = change["VariantName"]
            if name not in current:
                raise ValidationException(
                    f"The variant name(s) [{name}] is/are not present in the endpoint "
                    f'"{record.doc["EndpointArn"]}". Its variants are: {", ".join(current)}.'
                )
            self._check_instance_count(name, change.get("DesiredInstanceCount"))
            desired[name] = {
                key: change[key]
                for key in ("DesiredWeight", "DesiredInstanceCount")
                if key in change
            }

        # Every change is checked before any is applied, so a rejected request
        # leaves the endpoint as it was.
        for name, change in desired.items():
            current[name].update(change)

        record.spec["DesiredWeightsAndCapacities"] = desired
        set_status(record, "Updating")
        self._store.update(record)
        logger.info("Changing weights and capacities of endpoint %s", record.name)
        self._notify(record.name)
        return {"EndpointArn": record.doc["EndpointArn"]}

    # Shared steps.

    def _check_instance_count(self, variant_name: str, count: int | None) -> None:
        # Every instance is a process on this machine, so a typo such as 1000
        # must not start a thousand of them. SageMaker enforces quotas the same way.
        if count is not None and count > self._max_instances:
            raise ResourceLimitExceeded(
                f"Production variant {variant_name} asks for {count} instances, but this server "
                f"allows at most {self._max_instances} per variant. Ask for fewer, or start "
                "sageport serve with a higher --max-instances-per-variant."
            )

    def _creation_bound(self, record: Record) -> str:
        variants = record.spec["EndpointConfig"]["ProductionVariants"]
        download = max(
            float(v.get("ModelDataDownloadTimeoutInSeconds") or DEFAULT_DOWNLOAD_TIMEOUT)
            for v in variants
        )
        startup = max(
            float(v.get("ContainerStartupHealthCheckTimeoutInSeconds") or self._startup_timeout)
            for v in variants
        )
        return (
            f"It is Creating, and becomes InService or Failed once its model data is fetched "
            f"(within {download:g} seconds, ModelDataDownloadTimeoutInSeconds) and its instances "
            f"pass /ping (within {startup:g} seconds, ContainerStartupHealthCheckTimeoutInSeconds),"
            " plus the time to install a code/requirements.txt. Delete it then."
        )

    def _check_updatable(self, record: Record) -> None:
        arn = record.doc["EndpointArn"]
        if record.status in IN_PROGRESS:
            raise ValidationException(f'Cannot update in-progress endpoint "{arn}".')
        if record.status != "InService":
            raise ValidationException(
                f'Cannot update endpoint "{arn}" because its status is {record.status}. '
                "Delete it and create it again."
            )

    def _get(self, kind: str, name: str, region: str) -> Record:
        record = self._store.get(kind, name)
        if record is None:
            raise ValidationException(
                f'Could not find {_NOUNS[kind]} "{self._arns.of(kind, region, name)}".'
            )
        return record

    def _insert(self, record: Record, duplicate_message: str) -> None:
        try:
            self._store.insert(record)
        except AlreadyExists:
            raise ValidationException(duplicate_message) from None


_NOUNS = {MODEL: "model", ENDPOINT_CONFIG: "endpoint configuration", ENDPOINT: "endpoint"}


def set_status(record: Record, status: str, failure_reason: str | None = None) -> None:
    """Change an endpoint's status in its record (the caller stores it)."""
    record.status = status
    record.doc["EndpointStatus"] = status
    record.doc["LastModifiedTime"] = now()
    if failure_reason is None:
        record.doc.pop("FailureReason", None)
    else:
        # DescribeEndpoint's FailureReason is at most 1024 characters.
        record.doc["FailureReason"] = failure_reason[:1024]


def _containers(params: dict[str, Any]) -> list[dict[str, Any]]:
    if "PrimaryContainer" in params:
        return [params["PrimaryContainer"]]
    return list(params.get("Containers") or [])


def _with_variant_defaults(variant: dict[str, Any]) -> dict[str, Any]:
    variant = dict(variant)
    variant.setdefault("InitialVariantWeight", 1.0)
    if "ServerlessConfig" not in variant:
        variant.setdefault("InitialInstanceCount", 1)
    return variant


def _retain_variant_properties(config: dict[str, Any], endpoint: dict[str, Any]) -> dict[str, Any]:
    """Keep the running weights and instance counts of variants the new config shares."""
    running = {
        variant["VariantName"]: variant for variant in endpoint.get("ProductionVariants", [])
    }
    variants = []
    for configured in config["ProductionVariants"]:
        variant = dict(configured)
        current = running.get(variant["VariantName"])
        if current is not None:
            variant["InitialVariantWeight"] = current["CurrentWeight"]
            variant["InitialInstanceCount"] = current["CurrentInstanceCount"]
        variants.append(variant)
    return {**config, "ProductionVariants": variants}


def _check_unique_variants(variants: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for variant in variants:
        key = variant["VariantName"].lower()
        if key in seen:
            raise ValidationException(
                f"Production variant names must be unique: {variant['VariantName']} appears twice."
            )
        seen.add(key)
