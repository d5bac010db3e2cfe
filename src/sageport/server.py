"""Run the application under uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import logging

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
    uvicorn.Server(server_config).run()
