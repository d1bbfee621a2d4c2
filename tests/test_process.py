"""The process's lifetime around loading: the ports answer liveness while models load, and a
SIGTERM during loading (a slow remote, a long warm-up) stops the gateway at once, with status 0,
instead of after the loading."""

from __future__ import annotations

from pathlib import Path

from conftest import _stop, copy_credit_risk, http_request, start_server

# A warm-up that never ends: its one sample waits the whole (fixed) batching delay, ~11 days.
STUCK_WARM_UP = """max_batch_size = 64
max_queue_delay_us = 1000000000000
batch_wait = "fixed"
warmup_file = "warmup.json"
"""


def test_sigterm_during_loading_stops_the_gateway_promptly(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    copy_credit_risk(repository, config=STUCK_WARM_UP)
    with start_server(repository, wait_for_ready=False) as server:
        live = http_request("GET", f"{server.http_url}/v2/health/live")
        assert live.status == 200
        ready = http_request("GET", f"{server.http_url}/v2/health/ready")
        assert ready.status == 400  # still loading
        status = _stop(server)  # fails the test if SIGTERM is ignored for STOP_TIMEOUT_S
    assert status == 0, server.log()
    assert "stopped while loading" in server.log()
    assert " ready: " not in server.log()
