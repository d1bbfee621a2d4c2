"""Prometheus exposition of the per-version statistics, with Triton's metric names.

A collector reads `VersionStats` at scrape time, so the request path updates plain integers and
pays nothing for Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.governance.journal import JournalStats
from gateway.lifecycle.registry import Deployment
from gateway.monitoring.accuracy import AccuracyStats
from gateway.monitoring.alerting import Alerting
from gateway.statistics import LATENCY_BUCKETS, Duration, VersionStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LABELS = ("model", "version")

StatsSource = Callable[[], Iterable[tuple[str, str, VersionStats]]]


class StatsCollector(Collector):
    def __init__(self, source: StatsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str) -> _TritonCounter:
            return _TritonCounter(name, doc)

        success = counter("nv_inference_request_success", "Successful inference requests")
        failure = counter("nv_inference_request_failure", "Failed inference requests")
        count = counter("nv_inference_count", "Inferences performed (a batch of N counts N)")
        executions = counter("nv_inference_exec_count", "Backend runs (batches) executed")
        durations: list[tuple[_TritonCounter, Callable[[VersionStats], Duration]]] = [
            (counter("nv_inference_request_duration_us", "Cumulative request duration (µs)"),
             lambda s: s.success),
            (counter("nv_inference_queue_duration_us", "Cumulative queue duration (µs)"),
             lambda s: s.queue),
            (counter("nv_inference_compute_input_duration_us", "Cumulative input time (µs)"),
             lambda s: s.compute_input),
            (counter("nv_inference_compute_infer_duration_us", "Cumulative compute time (µs)"),
             lambda s: s.compute_infer),
            (counter("nv_inference_compute_output_duration_us", "Cumulative output time (µs)"),
             lambda s: s.compute_output),
        ]  # fmt: skip
        latency = HistogramMetricFamily(
            "modelgate_inference_request_duration_seconds",
            "Request latency inside the gateway, successes and failures",
            labels=_LABELS,
        )
        for model, version, stats in self._source():
            labels = [model, version]
            success.add_metric(labels, stats.success.count)
            failure.add_metric(labels, stats.fail.count)
            count.add_metric(labels, stats.inference_count)
            executions.add_metric(labels, stats.execution_count)
            for family, pick in durations:
                family.add_metric(labels, pick(stats).ns / 1000)
            cumulative, buckets = 0, []
            for bound, hits in zip(
                (*LATENCY_BUCKETS, float("inf")), stats.latency_buckets, strict=True
            ):
                cumulative += hits
                buckets.append((_bound_label(bound), cumulative))
            total_ns = stats.success.ns + stats.fail.ns
            latency.add_metric(labels, buckets, total_ns / 1e9)
        yield from (success, failure, count, executions, *(f for f, _ in durations), latency)


class _TritonCounter(Metric):
    """A monotonic count named exactly as Triton names it, so Triton dashboards work unchanged.

    prometheus_client appends `_total` to every metric typed "counter" (OpenMetrics' rule), which
    would rename it; so it is exposed untyped, which PromQL's rate() and increase() accept."""

    def __init__(self, name: str, documentation: str) -> None:
        super().__init__(name, documentation, "unknown")

    def add_metric(self, labels: list[str], value: float) -> None:
        self.add_sample(self.name, dict(zip(_LABELS, labels, strict=True)), value)


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class JournalCollector(Collector):
    """The journal writer's queue and progress, read at scrape time."""

    def __init__(self, source: Callable[[], JournalStats]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        gauges = (
            (
                "modelgate_journal_queue_depth",
                "Records waiting for the journal writer",
                stats.queued,
            ),
            (
                "modelgate_journal_waiting",
                "Callers held back by a full journal queue",
                stats.waiting,
            ),
            ("modelgate_journal_lag_seconds", "Age of the oldest uncommitted record", stats.lag_s),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        counters = (
            ("modelgate_journal_records", "Records committed", stats.records),
            ("modelgate_journal_group_commits", "Group commits", stats.groups),
            ("modelgate_journal_fsyncs", "File syncs", stats.fsyncs),
            ("modelgate_journal_bytes", "Bytes written", stats.bytes),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        heads = GaugeMetricFamily(
            "modelgate_journal_head_seq", "Committed head seq per stream", labels=["stream"]
        )
        for stream, seq in sorted(stats.heads.items()):
            heads.add_metric([stream], seq)
        yield heads


class LifecycleCollector(Collector):
    """Per deployment and version: traffic share, breaker, shadow copies and their agreement."""

    def __init__(self, source: Callable[[], Iterable[Deployment]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        labels = ["deployment", "version"]
        share = GaugeMetricFamily(
            "modelgate_traffic_share", "Share of the deployment's requests (policy)", labels=labels
        )
        ejected = GaugeMetricFamily(
            "modelgate_breaker_open", "1 while the version's breaker keeps it out", labels=labels
        )
        ejections = CounterMetricFamily(
            "modelgate_breaker_ejections", "Times the breaker opened", labels=labels
        )
        shadow = {
            field: CounterMetricFamily(f"modelgate_shadow_{field}", doc, labels=labels)
            for field, doc in (
                ("copies", "Shadow copies sent to the version"),
                ("dropped", "Shadow copies dropped: too many in flight"),
                ("failed", "Shadow copies that failed"),
                ("agreed", "Shadow answers that agreed with the primary's"),
                ("disagreed", "Shadow answers that did not agree with the primary's"),
            )
        }
        errors = CounterMetricFamily(
            "modelgate_request_errors",
            "Failed requests by fault: client (4xx), server (5xx), data (rejected inputs)",
            labels=[*labels, "fault"],
        )
        slow = CounterMetricFamily(
            "modelgate_slow_requests", "Answers slower than slow_request_ms", labels=labels
        )
        for deployment in self._source():
            policy = deployment.policy
            for entry in deployment.versions.values():
                values = [deployment.name, entry.version]
                if policy is not None:
                    share.add_metric(values, policy.share(entry.version))
                breaker = entry.breaker.snapshot()
                ejected.add_metric(values, 0.0 if breaker["state"] == "closed" else 1.0)
                ejections.add_metric(values, cast(int, breaker["ejections"]))
                counts = entry.health.counts
                for fault in ("client", "server", "data"):
                    errors.add_metric([*values, fault], getattr(counts, f"{fault}_errors"))
                slow.add_metric(values, counts.slow)
                stats = entry.shadow
                for field, family in shadow.items():
                    family.add_metric(values, getattr(stats, field))
        yield from (share, ejected, ejections, errors, slow, *shadow.values())


DRIFT_SCRAPE_WINDOWS = 5  # the drift gauges score the last few windows (5 min by default)


class MonitoringCollector(Collector):
    """Drift scores of each version's recent windows, and the join of actuals."""

    def __init__(
        self,
        deployments: Callable[[], Iterable[Deployment]],
        accuracy: Callable[[], AccuracyStats],
    ) -> None:
        self._deployments = deployments
        self._accuracy = accuracy

    def collect(self) -> Iterator[Metric]:
        labels = ["deployment", "version"]
        score = GaugeMetricFamily(
            "modelgate_drift_score", "Overall drift of the last windows (0: none)", labels=labels
        )
        alert = GaugeMetricFamily(
            "modelgate_drift_alert", "1 while the overall drift status is alert", labels=labels
        )
        psi = GaugeMetricFamily(
            "modelgate_drift_psi",
            "PSI of a feature over the last windows",
            labels=[*labels, "feature"],
        )
        rows = CounterMetricFamily("modelgate_drift_rows", "Rows sketched", labels=labels)
        errors = CounterMetricFamily(
            "modelgate_drift_errors", "Batches the sketches could not count", labels=labels
        )
        for deployment in self._deployments():
            for entry in deployment.versions.values():
                if entry.drift is None:
                    continue
                values = [deployment.name, entry.version]
                scores = entry.drift.scores(last_windows=DRIFT_SCRAPE_WINDOWS)
                overall = scores["overall"]
                if overall["score"] is not None:
                    score.add_metric(values, overall["score"])
                alert.add_metric(values, 1.0 if overall["status"] == "alert" else 0.0)
                for feature in scores["features"]:
                    if feature["psi"] is not None:
                        psi.add_metric([*values, feature["name"]], feature["psi"])
                rows.add_metric(values, entry.drift.rows)
                errors.add_metric(values, entry.drift.errors)
        yield from (score, alert, psi, rows, errors)
        yield from _join_metrics(self._accuracy())


def _join_metrics(stats: AccuracyStats) -> Iterator[Metric]:
    labels = ["deployment", "version"]
    predicted = CounterMetricFamily(
        "modelgate_predictions_kept", "Predicted rows held for actuals", labels=labels
    )
    joined = CounterMetricFamily(
        "modelgate_actuals_joined", "Predicted rows joined with an actual", labels=labels
    )
    lag = CounterMetricFamily(
        "modelgate_actuals_lag_seconds", "Time from prediction to actual, summed", labels=labels
    )
    lag_count = CounterMetricFamily(
        "modelgate_actuals_lag_count", "Actuals whose lag is summed", labels=labels
    )
    for (deployment, version), counters in sorted(stats.versions.items()):
        values = [deployment, version]
        predicted.add_metric(values, counters.predictions)
        joined.add_metric(values, counters.joined)
        lag.add_metric(values, counters.lag_sum_s)
        lag_count.add_metric(values, counters.lag_count)
    refused = CounterMetricFamily(
        "modelgate_actuals_refused",
        "Actuals not applied: unknown or duplicate request ids",
        labels=["deployment", "reason"],
    )
    for reason, counts in (("unknown", stats.unknown_ids), ("duplicate", stats.duplicate_ids)):
        for deployment, count in sorted(counts.items()):
            refused.add_metric([deployment, reason], count)
    yield from (predicted, joined, lag, lag_count, refused)


class AlertsCollector(Collector):
    """Alerts firing, and each channel's deliveries (an unreachable channel shows here)."""

    def __init__(self, source: Callable[[], Alerting | None]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        alerting = self._source()
        if alerting is None:
            return
        yield GaugeMetricFamily(
            "modelgate_alerts_firing", "Alerts firing now", value=len(alerting.engine.active())
        )
        deliveries = CounterMetricFamily(
            "modelgate_alert_notifications",
            "Alert notifications per channel: sent, failed (after retries), retried, dropped",
            labels=["channel", "outcome"],
        )
        for channel, stats in sorted(alerting.dispatcher.stats.items()):
            for outcome in ("sent", "failed", "retried", "dropped"):
                deliveries.add_metric([channel, outcome], getattr(stats, outcome))
        yield deliveries


def make_registry(
    source: StatsSource,
    journal: Callable[[], JournalStats] | None = None,
    deployments: Callable[[], Iterable[Deployment]] | None = None,
    accuracy: Callable[[], AccuracyStats] | None = None,
    alerting: Callable[[], Alerting | None] | None = None,
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(source))
    if journal is not None:
        registry.register(JournalCollector(journal))
    if deployments is not None:
        registry.register(LifecycleCollector(deployments))
        if accuracy is not None:
            registry.register(MonitoringCollector(deployments, accuracy))
    if alerting is not None:
        registry.register(AlertsCollector(alerting))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
