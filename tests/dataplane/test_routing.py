"""Routing: variant choice by weight or target, instance choice by least outstanding requests."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from sageport.dataplane.invoke import wait_for_instance
from sageport.dataplane.routing import EndpointRoute, InstanceRoute, RoutingTable, VariantRoute
from sageport.errors import ValidationError


def make_instances(count: int) -> list[InstanceRoute]:
    return [InstanceRoute(f"i-{index}", f"/tmp/none-{index}.sock", 1) for index in range(count)]


def make_route(*variants: tuple[str, float]) -> EndpointRoute:
    return EndpointRoute(
        "ep",
        [VariantRoute(name, weight, make_instances(1), 60.0) for name, weight in variants],
        "arn:log",
    )


def test_least_outstanding_instance_is_picked() -> None:
    # aiohttp sessions must be made inside a running loop.
    async def check() -> None:
        instances = make_instances(3)
        instances[0].in_flight = 2
        instances[1].in_flight = 0
        instances[2].in_flight = 1
        variant = VariantRoute("v", 1.0, instances, 60.0)

        assert variant.pick_instance() is instances[1]
        instances[1].healthy = False
        assert variant.pick_instance() is instances[2]
        for instance in instances:
            instance.healthy = False
        assert variant.pick_instance() is None
        for instance in instances:
            await instance.close()

    asyncio.run(check())


def test_weights_split_traffic() -> None:
    # aiohttp sessions must be made inside a running loop.
    async def check() -> None:
        route = make_route(("a", 2.0), ("b", 1.0), ("zero", 0.0))
        random.seed(7)

        counts = Counter(route.pick_variant(None).name for _ in range(6000))

        # Expected 4000 / 2000 / 0; the bounds are about five standard deviations.
        assert 3820 <= counts["a"] <= 4180
        assert 1820 <= counts["b"] <= 2180
        assert counts["zero"] == 0
        await route.close()

    asyncio.run(check())


def test_target_variant_overrides_weight() -> None:
    # aiohttp sessions must be made inside a running loop.
    async def check() -> None:
        route = make_route(("a", 1.0), ("zero", 0.0))

        assert route.pick_variant("zero").name == "zero"
        with pytest.raises(ValidationError, match="has no production variant nope"):
            route.pick_variant("nope")
        await route.close()

    asyncio.run(check())


def test_all_zero_weights_need_a_target() -> None:
    # aiohttp sessions must be made inside a running loop.
    async def check() -> None:
        route = make_route(("a", 0.0), ("b", 0.0))

        with pytest.raises(ValidationError, match="weight 0"):
            route.pick_variant(None)
        await route.close()

    asyncio.run(check())


def test_table_swaps_routes_and_tracks_starting() -> None:
    # aiohttp sessions must be made inside a running loop.
    async def check() -> None:
        table = RoutingTable()
        table.starting.add("ep")
        first = make_route(("a", 1.0))
        second = make_route(("a", 1.0))

        assert table.put(first) is None
        assert "ep" not in table.starting
        assert table.put(second) is first
        assert table.get("ep") is second
        assert table.get("EP") is None
        assert table.remove("ep") is second
        assert table.get("ep") is None
        await first.close()
        await second.close()

    asyncio.run(check())


def test_starting_route_awaited_until_installed() -> None:
    async def check() -> None:
        table = RoutingTable(ready_wait=60.0)
        table.starting.add("ep")
        route = make_route(("a", 1.0))

        waiter = asyncio.create_task(table.wait_for_route("ep"))
        await asyncio.sleep(0)
        pending = not waiter.done()
        table.put(route)
        found = await waiter

        assert pending
        assert found is route
        await route.close()

    asyncio.run(check())


def test_starting_route_wait_bounded() -> None:
    async def check() -> None:
        table = RoutingTable(ready_wait=0.01)
        table.starting.add("ep")

        found = await table.wait_for_route("ep")

        assert found is None
        assert "ep" in table.starting
        assert await table.wait_for_route("unknown") is None

    asyncio.run(check())


def test_restarting_instance_awaited() -> None:
    async def check() -> None:
        route = make_route(("a", 1.0))
        variant = route.variants[0]
        (instance,) = variant.instances
        instance.healthy = False
        deadline = asyncio.get_running_loop().time() + 60

        waiter = asyncio.create_task(wait_for_instance(variant, variant.pick_instance, deadline))
        await asyncio.sleep(0)
        pending = not waiter.done()
        instance.healthy = True
        found = await waiter

        assert pending
        assert found is instance
        await route.close()

    asyncio.run(check())


def test_unhealthy_instance_wait_bounded() -> None:
    async def check() -> None:
        route = make_route(("a", 1.0))
        variant = route.variants[0]
        variant.instances[0].healthy = False
        deadline = asyncio.get_running_loop().time() + 0.01

        found = await wait_for_instance(variant, variant.pick_instance, deadline)

        assert found is None
        await route.close()

    asyncio.run(check())
