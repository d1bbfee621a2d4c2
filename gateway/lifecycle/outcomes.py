"""Cumulative per-version outcome counters, for canary guards and shadow reports.

An `Outcomes` only ever counts up; a check window is the difference of two snapshots, so readers
need no reset and no cooperation from the request path. Owned by the event loop: plain integers.

Latency histogram: fixed buckets, four per doubling, each a quarter of its octave wide (the
HdrHistogram layout with two sub-bucket bits), so a bucket is 12.5 % to 25 % of its lower edge
wide. Bucket 0 holds everything under 2**13 ns (8.2 µs), the last everything from 2**36 ns
(68.7 s) up; the index comes from `int.bit_length`, with no search and no allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

_LOW_EXP = 13  # the first octave starts at 2**13 ns = 8.2 µs
_HIGH_EXP = 36  # the overflow bucket starts at 2**36 ns = 68.7 s
_PER_OCTAVE = 4  # two sub-bucket bits after the leading one
_LOW_NS = 1 << _LOW_EXP
_OVERFLOW_NS = 1 << _HIGH_EXP
# For n in [2**13, 2**36) with b = n.bit_length(), n >> (b - 3) is 4..7: the leading bit and the
# two sub-bucket bits. Index = 1 + 4 * (b - 14) + (that - 4); the constants fold into one offset.
_INDEX_OFFSET = 1 - _PER_OCTAVE * (_LOW_EXP + 1) - _PER_OCTAVE
_BUCKET_COUNT = 2 + (_HIGH_EXP - _LOW_EXP) * _PER_OCTAVE

# Lower edge (ns) of each bucket; a bucket's upper edge is the next one's lower edge.
BUCKET_BOUNDS_NS: tuple[int, ...] = (
    0,
    *(
        (1 << exp) * (_PER_OCTAVE + sub) // _PER_OCTAVE
        for exp in range(_LOW_EXP, _HIGH_EXP)
        for sub in range(_PER_OCTAVE)
    ),
    _OVERFLOW_NS,
)


class Outcomes:
    """Cumulative successes, failures and latency histogram of one version."""

    __slots__ = ("_buckets", "_failures", "_successes")

    def __init__(self) -> None:
        self._successes = 0
        self._failures = 0
        self._buckets = [0] * _BUCKET_COUNT

    def record(self, ok: bool, latency_ns: int) -> None:
        """Count one request; O(1), allocates nothing. Negative latencies count as the smallest."""
        if ok:
            self._successes += 1
        else:
            self._failures += 1
        if latency_ns < _LOW_NS:
            self._buckets[0] += 1
        elif latency_ns >= _OVERFLOW_NS:
            self._buckets[-1] += 1
        else:
            bits = latency_ns.bit_length()
            self._buckets[_PER_OCTAVE * bits + (latency_ns >> (bits - 3)) + _INDEX_OFFSET] += 1

    def snapshot(self) -> OutcomeSnapshot:
        """A frozen copy of the counters (one tuple of the bucket counts)."""
        return OutcomeSnapshot(self._successes, self._failures, tuple(self._buckets))

    def totals(self) -> WindowMetrics:
        """Everything counted so far, as one window."""
        return self.snapshot().since(_NOTHING)


@dataclass(frozen=True, slots=True)
class WindowMetrics:
    """What happened between two snapshots.

    Percentiles interpolate linearly inside the bucket that holds the quantile, as Prometheus'
    `histogram_quantile` does, so they are off by at most one bucket width (25 %); above 68.7 s
    they saturate at 68.7 s. 0.0 when the window is empty.
    """

    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    p95_ms: float = 0.0

    @property
    def success_rate(self) -> float:
        """Share of requests that succeeded; 1.0 for an empty window (nothing failed)."""
        if self.requests == 0:
            return 1.0
        return (self.requests - self.failures) / self.requests

    def to_dict(self) -> dict[str, float | int]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "success_rate": self.success_rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True, slots=True)
class OutcomeSnapshot:
    successes: int
    failures: int
    buckets: tuple[int, ...]

    def since(self, earlier: OutcomeSnapshot) -> WindowMetrics:
        """The window from `earlier` to this snapshot, both of the same `Outcomes`.

        Raises ValueError when `earlier` is in fact later (a count would go negative): the caller
        swapped the arguments or mixed two versions' snapshots.
        """
        if len(earlier.buckets) != len(self.buckets):
            raise ValueError("snapshots with different bucket layouts cannot be subtracted")
        successes = self.successes - earlier.successes
        failures = self.failures - earlier.failures
        counts = [now - then for now, then in zip(self.buckets, earlier.buckets, strict=True)]
        if successes < 0 or failures < 0 or min(counts) < 0:
            raise ValueError("the earlier snapshot has higher counts than the later one")
        requests = successes + failures
        return WindowMetrics(
            requests=requests,
            failures=failures,
            p50_ms=_quantile_ms(counts, requests, 0.50),
            p99_ms=_quantile_ms(counts, requests, 0.99),
            p95_ms=_quantile_ms(counts, requests, 0.95),
        )


def _quantile_ms(counts: list[int], total: int, q: float) -> float:
    """The q-quantile (0 < q <= 1) of counts summing to `total`, interpolated in its bucket."""
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if seen + count >= rank:
            # rank > 0, so the first bucket reaching it is not empty.
            lower = BUCKET_BOUNDS_NS[index]
            if index == len(counts) - 1:
                return lower / 1e6
            upper = BUCKET_BOUNDS_NS[index + 1]
            return (lower + (upper - lower) * (rank - seen) / count) / 1e6
        seen += count
    raise AssertionError("unreachable: the counts sum to total")


_NOTHING = OutcomeSnapshot(0, 0, (0,) * _BUCKET_COUNT)  # before the first outcome
