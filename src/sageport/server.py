"""Run the application under uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import uvicorn

from sageport.app import Application
from sageport.config import Settings

logger = logging.getLogger("sageport.server")


def run(settings: Settings, log_level: str = "info") -> None:
    """Serve until a signal arrives; uvicorn then stops accepting, finishes
    in-flight requests and runs the lifespan shutdown, which stops instances."""
    app = Application(settings)
    server_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=30,
    )
    logger.info("Data directory: %s", settings.data_dir)
    _Server(server_config).run()


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
