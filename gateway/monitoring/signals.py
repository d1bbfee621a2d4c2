"""What alert rules are evaluated on: one sample per metric and version, read from the
in-memory statistics (health windows, drift sketches, accuracy windows, breakers, the journal).

Metric names (a rule's `metric`):

    error_rate       share of requests that failed on the service's side (5xx), last window
    client_error_rate, data_error_rate   the same for 4xx and rejected inputs
    latency_p99_ms   p99 of the answered requests, last window
    breaker_open     1 while the version's breaker keeps it out of routing, else 0
    drift            overall drift score of the last drift windows (versions with a profile)
    drift_alert      1 while the overall drift status is alert, else 0
    accuracy         accuracy against actuals of the last accuracy window (classifiers)
    rmse             the same for regressors
    journal_lag_s    age of the oldest record the journal writer has not committed

Labels: `deployment` and `version` (none for journal_lag_s).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lifecycle.breaker import BreakerState
from gateway.lifecycle.registry import VersionState
from gateway.monitoring.alerts import Sample

if TYPE_CHECKING:
    from gateway.serving import InferenceService

DRIFT_WINDOWS = 5  # the drift windows an evaluation scores (5 min by default)


def collect(service: InferenceService, window_s: float) -> list[Sample]:
    """Every sample now, the health ones over the last `window_s`."""
    samples: list[Sample] = []
    for deployment in service.registry.deployments.values():
        for entry in deployment.versions.values():
            if entry.state is not VersionState.READY:
                continue
            labels = {"deployment": deployment.name, "version": entry.version}

            def add(metric: str, value: float | None, labels: dict[str, str] = labels) -> None:
                if value is not None:
                    samples.append(Sample(metric, float(value), labels))

            key = (deployment.name, entry.version)
            health = service.health_history.window(key, entry.health, window_s)
            if health["requests"]:
                add("error_rate", health["server_error_rate"])
                add("client_error_rate", health["client_error_rate"])
                add("data_error_rate", health["data_error_rate"])
                add("latency_p99_ms", health["latency_ms"]["p99"])
            add("breaker_open", 0.0 if entry.breaker.state is BreakerState.CLOSED else 1.0)
            if entry.drift is not None:
                overall = entry.drift.scores(last_windows=DRIFT_WINDOWS)["overall"]
                add("drift", overall["score"])
                add("drift_alert", 1.0 if overall["status"] == "alert" else 0.0)
            if entry.task is not None:
                report = service.accuracy.metrics(deployment.name, entry.version, 1)
                for version in report["versions"]:
                    add("accuracy", version.get("accuracy"))
                    add("rmse", version.get("rmse"))
    journal = service.journal_stats
    if journal is not None:
        samples.append(Sample("journal_lag_s", journal().lag_s, {}))
    return samples
