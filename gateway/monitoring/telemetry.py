"""OpenTelemetry metrics: the drift, accuracy and health signals as observable gauges.

With `[tracing] exporter` set and `[tracing] metrics = true`, a periodic reader exports every
signal of monitoring/signals.py (one gauge per metric name, a point per deployment and
version) through the same exporter as the spans (console or OTLP/gRPC). The gauges are read
at export time only, from one collection per export, so the request path pays nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from gateway.config import TracingConfig
from gateway.monitoring.alerts import Sample

# the signals exported, as monitoring/signals.py names them
METRICS: tuple[tuple[str, str], ...] = (
    ("error_rate", "Share of requests failed on the service's side (5xx)"),
    ("client_error_rate", "Share of requests refused as the client's fault (4xx)"),
    ("data_error_rate", "Share of requests whose inputs were rejected"),
    ("latency_p99_ms", "p99 latency of answered requests, ms"),
    ("breaker_open", "1 while the version's breaker keeps it out of routing"),
    ("drift", "Overall drift score of the recent drift windows"),
    ("drift_alert", "1 while the overall drift status is alert"),
    ("accuracy", "Accuracy against actuals, last accuracy window"),
    ("rmse", "RMSE against actuals, last accuracy window"),
    ("journal_lag_s", "Age of the oldest record not yet committed to the journal, s"),
)
FRESH_S = 1.0  # one collection serves every gauge of one export
COLLECT_TIMEOUT_S = 5.0


class _Samples:
    """The latest collection, taken again when older than FRESH_S."""

    def __init__(self, collect: Callable[[], Sequence[Sample]]) -> None:
        self._collect = collect
        self._taken = -FRESH_S
        self._samples: Sequence[Sample] = ()

    def of(self, metric: str) -> Iterable[Observation]:
        now = time.monotonic()
        if now - self._taken >= FRESH_S:
            self._samples = self._collect()
            self._taken = now
        return [Observation(s.value, dict(s.labels)) for s in self._samples if s.metric == metric]


def on_loop(
    loop: asyncio.AbstractEventLoop, collect: Callable[[], Sequence[Sample]]
) -> Callable[[], Sequence[Sample]]:
    """`collect` run on the event loop, which owns what it reads, for the reader's thread."""

    def collect_there() -> Sequence[Sample]:
        done: concurrent.futures.Future[Sequence[Sample]] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(collect())
            except Exception as error:  # handed to the reader's thread, which logs it
                done.set_exception(error)

        loop.call_soon_threadsafe(run)
        return done.result(COLLECT_TIMEOUT_S)

    return collect_there


def make_meter_provider(
    config: TracingConfig,
    collect: Callable[[], Sequence[Sample]],
    readers: Sequence[MetricReader] | None = None,
) -> MeterProvider | None:
    """A provider exporting the signals `collect` gives; None when metrics are off. `readers`
    replace the configured exporter (tests)."""
    if readers is None:
        if config.exporter == "off" or not config.metrics:
            return None
        readers = [
            PeriodicExportingMetricReader(
                _exporter(config), export_interval_millis=config.metrics_interval_s * 1000
            )
        ]
    provider = MeterProvider(
        resource=Resource.create({"service.name": config.service_name}),
        metric_readers=list(readers),
    )
    meter = provider.get_meter("modelgate")
    samples = _Samples(collect)
    for name, description in METRICS:

        def observe(options: CallbackOptions, name: str = name) -> Iterable[Observation]:
            return samples.of(name)

        meter.create_observable_gauge(
            f"modelgate.{name}", callbacks=[observe], description=description
        )
    return provider


def _exporter(config: TracingConfig) -> MetricExporter:
    if config.exporter == "console":
        return ConsoleMetricExporter()
    # imported here: the OTLP exporter pulls in its own gRPC stubs, needed only when chosen
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=config.otlp_endpoint, insecure=True)
