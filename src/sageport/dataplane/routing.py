"""The in-memory routing table: endpoint → production variant → instance.

The reconciler builds an ``EndpointRoute`` off to the side and swaps it in with
one dict assignment, so an invocation never reads the store and never sees a
half-built endpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import aiohttp

from sageport.errors import ServiceUnavailable, ValidationError


class InstanceRoute:
    """One instance as the data plane sees it: a connection pool and a load count."""

    def __init__(self, instance_id: str, socket_path: str, workers: int) -> None:
        self.instance_id = instance_id
        self.socket_path = socket_path
        self.in_flight = 0
        self.healthy = True
        # One connection per runtime worker: a worker serves one connection at a
        # time, so more connections would only wait in its accept queue, and
        # requests past ``workers`` queue here, where they can be counted.
        connector = aiohttp.UnixConnector(path=socket_path, limit=workers, force_close=False)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        await self.session.close()


@dataclass
class VariantRoute:
    """A production variant and its instances."""

    name: str
    weight: float
    instances: list[InstanceRoute]
    timeout: float

    def pick_instance(self) -> InstanceRoute | None:
        """Return the healthy instance with the fewest requests in flight."""
        best: InstanceRoute | None = None
        for instance in self.instances:
            if instance.healthy and (best is None or instance.in_flight < best.in_flight):
                best = instance
        return best


@dataclass
class EndpointRoute:
    """A servable endpoint."""

    name: str
    variants: list[VariantRoute]
    log_group_arn: str
    _by_name: dict[str, VariantRoute] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {variant.name: variant for variant in self.variants}

    def pick_variant(self, target: str | None) -> VariantRoute:
        """Choose by TargetVariant, else at random in proportion to the weights."""
        if target is not None:
            variant = self._by_name.get(target)
            if variant is None:
                raise ValidationError(
                    f"Endpoint {self.name} has no production variant {target}. "
                    f"Its variants are: {', '.join(self._by_name)}."
                )
            return variant
        if len(self.variants) == 1:
            return self.variants[0]
        weights = [variant.weight for variant in self.variants]
        if sum(weights) <= 0:
            raise ValidationError(
                f"Every production variant of endpoint {self.name} has weight 0; "
                "name one with TargetVariant or give one a positive weight."
            )
        return random.choices(self.variants, weights)[0]  # noqa: S311 - traffic split, not security

    async def close(self) -> None:
        for variant in self.variants:
            for instance in variant.instances:
                await instance.close()


class RoutingTable:
    """Servable endpoints by exact name, as InvokeEndpoint must use the stored case."""

    def __init__(self) -> None:
        self._routes: dict[str, EndpointRoute] = {}
        # Endpoints that are InService in the store but still starting after a
        # server restart: callers get a retryable error instead of "not found".
        self.starting: set[str] = set()

    def get(self, name: str) -> EndpointRoute | None:
        return self._routes.get(name)

    def put(self, route: EndpointRoute) -> EndpointRoute | None:
        """Install a route; return the one it replaced, for the caller to close."""
        previous = self._routes.get(route.name)
        self._routes[route.name] = route
        self.starting.discard(route.name)
        return previous

    def remove(self, name: str) -> EndpointRoute | None:
        self.starting.discard(name)
        return self._routes.pop(name, None)

    def names(self) -> list[str]:
        return list(self._routes)

    def unavailable(self, name: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Endpoint {name} is starting its instances after a server restart. Retry shortly."
        )
