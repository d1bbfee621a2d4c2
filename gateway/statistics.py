"""Per-version request statistics, the single source for Triton's statistics extension and for
the Prometheus metrics. Updated only on the event loop: plain integers, no locks."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.batching import Timing

# Upper bounds (seconds) of the request-latency histogram buckets; +Inf is implied.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_BUCKET_BOUNDS_NS = tuple(int(b * 1e9) for b in LATENCY_BUCKETS)


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class VersionStats:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows inferred (a request of batch 4 counts 4)
    execution_count: int = 0  # backend runs
    last_inference_ms: int = 0
    batches: dict[int, BatchStats] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def record_success(self, duration_ns: int, rows: int, timing: Timing) -> None:
        self.success.add(duration_ns)
        self.queue.add(timing.queue_ns)
        self.compute_input.add(timing.compute_input_ns)
        self.compute_infer.add(timing.compute_infer_ns)
        self.compute_output.add(timing.compute_output_ns)
        self.inference_count += rows
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.latency_buckets[bisect.bisect_left(_BUCKET_BOUNDS_NS, duration_ns)] += 1

    def record_failure(self, duration_ns: int) -> None:
        self.fail.add(duration_ns)
        self.latency_buckets[bisect.bisect_left(_BUCKET_BOUNDS_NS, duration_ns)] += 1

    def record_batch(self, timing: Timing) -> None:
        self.execution_count += 1
        stats = self.batches.get(timing.batch_size)
        if stats is None:
            stats = self.batches[timing.batch_size] = BatchStats()
        stats.compute_input.add(timing.compute_input_ns)
        stats.compute_infer.add(timing.compute_infer_ns)
        stats.compute_output.add(timing.compute_output_ns)

    def as_triton_dict(self, name: str, version: str) -> dict[str, Any]:
        """The model_stats entry of Triton's statistics extension (JSON form)."""
        empty = {"count": 0, "ns": 0}
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": empty,
                "cache_miss": empty,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": stats.compute_input.as_dict(),
                    "compute_infer": stats.compute_infer.as_dict(),
                    "compute_output": stats.compute_output.as_dict(),
                }
                for size, stats in sorted(self.batches.items())
            ],
        }
