"""Latency percentiles and the result of one load run; the median over repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# The percentiles every report shows, in order.
PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0, 99.9)


def percentile_key(q: float) -> str:
    """`50.0` -> "p50", `99.9` -> "p99.9": the key a percentile has in tables and JSON."""
    return f"p{q:g}"


def percentiles(values: Sequence[float] | np.ndarray, qs: Iterable[float]) -> list[float]:
    """Percentiles of `values` by linear interpolation between closest ranks.

    Same definition as `numpy.percentile(..., method="linear")` (Hyndman & Fan type 7), written
    out so that the tests can hold it against numpy. Sorts once for all `qs`.
    Requires at least one value and every q in [0, 100]; raises ValueError otherwise.
    """
    data = np.sort(np.asarray(values, dtype=np.float64), kind="stable")
    if data.size == 0:
        raise ValueError("percentiles of an empty sample")
    out: list[float] = []
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentile {q} is outside [0, 100]")
        rank = q / 100.0 * (data.size - 1)
        lower = int(np.floor(rank))
        upper = min(lower + 1, data.size - 1)
        weight = rank - lower
        # a + w*(b - a) is exact at both ends, and equals a when a == b (no inf - inf).
        out.append(float(data[lower] + weight * (data[upper] - data[lower])))
    return out


@dataclass(frozen=True)
class RunResult:
    """One load run against one path at one load level. Latencies are in milliseconds.

    `concurrency` is the number of requests in flight (closed loop); `rate` is the target rate in
    requests/s for an open-loop run (then `concurrency` is 0). `errors` counts failed requests of
    any kind (connect, transport, non-2xx, non-OK gRPC status). `tool` names the load generator.
    """

    concurrency: int
    duration_s: float
    requests: int
    errors: int
    throughput_rps: float
    latency_ms: dict[str, float]
    tool: str
    rate: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "duration_s": self.duration_s,
            "requests": self.requests,
            "errors": self.errors,
            "throughput_rps": self.throughput_rps,
            "latency_ms": dict(self.latency_ms),
            "tool": self.tool,
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        """Inverse of `to_json`; raises KeyError/TypeError/ValueError on a malformed dict."""
        rate = data.get("rate")
        return cls(
            concurrency=int(data["concurrency"]),
            rate=None if rate is None else float(rate),
            duration_s=float(data["duration_s"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            throughput_rps=float(data["throughput_rps"]),
            latency_ms={str(k): float(v) for k, v in data["latency_ms"].items()},
            tool=str(data["tool"]),
            notes=[str(note) for note in data.get("notes", [])],
        )


def summarize(
    latencies_s: np.ndarray,
    *,
    errors: int,
    elapsed_s: float,
    concurrency: int,
    tool: str,
    rate: float | None = None,
) -> RunResult:
    """Build a RunResult from raw per-request latencies (seconds) of successful requests."""
    count = int(latencies_s.size)
    latency_ms: dict[str, float] = {}
    if count:
        millis = latencies_s * 1e3
        values = percentiles(millis, PERCENTILES)
        latency_ms = {percentile_key(q): v for q, v in zip(PERCENTILES, values, strict=True)}
        latency_ms["mean"] = float(millis.mean())
        latency_ms["max"] = float(millis.max())
    return RunResult(
        concurrency=concurrency,
        rate=rate,
        duration_s=elapsed_s,
        requests=count + errors,
        errors=errors,
        throughput_rps=count / elapsed_s if elapsed_s > 0 else 0.0,
        latency_ms=latency_ms,
        tool=tool,
    )


def median_result(runs: Sequence[RunResult]) -> RunResult:
    """Field-wise median of repeated runs of the same point (the machine is shared and noisy).

    Each statistic is the median of that statistic over the runs, so the result need not equal any
    one run. Errors are summed, not medianed: one bad run must stay visible. Requires >= 1 run.
    """
    if not runs:
        raise ValueError("median of no runs")
    keys = sorted(set.intersection(*(set(run.latency_ms) for run in runs)))
    notes = [note for run in runs for note in run.notes]
    return replace(
        runs[0],
        duration_s=statistics.median(run.duration_s for run in runs),
        requests=sum(run.requests for run in runs),
        errors=sum(run.errors for run in runs),
        throughput_rps=statistics.median(run.throughput_rps for run in runs),
        latency_ms={key: statistics.median(run.latency_ms[key] for run in runs) for key in keys},
        notes=list(dict.fromkeys(notes)),
    )
