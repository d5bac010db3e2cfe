"""The web console: endpoint pages, their static assets and the JSON API they fetch.

``pages`` serves the HTML shell and assets, ``api`` the JSON routes under
``/console/api/``, ``invocations`` runs test requests, and ``targets`` and
``headers`` guard what a test request may reach and carry. With
authentication on, ``signin`` and ``sessions`` decide who may use the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from sageport.config import Settings
from sageport.console import pages
from sageport.console.api import API_PREFIX, ConsoleAPI
from sageport.console.responses import NotFound, send_error
from sageport.console.signin import SIGN_IN_PAGE, ConsoleSignIn
from sageport.control.plane import ControlPlane
from sageport.dataplane.routing import RoutingTable
from sageport.protocol.asgi import Receive, Scope, Send


class Console:
    """Serves every path the SageMaker APIs do not claim."""

    def __init__(
        self,
        control: ControlPlane,
        routing: RoutingTable,
        settings: Settings,
        sign_in: Callable[[], ConsoleSignIn | None] = lambda: None,
    ) -> None:
        self._api = ConsoleAPI(control, routing, settings, sign_in)
        # Returns None while authentication is off: every page is then open.
        self._current_sign_in = sign_in

    @property
    def _sign_in(self) -> ConsoleSignIn | None:
        return self._current_sign_in()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]

        if path.startswith(API_PREFIX):
            await self._api(scope, receive, send)
            return
        if method in ("GET", "HEAD"):
            if path == SIGN_IN_PAGE:
                await self._send_sign_in_page(send)
                return
            if pages.is_page(path):
                await self._send_page(scope, send)
                return
            if path.startswith(pages.STATIC_PREFIX) and await pages.send_static(send, path):
                return
        await send_error(
            send,
            NotFound(f"No such page: {method} {path}. The console starts at /."),
        )

    async def _send_sign_in_page(self, send: Send) -> None:
        if self._sign_in is None:
            await pages.send_redirect(send, "/")
            return
        await pages.send_page(send)

    async def _send_page(self, scope: Scope, send: Send) -> None:
        if self._sign_in is not None and self._sign_in.authenticate(scope) is None:
            # Only the path and query go into ?next=, and neither carries a secret.
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + (f"?{query}" if query else "")
            await pages.send_redirect(send, f"{SIGN_IN_PAGE}?next={quote(target, safe='')}")
            return
        await pages.send_page(send)
