"""The in-memory routing table: endpoint → production variant → instance.

The reconciler builds an ``EndpointRoute`` off to the side and swaps it in with
one dict assignment, so an invocation never reads the store and never finds a
half-built endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp

from sageport.dataplane.upstream import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamPool,
)
from sageport.errors import ServiceUnavailable, ValidationError

if TYPE_CHECKING:
    from sageport.dataplane.multimodel import MultiModelVariant

# A Unix socket connect either succeeds at once or fails; this only guards
# against an instance too wedged to accept.
CONNECT_TIMEOUT = 5.0


# SageMaker's health check gives a container 2 seconds to respond to /ping.
PING_TIMEOUT = 2.0


class InstanceRoute:
    """One instance as the data plane tracks it: a connection pool and a load count."""

    def __init__(self, instance_id: str, address: str, workers: int, max_queued: int = 100) -> None:
        """``address`` is a Unix socket path, or ``host:port`` for TCP."""
        self.instance_id = instance_id
        self.address = address
        self.workers = workers
        self.in_flight = 0
        # Set while the instance passes its health checks; callers wait on it
        # while the instance starts or restarts.
        self._healthy = asyncio.Event()
        self._healthy.set()
        # Requests in flight past this wait too long to be worth queueing:
        # callers get a retryable error at once instead (back-pressure).
        self.capacity = workers + max_queued
        # One connection per runtime worker: a worker serves one connection at a
        # time, so more connections would only wait in its accept queue, and
        # requests past ``workers`` queue here, where they can be counted.
        connector: aiohttp.BaseConnector
        if address.startswith("/"):
            connector = aiohttp.UnixConnector(path=address, limit=workers)
            self.base_url = "http://instance"
        else:
            connector = aiohttp.TCPConnector(limit=workers)
            self.base_url = f"http://{address}"
        self.invocations_url = f"{self.base_url}/invocations"
        # Invocations go through the lean pool; streams and pings through aiohttp.
        self.upstream = UpstreamPool(address, workers)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    @property
    def healthy(self) -> bool:
        """Whether requests may be sent to the instance."""
        return self._healthy.is_set()

    @healthy.setter
    def healthy(self, value: bool) -> None:
        if value:
            self._healthy.set()
        else:
            self._healthy.clear()

    async def wait_until_healthy(self) -> None:
        await self._healthy.wait()

    async def ping(self) -> bool:
        """Return whether the instance responds to ``GET /ping`` with 200 in time."""
        try:
            response = await self.upstream.get(b"/ping", PING_TIMEOUT)
        except (UpstreamConnectError, UpstreamDisconnected, TimeoutError):
            return False
        return response.status == 200

    async def close(self) -> None:
        await self.upstream.close()
        await self.session.close()


@dataclass
class VariantRoute:
    """A production variant and its instances."""

    name: str
    weight: float
    instances: list[InstanceRoute]
    timeout: float
    client_timeout: aiohttp.ClientTimeout = field(init=False, repr=False)
    # Set for a model with Mode MultiModel: its archives and loaded models.
    multi_model: MultiModelVariant | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # The deadline covers the model's work, from the request being sent to
        # the response, not the time a request waits for a free worker: that
        # wait is bounded by each instance's capacity instead.
        self.client_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=self.timeout
        )

    def pick_instance(self, exclude: frozenset[str] = frozenset()) -> InstanceRoute | None:
        """Return the healthy instance with the fewest requests in flight."""
        best: InstanceRoute | None = None
        for instance in self.instances:
            if not instance.healthy or instance.instance_id in exclude:
                continue
            if best is None or instance.in_flight < best.in_flight:
                best = instance
        return best

    async def wait_for_healthy(self, deadline: float) -> bool:
        """Wait until an instance is healthy; return False if ``deadline`` passed first.

        ``deadline`` is on the event loop's clock. A variant without instances
        returns False at once.
        """
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0 or not self.instances:
            return False
        waits = [
            asyncio.ensure_future(instance.wait_until_healthy()) for instance in self.instances
        ]
        try:
            done, _ = await asyncio.wait(
                waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for wait in waits:
                wait.cancel()
        return bool(done)


@dataclass
class EndpointRoute:
    """A servable endpoint."""

    name: str
    variants: list[VariantRoute]
    log_group_arn: str
    # Seconds an invocation waits for an instance that is starting or
    # restarting before it gets ServiceUnavailable.
    ready_wait: float = 0.0
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

    def __init__(self, ready_wait: float = 0.0) -> None:
        self._routes: dict[str, EndpointRoute] = {}
        # Endpoints that are InService in the store but still starting after a
        # server restart: callers wait up to ``ready_wait`` seconds for them,
        # then get a retryable error instead of "not found".
        self.starting: set[str] = set()
        self.ready_wait = ready_wait
        # Resolved, and replaced, whenever a route is installed or removed.
        self._changed: asyncio.Future[None] | None = None

    def get(self, name: str) -> EndpointRoute | None:
        return self._routes.get(name)

    async def wait_for_route(self, name: str) -> EndpointRoute | None:
        """Return the endpoint's route, waiting up to ``ready_wait`` seconds while it starts.

        Returns None for an endpoint that is not starting and has no route, or
        that is still starting when the wait ends.
        """
        route = self._routes.get(name)
        if route is not None or name not in self.starting:
            return route

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_wait
        while route is None and name in self.starting:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._changed is None:
                self._changed = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            route = self._routes.get(name)
        return route

    def put(self, route: EndpointRoute) -> EndpointRoute | None:
        """Install a route; return the one it replaced, for the caller to close."""
        previous = self._routes.get(route.name)
        self._routes[route.name] = route
        self.starting.discard(route.name)
        self._wake_waiters()
        return previous

    def remove(self, name: str) -> EndpointRoute | None:
        self.starting.discard(name)
        route = self._routes.pop(name, None)
        self._wake_waiters()
        return route

    def _wake_waiters(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def names(self) -> list[str]:
        return list(self._routes)

    def unavailable(self, name: str) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"Endpoint {name} is starting its instances after a server restart. Retry shortly."
        )
