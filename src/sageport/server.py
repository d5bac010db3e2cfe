"""Run the application under uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

import uvicorn

from sageport.app import Application
from sageport.config import Settings
from sageport.protocol.whole_response import http_protocol
from sageport.store.lock import lock_data_directory

logger = logging.getLogger("sageport.server")


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve until a signal arrives; uvicorn then stops accepting, finishes
    in-flight requests and runs the lifespan shutdown, which stops instances.

    Raises DataDirectoryInUse, before touching any process or the store, when
    another server runs on the same data directory.
    """
    lock = lock_data_directory(settings.data_dir)
    try:
        _serve(settings, log_level)
    finally:
        lock.close()


def _serve(settings: Settings, log_level: str) -> None:
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
    if app.console_sign_in is None:
        _Server(server_config).run()
        return
    app.console_sign_in.publish_token(settings.data_dir, sys.stderr)
    try:
        _Server(server_config).run()
    finally:
        app.console_sign_in.withdraw_token()


def _describe_auth(settings: Settings, app: Application) -> str:
    if settings.auth_mode == "none":
        return "none (every request is accepted; listening on loopback only)"
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
