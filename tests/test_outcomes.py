"""Tests for the cumulative outcome counters (gateway.lifecycle.outcomes).

The histogram's layout is checked value by value at every bucket edge, and its percentiles
against NumPy's on seeded samples: they must agree within the width of the bucket that holds
NumPy's value.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Callable

import numpy as np
import pytest

from gateway.lifecycle.outcomes import BUCKET_BOUNDS_NS, Outcomes, OutcomeSnapshot, WindowMetrics


def window(latencies_ns: list[int] | np.ndarray, failures: int = 0) -> WindowMetrics:
    """Record the latencies (the first `failures` as failed) and return the whole window."""
    outcomes = Outcomes()
    empty = outcomes.snapshot()
    for index, latency in enumerate(latencies_ns):
        outcomes.record(index >= failures, int(latency))
    return outcomes.snapshot().since(empty)


def bucket_of(latency_ns: int) -> int:
    return bisect.bisect_right(BUCKET_BOUNDS_NS, latency_ns) - 1


def bucket_width_ms(value_ms: float) -> float:
    index = bucket_of(int(value_ms * 1e6))
    return (BUCKET_BOUNDS_NS[index + 1] - BUCKET_BOUNDS_NS[index]) / 1e6


# --- layout


def test_four_buckets_per_doubling_from_8_us_to_69_s() -> None:
    assert BUCKET_BOUNDS_NS[0] == 0
    assert BUCKET_BOUNDS_NS[1] == 2**13
    assert BUCKET_BOUNDS_NS[-1] == 2**36
    assert len(BUCKET_BOUNDS_NS) == 2 + 4 * (36 - 13)
    for octave_start in range(1, len(BUCKET_BOUNDS_NS) - 1, 4):
        low = BUCKET_BOUNDS_NS[octave_start]
        assert low & (low - 1) == 0  # a power of two
        assert BUCKET_BOUNDS_NS[octave_start : octave_start + 4] == tuple(
            low * k // 4 for k in (4, 5, 6, 7)
        )
    assert all(a < b for a, b in itertools.pairwise(BUCKET_BOUNDS_NS))


def test_record_counts_each_latency_in_the_bucket_that_bounds_it() -> None:
    edges = [edge + delta for edge in BUCKET_BOUNDS_NS for delta in (-1, 0, 1) if edge + delta >= 0]
    for latency in [*edges, 10**13, -5]:
        outcomes = Outcomes()
        outcomes.record(True, latency)
        buckets = outcomes.snapshot().buckets
        assert sum(buckets) == 1
        assert buckets.index(1) == max(bucket_of(latency), 0), latency


def test_snapshot_counts_successes_and_failures() -> None:
    outcomes = Outcomes()
    outcomes.record(True, 1_000_000)
    outcomes.record(False, 2_000_000)
    outcomes.record(True, 3_000_000)
    snapshot = outcomes.snapshot()
    assert (snapshot.successes, snapshot.failures, sum(snapshot.buckets)) == (2, 1, 3)
    outcomes.record(True, 1)
    assert snapshot.successes == 2  # a frozen copy, not a view


# --- percentiles


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "draw",
    [
        lambda rng, n: rng.lognormal(mean=np.log(2e6), sigma=1.0, size=n),  # ~2 ms, long tail
        lambda rng, n: rng.uniform(20e3, 50e6, size=n),  # 20 µs .. 50 ms
        lambda rng, n: rng.exponential(scale=300e3, size=n) + 50e3,  # 50 µs + exp(300 µs)
    ],
    ids=["lognormal", "uniform", "exponential"],
)
def test_percentiles_agree_with_numpy_within_one_bucket(
    seed: int, draw: Callable[[np.random.Generator, int], np.ndarray]
) -> None:
    rng = np.random.default_rng(seed)
    samples = draw(rng, 5_000).astype(np.int64)
    metrics = window(samples)
    for estimate, q in ((metrics.p50_ms, 50), (metrics.p99_ms, 99)):
        reference = float(np.percentile(samples, q)) / 1e6
        assert abs(estimate - reference) <= bucket_width_ms(reference), (q, estimate, reference)


def test_single_sample_percentiles_stay_inside_its_bucket() -> None:
    metrics = window([10_000])  # 10 µs, in [8.192, 10.24) µs
    assert 0.008192 <= metrics.p50_ms < 0.01024
    assert 0.008192 <= metrics.p99_ms <= 0.01024
    assert metrics.p50_ms < metrics.p99_ms  # interpolated, not the bucket's upper edge


def test_interpolation_within_a_bucket() -> None:
    # 100 samples in [2**20, 1.25 * 2**20): p50 sits halfway through the bucket, p99 near its end.
    low, high = 2**20, 5 * 2**18
    metrics = window([low] * 100)
    assert metrics.p50_ms == pytest.approx((low + (high - low) * 0.5) / 1e6)
    assert metrics.p99_ms == pytest.approx((low + (high - low) * 0.99) / 1e6)


def test_the_quantile_rank_is_q_times_n() -> None:
    # Rank 0.5 x 2 = 1 is reached at the end of the first sample's bucket, as in Prometheus'
    # histogram_quantile; it does not jump to the next sample's bucket.
    first = bucket_of(1_000_000)
    metrics = window([1_000_000, 1_000_000_000])
    assert metrics.p50_ms == BUCKET_BOUNDS_NS[first + 1] / 1e6


def test_latencies_beyond_the_last_edge_saturate() -> None:
    metrics = window([100 * 10**9] * 10)
    assert metrics.p50_ms == metrics.p99_ms == 2**36 / 1e6


def test_empty_window() -> None:
    metrics = window([])
    assert (metrics.requests, metrics.failures) == (0, 0)
    assert metrics.p50_ms == metrics.p99_ms == 0.0
    assert metrics.success_rate == 1.0


def test_success_rate_and_to_dict() -> None:
    metrics = window([1_000_000] * 40, failures=1)
    assert (metrics.requests, metrics.failures) == (40, 1)
    assert metrics.success_rate == 39 / 40
    as_dict = metrics.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["success_rate"] == 0.975
    assert as_dict["requests"] == 40


# --- windows


def test_since_is_the_window_between_two_snapshots() -> None:
    rng = np.random.default_rng(7)
    before = rng.lognormal(np.log(1e6), 0.5, size=500).astype(np.int64)
    during = rng.lognormal(np.log(8e6), 0.5, size=300).astype(np.int64)
    outcomes = Outcomes()
    for latency in before:
        outcomes.record(False, int(latency))
    start = outcomes.snapshot()
    for index, latency in enumerate(during):
        outcomes.record(index >= 30, int(latency))
    assert outcomes.snapshot().since(start) == window(during, failures=30)


def test_since_rejects_snapshots_in_the_wrong_order() -> None:
    outcomes = Outcomes()
    early = outcomes.snapshot()
    outcomes.record(True, 1_000)
    late = outcomes.snapshot()
    assert late.since(early).requests == 1
    with pytest.raises(ValueError, match="earlier snapshot has higher counts"):
        early.since(late)
    with pytest.raises(ValueError, match="different bucket layouts"):
        late.since(OutcomeSnapshot(0, 0, ()))


def test_totals_are_everything_counted_as_one_window() -> None:
    outcomes = Outcomes()
    assert outcomes.totals().requests == 0 and outcomes.totals().p99_ms == 0.0
    for latency_ms in (1, 2, 3):
        outcomes.record(True, latency_ms * 1_000_000)
    outcomes.record(False, 5_000_000)
    totals = outcomes.totals()
    assert (totals.requests, totals.failures) == (4, 1)
    assert totals == outcomes.snapshot().since(Outcomes().snapshot())
