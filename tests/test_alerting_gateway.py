"""Alerts from a real gateway: shifted traffic drifts, the drift rule fires, and the webhook
receiver (a real HTTP server on 127.0.0.1) gets the signed notification; a channel that cannot
be reached is retried and reported in /metrics without holding the others back; the alert is
journaled."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import CREDIT_RISK, copy_credit_risk, http_request, start_server
from test_monitoring import profile_rows, send

from gateway.config import JournalConfig
from gateway.governance.ledger import ADMIN, Ledger
from gateway.monitoring.profile import load_profile

SECRET = "whsec_test"
WAIT_S = 30.0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_drift_fires_an_alert_to_the_webhook(tmp_path: Path) -> None:
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    config = f"""
[monitoring.drift]
window_s = 1.0
min_rows = 200

[alerts]
evaluate_interval_s = 0.2
cooldown_s = 60
[alerts.retry]
attempts = 3
base_s = 0.01
max_s = 0.05

[[alerts.rules]]
name = "inputs_drifted"
metric = "drift_alert"
above = 0.5
severity = "critical"
deployment = "shifted"

[alerts.channels.hook]
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret = "{SECRET}"
min_severity = "warning"

[alerts.channels.down]
type = "slack"
url = "http://127.0.0.1:{closed_port()}/nobody"
"""
    copy_credit_risk(tmp_path / "models")
    journal = tmp_path / "journal"
    try:
        with start_server(
            tmp_path / "models", config, config_dir=tmp_path, journal_dir=journal
        ) as server:
            await asyncio.to_thread(_shift, server)
            headers, body = await asyncio.wait_for(received.get(), WAIT_S)
            metrics = await asyncio.to_thread(_metrics_when_failed, server)
    finally:
        await runner.cleanup()
    alert = json.loads(body)
    assert alert["rule"] == "inputs_drifted" and alert["state"] == "firing"
    assert alert["severity"] == "critical" and alert["labels"] == {
        "deployment": "shifted",
        "version": "1",
    }
    signed = headers["X-Modelgate-Timestamp"].encode() + b"." + body
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Modelgate-Signature"] == f"sha256={expected}"
    assert 'modelgate_alert_notifications_total{channel="hook",outcome="sent"} 1.0' in metrics
    assert "modelgate_alerts_firing 1.0" in metrics
    ledger = Ledger.open(JournalConfig(path=str(journal)))
    try:
        kinds = [r.kind for r in ledger.journal.read(ADMIN)]
    finally:
        ledger.close()
    assert "alert.firing" in kinds and "alert.delivery_failed" in kinds


def _shift(server: Any) -> None:
    source = {"kind": "repository", "model": "credit_risk", "version": "2"}
    answer = http_request(
        "POST",
        f"{server.http_url}/admin/deployments/shifted/versions",
        {"version": "1", "source": source},
        server.admin_headers(),
    )
    assert answer.status == 200, answer.body
    rows = profile_rows(load_profile(CREDIT_RISK / "2" / "profile.json"), 600, seed=9)
    rows[:, :10] *= 4.0
    send(server, "shifted", rows)


def _metrics_when_failed(server: Any) -> str:
    """/metrics once the unreachable channel has given up (its retries are bounded)."""
    failed = 'modelgate_alert_notifications_total{channel="down",outcome="failed"} 1.0'
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        metrics = http_request("GET", f"{server.http_url}/metrics").body.decode()
        if failed in metrics:
            return metrics
        time.sleep(0.05)  # polling a condition, bounded by the deadline
    pytest.fail(f"the unreachable channel was never reported failed:\n{metrics}")
