"""Assemble the server: one ASGI application serving every API on one port.

Dispatch is by path and header, as the clients send it: ``/endpoints/...`` is
the runtime (REST-JSON), ``POST /`` with ``X-Amz-Target`` is the control plane
(AWS JSON 1.1), ``GET /ping`` is the server's own health check, and everything
else belongs to the console.
"""

from __future__ import annotations

import logging

from sageport.auth.keys import KeyRing
from sageport.auth.sigv4 import SigV4Verifier
from sageport.config import Settings
from sageport.console import Console
from sageport.console.signin import ConsoleSignIn
from sageport.control.arns import Arns
from sageport.control.plane import ControlPlane
from sageport.dataplane.asynchronous import AsyncInvocations
from sageport.dataplane.routing import RoutingTable
from sageport.protocol.asgi import Receive, Scope, Send, header, send_response
from sageport.protocol.control_api import ControlPlaneAPI
from sageport.protocol.models import control_plane_model, runtime_model
from sageport.protocol.runtime_api import PREFIX, RuntimeAPI
from sageport.reconcile import Reconciler
from sageport.store import Store

logger = logging.getLogger("sageport.app")


class Application:
    """The ASGI application; the store opens and instances start in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.store_path)
        self.routing = RoutingTable(settings.instance_ready_wait)
        arns = Arns(settings.account_id)
        self.reconciler = Reconciler(settings, self.store, self.routing, arns)
        self.control = ControlPlane(
            self.store, arns, self.reconciler.notify, settings.max_instances_per_variant
        )
        self.keys = KeyRing(settings.credentials_path, settings.environment_keys)
        authenticate = SigV4Verifier(self.keys) if settings.auth_mode == "sigv4" else None
        self._control_api = ControlPlaneAPI(self.control, settings.region, authenticate)
        self.async_invocations = AsyncInvocations(self.store, self.routing, settings.account_id)
        self._runtime_api = RuntimeAPI(
            self.routing, settings.account_id, authenticate, self.async_invocations
        )
        # Console sign-in checks secrets against the same key ring as SigV4.
        self.console_sign_in = (
            ConsoleSignIn(self.keys, settings.port) if settings.auth_mode == "sigv4" else None
        )
        self._console = Console(self.control, self.routing, settings, self.console_sign_in)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["raw_path"]
        if path.startswith(PREFIX):
            await self._runtime_api(scope, receive, send)
        elif path == b"/" and scope["method"] == "POST" and header(scope, b"x-amz-target"):
            await self._control_api(scope, receive, send)
        elif path == b"/ping":
            await send_response(send, 200, [(b"content-type", b"text/plain")], b"", scope)
        else:
            await self._console(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Loading botocore's service models takes about a second; do it
                # now rather than in the first request.
                control_plane_model()
                runtime_model()
                await self.reconciler.recover()
                self.async_invocations.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # The async worker stops first: an invocation it abandons goes
                # back to the queue, but one whose instance stops under it
                # would be recorded as failed.
                await self.async_invocations.stop()
                logger.info("Stopping instances")
                await self.reconciler.close()
                self.store.close()
                logger.info("Stopped instances")
                await send({"type": "lifespan.shutdown.complete"})
                return
