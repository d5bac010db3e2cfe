"""Assemble the server: one ASGI application serving every API on one port.

Dispatch is by path and header, as the clients send it: ``/endpoints/...`` is
the runtime (REST-JSON), a request with ``X-Amz-Target`` is the control plane
(AWS JSON 1.1, which answers only ``POST /``), ``GET /ping`` is the server's
own health check, and everything else belongs to the console.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from sageport.auth.keys import KeyRing
from sageport.auth.live import ServerAuth
from sageport.auth.origin import is_cross_origin, is_loopback_host
from sageport.config import Settings
from sageport.console import Console
from sageport.console.api import API_PREFIX
from sageport.console.responses import send_error
from sageport.console.signin import ConsoleSignIn
from sageport.control.arns import Arns
from sageport.control.plane import ControlPlane
from sageport.dataplane.asynchronous import AsyncInvocations
from sageport.dataplane.routing import RoutingTable
from sageport.errors import AccessDenied
from sageport.protocol.asgi import (
    Receive,
    Scope,
    Send,
    header,
    new_request_id,
    send_early_response,
    send_response,
)
from sageport.protocol.control_api import ControlPlaneAPI
from sageport.protocol.errors import render_control_plane_error, render_runtime_error
from sageport.protocol.models import control_plane_model, runtime_model
from sageport.protocol.runtime_api import PREFIX, RuntimeAPI
from sageport.reconcile import Reconciler
from sageport.store import Store

logger = logging.getLogger("sageport.app")

Plane = Literal["control", "runtime", "console"]


class Application:
    """The ASGI application; the store opens and instances start in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.store_path)
        self.routing = RoutingTable(settings.instance_ready_wait)
        arns = Arns(settings.account_id)
        self.reconciler = Reconciler(settings, self.store, self.routing, arns)
        self.control = ControlPlane(
            self.store,
            arns,
            self.reconciler.notify,
            settings.max_instances_per_variant,
            settings.startup_timeout,
        )
        self.keys = KeyRing(settings.credentials_path, settings.environment_keys)
        self.auth = ServerAuth(
            settings.auth_mode,
            self.keys,
            follow_keys=settings.auth_follows_keys,
            on_sigv4=self._publish_console_token,
        )
        self._control_api = ControlPlaneAPI(self.control, settings.region, self.auth)
        self.async_invocations = AsyncInvocations(self.store, self.routing, settings.account_id)
        self._runtime_api = RuntimeAPI(
            self.routing, settings.account_id, self.auth, self.async_invocations
        )
        # Console sign-in checks secrets against the same key ring as SigV4.
        # It applies only while the mode is sigv4, which may begin after start.
        self.console_sign_in = ConsoleSignIn(self.keys, settings.port)
        self._console = Console(self.control, self.routing, settings, self._active_sign_in)

    def _active_sign_in(self) -> ConsoleSignIn | None:
        return self.console_sign_in if self.auth.mode == "sigv4" else None

    def _publish_console_token(self) -> None:
        self.console_sign_in.publish_token(self.settings.data_dir, sys.stderr)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["raw_path"]
        plane = _plane_of(scope)
        rejection = self._check_addressing(scope, plane)
        if rejection is not None:
            await _send_rejection(scope, send, plane, rejection)
        elif plane == "runtime":
            await self._runtime_api(scope, receive, send)
        elif plane == "control":
            await self._control_api(scope, receive, send)
        elif path == b"/ping":
            await send_response(send, 200, [(b"content-type", b"text/plain")], b"", scope)
        else:
            await self._console(scope, receive, send)

    def _check_addressing(self, scope: Scope, plane: Plane) -> AccessDenied | None:
        """Return the AccessDenied for a misaddressed or cross-site request, else None."""
        host = header(scope, b"host")
        if self.auth.mode == "none" and not is_loopback_host(host):
            host_text = (host or b"").decode("latin-1")
            return AccessDenied(
                f"This server runs without authentication, so it serves only requests addressed "
                f"to localhost, 127.0.0.1 or [::1], not to Host {host_text[:200]!r}. Use "
                f"http://127.0.0.1:{self.settings.port}, or create an access key with "
                "'sageport keys create' to turn on SigV4, which accepts any host name."
            )
        if plane != "console" and is_cross_origin(scope):
            origin = (header(scope, b"origin") or b"").decode("latin-1")
            return AccessDenied(
                f"API requests sent by a web page of another origin ({origin[:200]!r}) are "
                "rejected. AWS SDKs and the AWS CLI send no Origin header."
            )
        return None

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


def _plane_of(scope: Scope) -> Plane:
    if scope["raw_path"].startswith(PREFIX):
        return "runtime"
    if header(scope, b"x-amz-target") is not None:
        return "control"
    return "console"


async def _send_rejection(scope: Scope, send: Send, plane: Plane, error: AccessDenied) -> None:
    """Reject a request before its body: AWS-shaped on the APIs, readable on the console."""
    client = scope.get("client")
    logger.debug("Rejected %s %s from %s: %s", scope["method"], scope["path"], client, error)
    if plane == "console" and scope["path"].startswith(API_PREFIX):
        await send_error(send, error)
        return
    if plane == "console":
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]
        await send_early_response(scope, send, 403, headers, error.message.encode() + b"\n")
        return
    render = render_runtime_error if plane == "runtime" else render_control_plane_error
    status, headers, body = render(error, new_request_id())
    await send_early_response(scope, send, status, headers, body)
