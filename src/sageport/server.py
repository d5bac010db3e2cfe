"""Run the application under uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from sageport.app import Application
from sageport.config import Settings
from sageport.protocol.whole_response import http_protocol
from sageport.store.lock import lock_data_directory

logger = logging.getLogger("sageport.server")


class CannotListen(Exception):
    """A failure to bind the server's address, raised before anything has started."""


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve until a signal arrives; uvicorn then stops accepting, finishes
    in-flight requests and runs the lifespan shutdown, which stops instances.

    Raises DataDirectoryInUse when another server runs on the same data
    directory, and CannotListen when the address cannot be bound. Both are
    raised before the store opens or any instance starts.
    """
    lock = lock_data_directory(settings.data_dir)
    try:
        listeners = bind_listeners(settings.host, settings.port)
        try:
            _serve(settings, log_level, listeners)
        finally:
            for listener in listeners:
                listener.close()
    finally:
        lock.close()


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to, as asyncio's create_server does.

    uvicorn binds only after the application's startup, which recovers the
    data directory's endpoints and starts their instances. Binding first lets
    a busy port stop the server before anything starts.
    """
    address = _display_address(host, port)
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CannotListen(
            f"Cannot listen on {address}: the host name could not be resolved ({exc.strerror}). "
            "Choose another --host (or SAGEPORT_HOST)."
        ) from None

    listeners: list[socket.socket] = []
    try:
        for family, kind, protocol, _, socket_address in dict.fromkeys(infos):
            listeners.append(_bind(family, kind, protocol, socket_address, address))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _bind(
    family: int, kind: int, protocol: int, socket_address: tuple[Any, ...], address: str
) -> socket.socket:
    listener = socket.socket(family, kind, protocol)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # As asyncio does: an IPv6 socket must not also claim the IPv4 port.
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        listener.bind(socket_address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"Cannot listen on {address}: the address is already in use. Stop the program "
                "that uses it, or choose another --port (or SAGEPORT_PORT)."
            ) from None
        raise CannotListen(
            f"Cannot listen on {address}: {exc.strerror}. "
            "Choose another --host or --port (or SAGEPORT_HOST, SAGEPORT_PORT)."
        ) from None
    return listener


def _display_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _serve(settings: Settings, log_level: str, listeners: list[socket.socket]) -> None:
    app = Application(settings)
    server_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(settings.request_limits),
        loop="uvloop",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=5,
        limit_concurrency=settings.max_connections,
    )
    logger.info("Data directory: %s", settings.data_dir)
    logger.info("Authentication: %s", _describe_auth(settings, app))
    if settings.auth_mode == "sigv4":
        app.console_sign_in.publish_token(settings.data_dir, sys.stderr)
    try:
        _Server(server_config).run(sockets=listeners)
    finally:
        # The server may have switched to sigv4, and published a token, after start.
        app.console_sign_in.withdraw_token()


def _describe_auth(settings: Settings, app: Application) -> str:
    if settings.auth_mode == "none" and settings.auth_follows_keys:
        return (
            "none (requests addressed to a loopback name are accepted; the server switches to "
            "sigv4 within a second of the first 'sageport keys create')"
        )
    if settings.auth_mode == "none":
        return "none (requests addressed to a loopback name are accepted; fixed by --auth none)"
    return (
        f"sigv4 ({app.keys.count()} access keys; keys created with 'sageport keys create' "
        "take effect within a second)"
    )


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal after shutdown.

    uvicorn re-raises SIGINT or SIGTERM once it has shut down, so the process
    would die of the signal. A clean stop here exits 0, as a supervisor (and
    the ``serve`` contract) expects.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # uvicorn logs its address only for sockets it binds itself.
        if self.started:
            for listener in sockets or ():
                host, port = listener.getsockname()[:2]
                logger.info(
                    "Listening on http://%s (press Ctrl+C to stop)", _display_address(host, port)
                )

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
