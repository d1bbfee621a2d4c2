"""OpenTelemetry metrics: a gateway with `[tracing] metrics = true` exports its drift and health
gauges over OTLP/gRPC to a real receiver (the OTLP metrics service, served here on
127.0.0.1); and the gauges' values, read with an in-memory reader, are the signals'."""

from __future__ import annotations

import queue
import socket
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from conftest import CREDIT_RISK, copy_credit_risk, start_server
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from test_monitoring import profile_rows, send

from gateway.config import TracingConfig
from gateway.monitoring.alerts import Sample
from gateway.monitoring.profile import load_profile
from gateway.monitoring.telemetry import make_meter_provider

WAIT_S = 30.0


class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.exports: queue.Queue[Any] = queue.Queue()

    def Export(self, request: Any, context: Any) -> Any:
        self.exports.put(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _points(export: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for resource in export.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.gauge.data_points:
                    labels = {a.key: a.value.string_value for a in point.attributes}
                    found.setdefault(metric.name, []).append((labels, point.as_double))
    return found


def test_the_gateway_exports_drift_and_health_over_otlp(tmp_path: Path) -> None:
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(receiver, server)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    config = f"""
[tracing]
exporter = "otlp"
otlp_endpoint = "http://127.0.0.1:{port}"
sample_ratio = 0.0
metrics = true
metrics_interval_s = 0.2

[monitoring.drift]
window_s = 1.0
min_rows = 100
"""
    copy_credit_risk(tmp_path / "models")
    try:
        with start_server(tmp_path / "models", config, config_dir=tmp_path) as gateway:
            rows = profile_rows(load_profile(CREDIT_RISK / "2" / "profile.json"), 200, seed=8)
            rows[:, :10] *= 4.0
            send(gateway, "credit_risk", rows)
            points = _wait_for_drift(receiver)
    finally:
        server.stop(None)
    labels = {"deployment": "credit_risk", "version": "2"}
    assert (labels, 1.0) in points["modelgate.drift_alert"]
    assert any(lbl == labels and value > 0 for lbl, value in points["modelgate.drift"])
    assert (labels, 0.0) in points["modelgate.breaker_open"]
    assert any(lbl == labels for lbl, _ in points["modelgate.latency_p99_ms"])


def _wait_for_drift(receiver: Receiver) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The first export whose drift gauge shows the shifted traffic."""
    while True:
        points = _points(receiver.exports.get(timeout=WAIT_S))  # raises queue.Empty at the end
        if any(value == 1.0 for _, value in points.get("modelgate.drift_alert", [])):
            return points


def test_each_signal_is_its_own_gauge() -> None:
    reader = InMemoryMetricReader()
    calls = []

    def collect() -> list[Sample]:
        calls.append(1)
        return [
            Sample("error_rate", 0.25, {"deployment": "d", "version": "1"}),
            Sample("drift", 0.5, {"deployment": "d", "version": "1"}),
            Sample("journal_lag_s", 0.01, {}),
        ]

    provider = make_meter_provider(TracingConfig(), collect, readers=[reader])
    assert provider is not None
    data = reader.get_metrics_data()
    values = {
        metric.name: [(dict(p.attributes), p.value) for p in metric.data.data_points]
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert values["modelgate.error_rate"] == [({"deployment": "d", "version": "1"}, 0.25)]
    assert values["modelgate.drift"] == [({"deployment": "d", "version": "1"}, 0.5)]
    assert values["modelgate.journal_lag_s"] == [({}, 0.01)]
    assert len(calls) == 1  # one collection for every gauge of the export
    provider.shutdown()
    assert make_meter_provider(TracingConfig(exporter="console"), collect) is None  # metrics off
