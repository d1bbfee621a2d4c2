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
from opentelemetry.sdk.metrics import MeterProvider

from gateway.config import ServerConfig, from_mapping
from gateway.control import Control
from gateway.governance.access import AccessControl
from gateway.governance.identity import ADMIN_TOKEN_FILE, Authenticator, TokenStore
from gateway.governance.ldap import LdapAuthenticator, LdapConfig
from gateway.governance.ledger import Ledger
from gateway.lifecycle.sources import Sources
from gateway.monitoring import signals
from gateway.monitoring.alert_config import AlertsConfig, parse_alerts
from gateway.monitoring.alerting import Alerting
from gateway.monitoring.telemetry import make_meter_provider, on_loop
from gateway.repository import VersionSource, scan
from gateway.serving import InferenceService
from gateway.transport.grpc import create_server
from gateway.transport.http import create_app

logger = logging.getLogger("modelgate")

SHUTDOWN_GRACE_S = 5.0


async def serve(config: ServerConfig) -> None:
    """Serve until SIGINT or SIGTERM. The ports open before the models load, so liveness answers
    during loading and readiness turns true once loading is done. Raises ConfigError, before
    opening any port, when the repository folder or the LDAP settings are unusable, and
    JournalError when the journal cannot be opened (damaged, or held by another process)."""
    sources = scan(Path(config.repository), config.model_defaults)
    alerts = parse_alerts(config.alerts, "[alerts]")
    ldap = None
    if config.auth.ldap:
        ldap = LdapAuthenticator(from_mapping(LdapConfig, config.auth.ldap, "[auth.ldap]"))
    ledger = None
    retention: asyncio.Task[None] | None = None
    if config.journal.enabled:
        ledger = await asyncio.to_thread(Ledger.open, config.journal)
        logger.info("journal: %s, checkpoints signed by %s", ledger.root, ledger.key.verifier_key())
        retention = asyncio.create_task(ledger.run_retention())
    try:
        tokens = TokenStore(config.tokens_path)
        service = InferenceService(config, ledger)
        where = Sources(Path(config.repository), config.uploads_path, config.model_defaults)
        control = Control(tokens, ledger, service, where, config)
        replayed = await control.replay_tokens()
        if replayed:
            logger.warning("the token file was behind the journal: %d changes restored", replayed)
        secret = await control.bootstrap()
        if secret is not None:
            logger.warning(
                "first start: admin token %s (shown once; also in %s, mode 0600)",
                secret,
                config.tokens_path.parent / ADMIN_TOKEN_FILE,
            )
        authenticator = Authenticator(tokens, ldap, inference_auth=config.auth.inference)
        access = AccessControl(authenticator, ledger)
        await _serve(config, sources, service, access, control, alerts)
    finally:
        # after the servers drained: every answered request's record is queued by now
        if retention is not None:
            retention.cancel()
            await asyncio.gather(retention, return_exceptions=True)
        if ledger is not None:
            await asyncio.to_thread(ledger.close)


async def _serve(
    config: ServerConfig,
    sources: list[VersionSource],
    service: InferenceService,
    access: AccessControl,
    control: Control,
    alerts: AlertsConfig,
) -> None:
    runner = web.AppRunner(create_app(service, access, control), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.http_port)
    try:
        await site.start()
        http_port = runner.addresses[0][1]
        grpc_endpoint = create_server(service, access, control, f"{config.host}:{config.grpc_port}")
    except BaseException:
        await runner.cleanup()
        await service.close()
        raise
    await grpc_endpoint.server.start()
    await grpc_endpoint.publish_readiness(False)
    grpc_port = grpc_endpoint.port
    logger.info("listening: HTTP %s:%d, gRPC %s:%d", config.host, http_port, config.host, grpc_port)

    telemetry: MeterProvider | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        # a signal during loading (a slow remote, a long warm-up) stops it: the loading is
        # cancelled, and what it had opened is closed below
        starting = asyncio.create_task(_start(config, sources, service, control, alerts))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((starting, stopped), return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # raises what the start raised
                interval_s = config.tracing.metrics_interval_s
                telemetry = make_meter_provider(
                    config.tracing, on_loop(loop, lambda: signals.collect(service, interval_s))
                )
                await grpc_endpoint.publish_readiness(service.ready)
                state = "yes" if service.ready else "no (see /v2/repository/index)"
                logger.info("ready: %s", state)
                await stopped
            else:
                logger.info("stopped while loading")
        finally:
            for task in (starting, stopped):
                task.cancel()
            await asyncio.gather(starting, stopped, return_exceptions=True)
        logger.info("shutting down")
    finally:
        await grpc_endpoint.publish_readiness(False)
        await grpc_endpoint.server.stop(SHUTDOWN_GRACE_S)
        await runner.cleanup()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.shutdown)  # a last export
        if service.alerting is not None:
            await service.alerting.close()
        await control.lifecycle.close()
        await service.close()


async def _start(
    config: ServerConfig,
    sources: list[VersionSource],
    service: InferenceService,
    control: Control,
    alerts: AlertsConfig,
) -> None:
    """Load the repository, replay the control state, start monitoring and alerting."""
    await control.lifecycle.load_repository(sources)
    replayed = await control.replay_lifecycle()
    if replayed:
        logger.info("control state: %d admin records replayed", replayed)
    service.loaded = True
    control.lifecycle.watch_health(config.health_interval_s)
    service.start_monitoring()
    if alerts.rules:
        service.alerting = Alerting(
            alerts,
            lambda: signals.collect(service, alerts.evaluate_interval_s),
            control.journal_alert,
        )
        await service.alerting.start()
    # Everything allocated so far (modules, sessions, tables) lives as long as the process:
    # keep it out of the collector's full passes, which otherwise scan it all (~13 ms here)
    # several times a second under load and show up as the p99.
    gc.collect()
    gc.freeze()


def run(config: ServerConfig) -> None:
    uvloop.run(serve(config))
