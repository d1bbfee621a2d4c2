"""Process lifetime: listen on HTTP and gRPC, load the repository, serve until a signal, drain.

`serve(config)` is the library API behind `modelgate serve`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

import uvloop
from aiohttp import web

from gateway.config import ServerConfig
from gateway.repository import scan
from gateway.serving import InferenceService
from gateway.transport.grpc import create_server
from gateway.transport.http import create_app

logger = logging.getLogger("modelgate")

SHUTDOWN_GRACE_S = 5.0


async def serve(config: ServerConfig) -> None:
    """Serve until SIGINT or SIGTERM. The ports open before the models load, so liveness answers
    during loading and readiness turns true once loading is done. Raises ConfigError, before
    opening any port, when the repository folder is unusable."""
    sources = scan(Path(config.repository), config.model_defaults)
    service = InferenceService(config)
    runner = web.AppRunner(create_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.http_port)
    await site.start()
    http_port = runner.addresses[0][1]
    grpc_endpoint = create_server(service, f"{config.host}:{config.grpc_port}")
    grpc_port = grpc_endpoint.port
    await grpc_endpoint.server.start()
    await grpc_endpoint.publish_readiness(False)
    logger.info("listening: HTTP %s:%d, gRPC %s:%d", config.host, http_port, config.host, grpc_port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.load(sources)
        # Everything allocated so far (modules, sessions, tables) lives as long as the process:
        # keep it out of the collector's full passes, which otherwise scan it all (~13 ms here)
        # several times a second under load and show up as the p99.
        gc.collect()
        gc.freeze()
        await grpc_endpoint.publish_readiness(service.ready)
        logger.info("ready: %s", "yes" if service.ready else "no (see /v2/repository/index)")
        await stop.wait()
        logger.info("shutting down")
    finally:
        await grpc_endpoint.publish_readiness(False)
        await grpc_endpoint.server.stop(SHUTDOWN_GRACE_S)
        await runner.cleanup()
        await service.close()


def run(config: ServerConfig) -> None:
    uvloop.run(serve(config))
