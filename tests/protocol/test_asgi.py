"""The ASGI helpers shared by the API handlers."""

from __future__ import annotations

import asyncio
import uuid

from sageport.protocol.asgi import (
    DISCONNECTED_EXTENSION,
    Message,
    caller_gone_watch,
    new_request_id,
)


def test_request_id_is_version_4_uuid() -> None:
    for _ in range(1000):
        request_id = new_request_id()
        parsed = uuid.UUID(request_id)

        assert str(parsed) == request_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_request_ids_differ() -> None:
    ids = {new_request_id() for _ in range(1000)}

    assert len(ids) == 1000


async def _receive() -> Message:
    return {"type": "http.disconnect"}


def test_disconnect_watch_uses_extension_future() -> None:
    async def check() -> None:
        disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        scope = {"type": "http", "extensions": {DISCONNECTED_EXTENSION: {"future": disconnected}}}

        watch = caller_gone_watch(scope, _receive)

        assert watch() is disconnected

    asyncio.run(check())


def test_disconnect_watch_falls_back_to_receive() -> None:
    assert caller_gone_watch({"type": "http"}, _receive) is _receive
    assert caller_gone_watch({"type": "http", "extensions": None}, _receive) is _receive
    assert caller_gone_watch({"type": "http", "extensions": {}}, _receive) is _receive
