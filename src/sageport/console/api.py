"""The console's JSON API under ``/console/api/``: listing, describing, logs and test invocations.

It calls the control plane and the data plane in-process, so the server does
the invoking and the timing; ``docs/console.md`` documents each route. Errors
are JSON objects ``{"error": {"code": ..., "message": ...}}`` with the status
of the underlying ``SageportError``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from sageport.auth.origin import is_cross_origin
from sageport.config import Settings
from sageport.console.bodies import read_json_object
from sageport.console.invocations import Invoker
from sageport.console.responses import (
    BadRequest,
    CrossOrigin,
    NotFound,
    NotSignedIn,
    send_error,
    send_json,
)
from sageport.console.sessions import Session
from sageport.console.signin import SIGN_IN_PAGE, ConsoleSignIn, describe
from sageport.control.plane import ControlPlane
from sageport.dataplane.routing import RoutingTable
from sageport.errors import SageportError, ValidationException
from sageport.protocol.asgi import Receive, Scope, Send, header
from sageport.telemetry.logs import InvalidEndpointName, instance_logs

logger = logging.getLogger("sageport.console")

API_PREFIX = "/console/api/"
# Every SageMaker endpoint status, in the order the list's filter offers them.
ENDPOINT_STATUSES = (
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
)
SORT_KEYS = ("Name", "CreationTime", "Status")
MAX_PAGE_SIZE = 100
DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 5000
# Only the tail of each log file is read, so a chatty model cannot make the page slow.
MAX_LOG_BYTES = 512 * 1024
# A 6 MiB body (the real-time limit) in base64, plus room for the other members.
MAX_INVOKE_ENVELOPE = 9 * 2**20


class ConsoleAPI:
    """Routes ``/console/api/...`` requests to small handlers that return JSON."""

    def __init__(
        self,
        control: ControlPlane,
        routing: RoutingTable,
        settings: Settings,
        sign_in: Callable[[], ConsoleSignIn | None] = lambda: None,
    ) -> None:
        self._control = control
        self._settings = settings
        self.invoker = Invoker(routing, settings)
        # Returns None while authentication is off: every request is then served.
        self._current_sign_in = sign_in

    @property
    def _sign_in(self) -> ConsoleSignIn | None:
        return self._current_sign_in()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Split the raw path, so an encoded "/" in a name stays inside its segment.
        raw_path = scope.get("raw_path") or scope["path"].encode()
        relative = raw_path.decode("latin-1")[len(API_PREFIX) :]
        segments = [unquote(part) for part in relative.split("/")]
        try:
            if scope["method"] == "POST":
                _check_same_origin(scope)
            session = self._admit(scope, segments)
            handled = await self._dispatch(scope, receive, send, segments, session)
        except SageportError as exc:
            logger.info("Console API %s %s failed: %s", scope["method"], scope["path"], exc.code)
            await send_error(send, exc)
            return
        if not handled:
            message = (
                f"No console API route {scope['method']} {scope['path']}; see docs/console.md."
            )
            await send_json(send, 404, {"error": {"code": "NotFound", "message": message}})

    def _admit(self, scope: Scope, segments: list[str]) -> Session | None:
        """Return the request's session; raise NotSignedIn or CsrfRejected to reject it.

        ``/console/api/session`` is open, because it is where a browser signs
        in and learns whether it is signed in. Every other route needs a
        session, and every POST also needs the session's CSRF token, checked
        before the body is read.
        """
        if self._sign_in is None:
            return None
        if segments == ["session"]:
            return self._sign_in.authenticate(scope)
        return self._sign_in.require(scope, state_changing=scope["method"] == "POST")

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        segments: list[str],
        session: Session | None,
    ) -> bool:
        method = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)

        if segments == ["session"]:
            return await self._session_route(scope, receive, send, session)
        if segments == ["signout"] and method == "POST" and self._sign_in and session:
            await self._sign_in.sign_out(scope, send, session)
        elif segments[0] == "endpoints" and len(segments) == 1 and method == "GET":
            await send_json(send, 200, await self.list_endpoints(query))
        elif segments[0] == "endpoints" and len(segments) == 2 and method == "GET":
            await send_json(send, 200, await self.describe(segments[1]))
        elif segments[0] == "endpoints" and segments[2:] == ["logs"] and method == "GET":
            await send_json(send, 200, self.logs(segments[1], query))
        elif segments[0] == "endpoints" and segments[2:] == ["invocations"] and method == "POST":
            envelope = await _read_envelope(scope, receive)
            await self.invoker.handle(segments[1], envelope, receive, send)
        elif segments[0] == "results" and len(segments) == 2 and method in ("GET", "HEAD"):
            download = "download" in query
            await self.invoker.send_result(segments[1], download, method == "HEAD", send)
        elif segments[0] == "settings" and len(segments) == 1 and method == "GET":
            await send_json(send, 200, self.console_settings())
        else:
            return False
        return True

    async def _session_route(
        self, scope: Scope, receive: Receive, send: Send, session: Session | None
    ) -> bool:
        method = scope["method"]
        if method == "GET" and self._sign_in is None:
            await send_json(send, 200, {"auth": "none", "signed_in": False})
        elif method == "GET" and session is not None:
            await send_json(send, 200, describe(session))
        elif method == "GET":
            raise NotSignedIn(f"You are not signed in. Sign in at {SIGN_IN_PAGE}.")
        elif method == "POST" and self._sign_in is not None:
            await self._sign_in.sign_in(scope, receive, send)
        elif method == "POST":
            raise BadRequest("Sign-in is not needed: this server runs with --auth none.")
        else:
            return False
        return True

    async def list_endpoints(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Return one page of endpoints and the total that match the filters."""
        params = _list_params(query)
        page = _int_param(query, "page", 1, 1, 1_000_000)
        page_size = _int_param(query, "page_size", 20, 1, MAX_PAGE_SIZE)

        # ListEndpoints has no total, so the console walks every page for an accurate count.
        summaries: list[dict[str, Any]] = []
        while True:
            output = await self._control.call("ListEndpoints", params, self._settings.region)
            summaries.extend(output["Endpoints"])
            if "NextToken" not in output:
                break
            params["NextToken"] = output["NextToken"]

        window = summaries[(page - 1) * page_size : page * page_size]
        rows = [await self._summary_with_variants(summary) for summary in window]
        return {"endpoints": rows, "total": len(summaries), "page": page, "page_size": page_size}

    async def _summary_with_variants(self, summary: dict[str, Any]) -> dict[str, Any]:
        row = dict(summary)
        try:
            detail = await self.describe(summary["EndpointName"])
        except SageportError:
            # Deleted between the list and the describe: show the row without variants.
            row["Variants"] = []
            return row
        row["Variants"] = detail["variants"]
        return row

    async def describe(self, name: str) -> dict[str, Any]:
        """Return the endpoint, its endpoint config and models, merged per variant."""
        region = self._settings.region
        try:
            endpoint = await self._control.call("DescribeEndpoint", {"EndpointName": name}, region)
        except ValidationException as exc:
            raise NotFound(exc.message) from None

        config = await self._optional(
            "DescribeEndpointConfig", "EndpointConfigName", endpoint["EndpointConfigName"]
        )
        running = {
            variant["VariantName"]: variant for variant in endpoint.get("ProductionVariants", [])
        }
        variants = []
        for variant in (config or {}).get("ProductionVariants", []):
            current = running.get(variant["VariantName"], {})
            variants.append(
                {
                    "VariantName": variant["VariantName"],
                    "ModelName": variant.get("ModelName"),
                    "InstanceType": variant.get("InstanceType"),
                    "InitialInstanceCount": variant.get("InitialInstanceCount"),
                    "CurrentInstanceCount": current.get("CurrentInstanceCount"),
                    "InitialVariantWeight": variant.get("InitialVariantWeight"),
                    "CurrentWeight": current.get("CurrentWeight"),
                }
            )
        models = {}
        for variant in variants:
            model_name = variant["ModelName"]
            if model_name and model_name not in models:
                models[model_name] = await self._optional("DescribeModel", "ModelName", model_name)
        return {"endpoint": endpoint, "config": config, "models": models, "variants": variants}

    async def _optional(self, operation: str, member: str, name: str) -> dict[str, Any] | None:
        # A config or model may be deleted while the endpoint keeps running.
        try:
            return await self._control.call(operation, {member: name}, self._settings.region)
        except ValidationException:
            return None

    def logs(self, name: str, query: dict[str, list[str]]) -> dict[str, Any]:
        """Return the last lines of each instance's output, oldest instance first."""
        tail = _int_param(query, "tail", DEFAULT_LOG_LINES, 1, MAX_LOG_LINES)
        instances = []
        try:
            logs = instance_logs(self._settings.logs_dir, name)
        except InvalidEndpointName as exc:
            raise BadRequest(str(exc)) from None
        for log in logs:
            with log.path.open("rb") as file:
                size = file.seek(0, 2)
                file.seek(max(0, size - MAX_LOG_BYTES))
                text = file.read().decode("utf-8", errors="replace")
            instances.append(
                {
                    "variant": log.variant,
                    "instance_id": log.instance_id,
                    "modified": log.path.stat().st_mtime,
                    "lines": text.splitlines()[-tail:],
                }
            )
        return {"endpoint": name, "instances": instances, "read_at": time.time()}

    def console_settings(self) -> dict[str, Any]:
        return {
            "region": self._settings.region,
            "custom_url_allowed": bool(self._settings.allowed_test_targets),
            "statuses": list(ENDPOINT_STATUSES),
        }


