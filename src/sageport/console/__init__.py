"""The web console: endpoint pages and the small JSON API they fetch."""

from __future__ import annotations

import json

from sageport.config import Settings
from sageport.control.plane import ControlPlane
from sageport.dataplane.routing import RoutingTable
from sageport.protocol.asgi import Receive, Scope, Send, send_response


class Console:
    """Serves every path the APIs do not claim."""

    def __init__(self, control: ControlPlane, routing: RoutingTable, settings: Settings) -> None:
        self._control = control
        self._routing = routing
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = json.dumps({"message": f"No such page: {scope['method']} {scope['path']}"}).encode()
        await send_response(send, 404, [(b"content-type", b"application/json")], body)
