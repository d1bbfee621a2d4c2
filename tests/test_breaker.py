"""Tests for the per-version circuit breaker (gateway.lifecycle.breaker), on a driven clock.

Every transition and threshold is pinned at its edge (one outcome or one instant either side), and
the bucketed error-rate window is compared against a naive oracle that keeps every outcome.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from gateway.lifecycle.breaker import BreakerConfig, BreakerState, CircuitBreaker

# The consecutive rule alone: the error-rate rule cannot reach its minimum.
CONSECUTIVE_ONLY = BreakerConfig(min_requests=1_000_000)
# The error-rate rule alone.
RATE_ONLY = BreakerConfig(consecutive_failures=1_000_000)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fail_times(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        assert breaker.allow()
        breaker.record_failure()


def succeed_times(breaker: CircuitBreaker, count: int) -> None:
    for _ in range(count):
        assert breaker.allow()
        breaker.record_success()


def open_breaker(clock: FakeClock, config: BreakerConfig = CONSECUTIVE_ONLY) -> CircuitBreaker:
    breaker = CircuitBreaker(config, clock)
    fail_times(breaker, config.consecutive_failures)
    assert breaker.state is BreakerState.OPEN
    return breaker


# --- consecutive failures


def test_opens_on_the_fifth_consecutive_failure() -> None:
    breaker = CircuitBreaker(CONSECUTIVE_ONLY, FakeClock())
    fail_times(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 4
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.snapshot()["ejections"] == 1


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(CONSECUTIVE_ONLY, FakeClock())
    fail_times(breaker, 4)
    succeed_times(breaker, 1)
    assert breaker.snapshot()["consecutive_failures"] == 0
    fail_times(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


# --- error rate over the window


def test_error_rate_opens_when_the_share_reaches_the_threshold() -> None:
    breaker = CircuitBreaker(RATE_ONLY, FakeClock())
    succeed_times(breaker, 11)
    fail_times(breaker, 10)  # 10 of 21 = 47.6 %
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()  # 11 of 22 = exactly 50 %
    assert breaker.state is BreakerState.OPEN
    snapshot = breaker.snapshot()
    assert (snapshot["window_requests"], snapshot["window_failures"]) == (22, 11)


def test_error_rate_waits_for_min_requests() -> None:
    breaker = CircuitBreaker(RATE_ONLY, FakeClock())
    fail_times(breaker, 19)  # 100 % failures, but only 19 outcomes
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_error_rate_never_opens_on_a_success() -> None:
    breaker = CircuitBreaker(RATE_ONLY, FakeClock())
    fail_times(breaker, 10)
    succeed_times(breaker, 9)
    breaker.record_success()  # 10 of 20 failed, but the rate is judged on failures
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()  # 11 of 21
    assert breaker.state is BreakerState.OPEN


def test_outcomes_expire_after_window_s() -> None:
    clock = FakeClock(100.0)
    breaker = CircuitBreaker(RATE_ONLY, clock)
    fail_times(breaker, 19)
    clock.now = 109.99  # the same window: 20 failures of 20
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN

    clock.now = 100.0
    breaker = CircuitBreaker(RATE_ONLY, clock)
    fail_times(breaker, 19)
    clock.now = 110.0  # window_s later the 19 have left the window
    assert breaker.snapshot()["window_requests"] == 0
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["window_failures"] == 1


def test_window_drops_only_the_expired_buckets() -> None:
    clock = FakeClock(100.0)
    breaker = CircuitBreaker(RATE_ONLY, clock)
    fail_times(breaker, 3)
    clock.now = 105.0
    succeed_times(breaker, 4)
    clock.now = 112.0
    assert breaker.snapshot()["window_requests"] == 4
    assert breaker.snapshot()["window_failures"] == 0
    clock.now = 1_000.0  # far beyond the window: everything gone, no stale slot survives
    assert breaker.snapshot()["window_requests"] == 0


def test_a_clock_that_steps_back_counts_into_the_newest_bucket() -> None:
    clock = FakeClock(105.0)
    breaker = CircuitBreaker(RATE_ONLY, clock)
    clock.now = 103.0
    fail_times(breaker, 2)
    assert breaker.snapshot()["window_failures"] == 2
    clock.now = 114.99  # the 105 s bucket is still in the window
    assert breaker.snapshot()["window_failures"] == 2
    clock.now = 115.0
    assert breaker.snapshot()["window_failures"] == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=4.0), st.booleans()),
        max_size=200,
    )
)
def test_window_counts_match_an_oracle_that_keeps_every_outcome(
    events: list[tuple[float, bool]],
) -> None:
    """The ring with running totals counts what a list of (bucket, ok) pairs would: an outcome
    counts while its bucket is one of the newest ten (window_s / 10 wide)."""
    config = BreakerConfig(consecutive_failures=1_000_000, min_requests=1_000_000, window_s=10.0)
    clock = FakeClock(0.0)
    breaker = CircuitBreaker(config, clock)
    kept: list[tuple[int, bool]] = []
    for delay, ok in events:
        clock.now += delay
        tick = math.floor(clock.now / 1.0)
        if ok:
            breaker.record_success()
        else:
            breaker.record_failure()
        kept.append((tick, ok))
        live = [good for at, good in kept if at > tick - 10]
        snapshot = breaker.snapshot()
        assert snapshot["window_requests"] == len(live)
        assert snapshot["window_failures"] == live.count(False)


# --- ejection, probe, backoff


def test_open_turns_half_open_after_the_ejection_with_exactly_one_probe() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    assert breaker.snapshot()["open_until_s"] == 30.0
    clock.now = 129.99
    assert not breaker.allow()
    assert breaker.state is BreakerState.OPEN
    clock.now = 130.0
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()
    assert not breaker.allow()


def test_probe_success_closes_and_starts_afresh() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    snapshot = breaker.snapshot()
    assert snapshot["consecutive_failures"] == 0
    assert (snapshot["window_requests"], snapshot["window_failures"]) == (0, 0)
    assert snapshot["open_until_s"] == 0.0


def test_each_failed_probe_doubles_the_ejection_up_to_the_cap() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    seen = [breaker.snapshot()["ejection_s"]]
    for _ in range(6):
        clock.now += seen[-1]
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
        snapshot = breaker.snapshot()
        assert snapshot["open_until_s"] == snapshot["ejection_s"]
        seen.append(snapshot["ejection_s"])
    assert seen == [30.0, 60.0, 120.0, 240.0, 300.0, 300.0, 300.0]
    assert breaker.snapshot()["ejections"] == 7


def test_reopening_soon_after_closing_keeps_doubling() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    assert breaker.allow()
    breaker.record_failure()  # 60 s
    clock.now = 190.0
    assert breaker.allow()
    breaker.record_success()  # closed at 190 after a 60 s ejection
    clock.now = 249.9  # less than 60 s later: not recovered
    assert breaker.snapshot()["ejection_s"] == 120.0
    fail_times(breaker, 5)
    assert breaker.snapshot()["ejection_s"] == 120.0
    assert breaker.snapshot()["open_until_s"] == pytest.approx(120.0)


def test_a_version_closed_for_a_full_ejection_has_recovered() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    assert breaker.allow()
    breaker.record_failure()  # 60 s
    clock.now = 190.0
    assert breaker.allow()
    breaker.record_success()
    clock.now = 250.0  # 60 s closed: recovered
    assert breaker.snapshot()["ejection_s"] == 30.0
    fail_times(breaker, 5)
    assert breaker.snapshot()["ejection_s"] == 30.0


def test_outcomes_recorded_while_open_are_ignored() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    before = breaker.snapshot()
    breaker.record_success()  # a request admitted before the breaker opened
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot() == before


# --- health-check probes


def test_record_probe_is_ignored_while_the_ejection_runs() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 129.0
    breaker.record_probe(True)
    assert breaker.state is BreakerState.OPEN
    breaker.record_probe(False)
    assert breaker.snapshot()["ejection_s"] == 30.0
    assert breaker.snapshot()["ejections"] == 1


def test_healthy_probe_after_the_ejection_closes() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    breaker.record_probe(True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_unhealthy_probe_after_the_ejection_doubles_it() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    breaker.record_probe(False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot()["ejection_s"] == 60.0
    assert not breaker.allow()


def test_probe_settles_a_half_open_breaker() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 130.0
    assert breaker.allow()  # the probe request is in flight, and never reports
    breaker.record_probe(True)
    assert breaker.state is BreakerState.CLOSED

    breaker = open_breaker(clock)
    clock.now = 160.0
    assert breaker.allow()
    breaker.record_probe(False)
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot()["ejection_s"] == 60.0


def test_record_probe_does_not_touch_a_closed_breaker() -> None:
    breaker = CircuitBreaker(CONSECUTIVE_ONLY, FakeClock())
    fail_times(breaker, 4)
    before = breaker.snapshot()
    breaker.record_probe(False)
    breaker.record_probe(True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot() == before


# --- snapshot and configuration


def test_snapshot_is_json_able_and_complete() -> None:
    clock = FakeClock(100.0)
    breaker = open_breaker(clock)
    clock.now = 105.0
    snapshot = breaker.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot == {
        "state": "open",
        "consecutive_failures": 5,
        "window_requests": 5,
        "window_failures": 5,
        "ejections": 1,
        "open_until_s": 25.0,
        "ejection_s": 30.0,
    }
    assert CircuitBreaker(clock=clock).snapshot()["state"] == "closed"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"consecutive_failures": 0}, "breaker: consecutive_failures must be >= 1, got 0"),
        ({"error_rate": 0.0}, "breaker: error_rate must be in (0, 1], got 0.0"),
        ({"error_rate": 1.5}, "breaker: error_rate must be in (0, 1], got 1.5"),
        ({"error_rate": math.nan}, "breaker: error_rate must be in (0, 1], got nan"),
        ({"window_s": 0.0}, "breaker: window_s must be a positive duration, got 0.0"),
        ({"window_s": math.inf}, "breaker: window_s must be a positive duration, got inf"),
        ({"min_requests": 0}, "breaker: min_requests must be >= 1, got 0"),
        ({"base_ejection_s": -1.0}, "breaker: base_ejection_s must be a positive duration"),
        (
            {"base_ejection_s": 30.0, "max_ejection_s": 10.0},
            "breaker: max_ejection_s must be finite and >= base_ejection_s (30.0), got 10.0",
        ),
    ],
)
def test_config_rejects_bad_values(fields: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        BreakerConfig(**fields)  # type: ignore[arg-type]
    assert raised.value.message.startswith(message)
