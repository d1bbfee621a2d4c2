"""Service health per version: counted through a real gateway (answers, rejected inputs, model
failures), reported over HTTP, the admin API and gRPC; windows from snapshots (pure)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import onnx_models
import pytest
from conftest import Server, copy_credit_risk, http_request, start_server
from google.protobuf import json_format

from gateway._proto import admin_pb2, admin_pb2_grpc
from gateway.errors import ErrorKind, InvalidInput
from gateway.monitoring.health import Health, HealthHistory, parse_window

FAIL_ABOVE = 1000.0
CONFIG = """
[monitoring]
slow_request_ms = 1000.0
health_period_s = 0.1
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("health")
    copy_credit_risk(root / "models")
    with start_server(root / "models", CONFIG, config_dir=root) as server:
        yield server


def infer(server: Server, deployment: str, data: list[Any]) -> int:
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20], "data": data}]}
    return http_request("POST", f"{server.http_url}/v2/models/{deployment}/infer", body).status


def test_health_counts_answers_rejections_and_failures(gateway: Server) -> None:
    deployment = "flaky"
    upload = http_request(
        "POST",
        f"{gateway.http_url}/admin/deployments/{deployment}/versions?version=1",
        onnx_models.credit_risk_lookalike(FAIL_ABOVE),
        {**gateway.admin_headers(), "Content-Type": "application/octet-stream"},
    )
    assert upload.status == 200, upload.body
    statuses = [infer(gateway, deployment, [0.0] * 20) for _ in range(7)]
    statuses += [infer(gateway, deployment, [0.0] * 19) for _ in range(3)]  # wrong shape
    statuses += [infer(gateway, deployment, [5 * FAIL_ABOVE] * 20) for _ in range(2)]
    assert statuses == [200] * 7 + [400] * 3 + [500] * 2
    report = http_request(
        "GET", f"{gateway.http_url}/v2/models/{deployment}/health?window=1h"
    ).json()
    (version,) = report["versions"]
    assert version["version"] == "1" and version["state"] == "READY"
    assert version["requests"] == 12
    assert version["errors"] == {"client": 3, "server": 2, "data": 3}
    assert version["client_error_rate"] == pytest.approx(3 / 12)
    assert version["server_error_rate"] == pytest.approx(2 / 12)
    assert version["rows"] == 7 and version["batch_size_mean"] >= 1.0
    assert 0 < version["latency_ms"]["p50"] <= version["latency_ms"]["p95"]
    assert version["latency_ms"]["p95"] <= version["latency_ms"]["p99"]
    assert version["slow"] == 0 and version["rate_per_s"] > 0
    metrics = http_request("GET", f"{gateway.http_url}/metrics").body.decode()
    for fault, count in (("client", 3), ("server", 2), ("data", 3)):
        labels = f'deployment="{deployment}",fault="{fault}",version="1"'
        assert f"modelgate_request_errors_total{{{labels}}} {count}.0" in metrics


def test_health_is_the_same_over_the_admin_api_on_both_transports(gateway: Server) -> None:
    for _ in range(3):
        assert infer(gateway, "credit_risk", [0.0] * 20) == 200
    url = f"{gateway.http_url}/admin/deployments/credit_risk/health?window=1h&version=2"
    over_http = http_request("GET", url, headers=gateway.admin_headers()).json()
    with grpc.insecure_channel(gateway.grpc_address) as channel:
        answer = admin_pb2_grpc.AdminStub(channel).GetHealth(
            admin_pb2.HealthRequest(deployment="credit_risk", version="2", window="1h"),
            metadata=(("authorization", f"Bearer {gateway.admin_token}"),),
        )
    over_grpc = json_format.MessageToDict(answer, preserving_proto_field_name=True)
    assert over_http["versions"][0]["requests"] >= 3
    for key in ("version", "requests", "errors", "rows"):
        assert over_grpc["versions"][0][key] == over_http["versions"][0][key]
    bad = http_request("GET", f"{gateway.http_url}/v2/models/credit_risk/health?window=soon")
    assert bad.status == 400 and "window" in bad.json()["error"]
    missing = http_request("GET", f"{gateway.http_url}/v2/models/credit_risk/versions/9/health")
    assert missing.status == 404


def test_a_window_is_the_difference_from_the_snapshot_that_old() -> None:
    now = [1000.0]
    health = Health(slow_ms=50.0)
    key = ("d", "1")
    history = HealthHistory(lambda: [(key, health)], period_s=10.0, clock=lambda: now[0])
    for _ in range(4):
        health.answered(10_000_000, rows=1, batch_rows=2, queue_ns=1_000_000)
    now[0] = 1010.0
    history.take()
    health.answered(80_000_000, rows=3, batch_rows=3, queue_ns=0)  # slow
    health.failed(ErrorKind.INTERNAL, 5_000_000)
    now[0] = 1015.0
    recent = history.window(key, health, last_s=5.0)  # from the snapshot at 1010
    assert recent["requests"] == 2 and recent["slow"] == 1 and recent["rows"] == 3
    assert recent["errors"] == {"client": 0, "server": 1, "data": 0}
    assert recent["window_s"] == 5.0
    everything = history.window(key, health, last_s=3600.0)  # from the first snapshot
    assert everything["requests"] == 6 and everything["window_s"] == 15.0
    assert everything["batch_size_mean"] == pytest.approx((4 * 2 + 3) / 5)
    assert everything["queue_ms_mean"] == pytest.approx(4 / 5)


@pytest.mark.parametrize(
    ("text", "seconds"), [("300", 300.0), ("5m", 300.0), ("1.5h", 5400.0), ("2d", 172800.0)]
)
def test_windows_are_read_with_units(text: str, seconds: float) -> None:
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "soon", "-5m", "0", "inf"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="window"):
        parse_window(text)


def test_the_cli_shows_health(gateway: Server) -> None:
    assert infer(gateway, "credit_risk", [0.0] * 20) == 200
    command = ["admin", "--url", gateway.http_url, "--token", gateway.admin_token]
    shown = subprocess.run(
        [sys.executable, "-m", "gateway", *command, "health", "credit_risk", "--window", "1h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    header, *rows = shown.stdout.splitlines()
    assert header.split()[:4] == ["VERSION", "STATE", "REQUESTS", "REQ/S"]
    assert [row.split()[0] for row in rows] == ["1", "2"]
    assert int(rows[1].split()[2]) >= 1