def _check_same_origin(scope: Scope) -> None:
    """Reject cross-site POSTs, so another web page cannot make a browser invoke endpoints.

    A form on another site can POST a text/plain body that parses as JSON, but it
    cannot set Content-Type: application/json without a CORS preflight, which
    the console never grants. The Origin check rejects the rest.
    """
    content_type = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise BadRequest("Send console API requests with Content-Type: application/json.")

    if is_cross_origin(scope):
        raise CrossOrigin(
            "Cross-origin requests to the console API are rejected: open the console "
            "at the server's own address."
        )


def _list_params(query: dict[str, list[str]]) -> dict[str, Any]:
    params: dict[str, Any] = {"MaxResults": MAX_PAGE_SIZE}
    search = _str_param(query, "search")
    if search:
        params["NameContains"] = search
    status = _str_param(query, "status")
    if status:
        if status not in ENDPOINT_STATUSES:
            raise BadRequest(
                f"Unknown status {status!r}; use one of {', '.join(ENDPOINT_STATUSES)}."
            )
        params["StatusEquals"] = status
    sort = _str_param(query, "sort") or "CreationTime"
    if sort not in SORT_KEYS:
        raise BadRequest(f"Unknown sort key {sort!r}; use one of {', '.join(SORT_KEYS)}.")
    params["SortBy"] = sort
    order = _str_param(query, "order") or "Descending"
    if order not in ("Ascending", "Descending"):
        raise BadRequest(f"Unknown order {order!r}; use Ascending or Descending.")
    params["SortOrder"] = order
    return params


def _str_param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0].strip() if values else ""


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = _str_param(query, name)
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadRequest(
            f"Query parameter {name}={text!r} is invalid: use a whole number from {low} to {high}."
        )
    return int(text)


async def _read_envelope(scope: Scope, receive: Receive) -> dict[str, Any]:
    # A 6 MiB body in base64 is the largest envelope a real-time invocation needs.
    return await read_json_object(
        scope,
        receive,
        MAX_INVOKE_ENVELOPE,
        "The test request",
        "A real-time invocation body may be at most 6 MiB.",
    )
