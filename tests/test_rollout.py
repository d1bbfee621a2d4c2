"""Tests for canary plans, guards and the rollout state machine (gateway.lifecycle.rollout).

Time is whatever number the test passes as `now`; every rule is pinned at its edge (the dwell's
last instant, the failure limit's last check, the guard's exact threshold), and a Hypothesis
property drives random check sequences against the rules stated in the module docstring.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidInput
from gateway.lifecycle.outcomes import WindowMetrics
from gateway.lifecycle.rollout import (
    ACTIVE,
    CheckResult,
    Guards,
    Hold,
    Promote,
    Rollback,
    RolloutPhase,
    RolloutPlan,
    RolloutStatus,
    SetWeight,
    Verdict,
    abort,
    check,
    on_check,
    pause,
    promote,
    resume,
    start,
)

PLAN = RolloutPlan()  # steps 5, 25, 50, 100; dwell 60 s; failure limit 3
NO_TRAFFIC = WindowMetrics(requests=0, failures=0, p50_ms=0.0, p99_ms=0.0)


def metrics(requests: int = 100, failures: int = 0, p99_ms: float = 10.0) -> WindowMetrics:
    return WindowMetrics(requests=requests, failures=failures, p50_ms=p99_ms / 2, p99_ms=p99_ms)


def result(verdict: Verdict, reason: str = "") -> CheckResult:
    return CheckResult(verdict, reason or verdict, metrics(), metrics())


PASS = result("pass")
FAIL = result("fail", "p99 42.0 ms > 1.5 x champion 10.0 ms")
INCONCLUSIVE = result("inconclusive")


def started(plan: RolloutPlan = PLAN, now: float = 0.0) -> RolloutStatus:
    status, action = start("credit", "v2", "v1", plan, now)
    assert action == SetWeight(plan.steps[0])
    return status


# --- plan validation


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": ()}, "a plan needs at least one step"),
        ({"steps": (0, 100)}, "step 0 % is outside 1..100 %"),
        ({"steps": (-5, 100)}, "step -5 % is outside 1..100 %"),
        ({"steps": (5, 101)}, "step 101 % is outside 1..100 %"),
        ({"steps": (5, 50, 25, 100)}, "steps must be strictly increasing, but 25 % follows 50 %"),
        ({"steps": (5, 5, 100)}, "steps must be strictly increasing, but 5 % follows 5 %"),
        ({"steps": (5, 25, 50)}, "a plan must end at 100 %, but its last step is 50 %"),
        ({"dwell_s": 0.0}, "dwell_s must be a positive number of seconds, got 0.0"),
        ({"dwell_s": math.inf}, "dwell_s must be a positive number of seconds, got inf"),
        ({"dwell_s": math.nan}, "dwell_s must be a positive number of seconds, got nan"),
        (
            {"check_interval_s": -1.0},
            "check_interval_s must be a positive number of seconds, got -1.0",
        ),
        ({"failure_limit": 0}, "failure_limit must be at least 1, got 0"),
    ],
)
def test_plan_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        RolloutPlan(**fields)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_success_rate": 1.01}, "guards: min_success_rate must be between 0 and 1, got 1.01"),
        ({"min_success_rate": -0.1}, "guards: min_success_rate must be between 0 and 1, got -0.1"),
        ({"max_p99_ratio": 0.0}, "guards: max_p99_ratio must be a positive number, got 0.0"),
        ({"max_p99_ratio": -2.0}, "guards: max_p99_ratio must be a positive number, got -2.0"),
        (
            {"max_p99_ms": 0.0},
            "guards: max_p99_ms must be a positive number of milliseconds, got 0.0",
        ),
        ({"min_requests": 0}, "guards: min_requests must be at least 1, got 0"),
    ],
)
def test_guard_validation(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        Guards(**fields)
    assert raised.value.message == message


def test_validate_accepts_a_single_full_step_and_the_defaults() -> None:
    RolloutPlan(steps=(100,)).validate()
    PLAN.validate()
    Guards(min_success_rate=0.0, max_p99_ms=None).__post_init__()


# --- JSON form


def test_round_trip_through_json() -> None:
    plan = RolloutPlan(
        steps=(1, 10, 100),
        dwell_s=120.0,
        check_interval_s=15.0,
        failure_limit=2,
        guards=Guards(min_success_rate=0.995, max_p99_ratio=1.2, max_p99_ms=250.0, min_requests=5),
    )
    assert RolloutPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert RolloutPlan.from_dict(json.loads(json.dumps(PLAN.to_dict()))) == PLAN
    assert PLAN.to_dict()["steps"] == [5, 25, 50, 100]


def test_from_dict_fills_defaults_and_takes_integers_as_durations() -> None:
    assert RolloutPlan.from_dict({}) == PLAN
    plan = RolloutPlan.from_dict({"dwell_s": 30, "guards": {"max_p99_ms": 80}})
    assert plan.dwell_s == 30.0
    assert plan.guards == Guards(max_p99_ms=80.0)
    assert plan.steps == PLAN.steps


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([5, 100], "rollout plan must be an object, got list"),
        (
            {"steps": [5, 100], "weight": 3},
            "unknown key(s) in rollout plan: weight; known: steps, dwell_s, check_interval_s, "
            "failure_limit, guards",
        ),
        (
            {"guards": {"p99": 3}},
            "unknown key(s) in guards: p99; known: min_success_rate, max_p99_ratio, max_p99_ms, "
            "min_requests",
        ),
        ({"guards": 3}, "guards must be an object, got int"),
        ({"steps": "5,100"}, "steps must be a list of percentages, got '5,100'"),
        ({"steps": [5, 50.5, 100]}, "steps[1] must be an integer, got 50.5"),
        ({"steps": [True, 100]}, "steps[0] must be an integer, got True"),
        ({"dwell_s": "60s"}, "dwell_s must be a number, got '60s'"),
        ({"dwell_s": True}, "dwell_s must be a number, got True"),
        ({"failure_limit": 3.0}, "failure_limit must be an integer, got 3.0"),
        ({"guards": {"max_p99_ms": "fast"}}, "guards.max_p99_ms must be a number, got 'fast'"),
        ({"guards": {"min_requests": None}}, "guards.min_requests must be an integer, got None"),
        ({"steps": [5, 50]}, "a plan must end at 100 %, but its last step is 50 %"),
        ({"guards": {"max_p99_ratio": 0}}, "guards: max_p99_ratio must be a positive number"),
    ],
)
def test_from_dict_rejects_bad_input(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        RolloutPlan.from_dict(data)
    assert raised.value.message.startswith(message)


# --- check()


def test_too_few_canary_requests_is_inconclusive() -> None:
    outcome = check(Guards(), metrics(requests=19, failures=19), metrics())
    assert outcome.verdict == "inconclusive"
    assert outcome.reason == "19 canary requests in the window, fewer than the 20 a check needs"
    assert check(Guards(), metrics(requests=20), metrics()).verdict == "pass"


def test_success_rate_below_the_guard_fails() -> None:
    canary, champion = metrics(requests=40, failures=1), metrics()
    outcome = check(Guards(), canary, champion)
    assert outcome.verdict == "fail"
    assert outcome.reason == "success rate 97.5% < 99.0% (1 of 40 requests failed)"
    assert (outcome.canary, outcome.champion) == (canary, champion)
    # Exactly at the guard passes.
    assert check(Guards(min_success_rate=0.975), canary, champion).verdict == "pass"


def test_p99_against_the_champion_ratio() -> None:
    outcome = check(Guards(), metrics(p99_ms=42.0), metrics(p99_ms=10.0))
    assert outcome.verdict == "fail"
    assert outcome.reason == "p99 42.0 ms > 1.5 x champion 10.0 ms"
    outcome = check(Guards(), metrics(p99_ms=15.0), metrics(p99_ms=10.0))
    assert outcome.verdict == "pass"
    assert outcome.reason == "success rate 100.0% >= 99.0%, p99 15.0 ms <= 1.5 x champion 10.0 ms"


def test_absolute_bound_rescues_a_canary_against_a_fast_champion() -> None:
    guards = Guards(max_p99_ms=30.0)
    outcome = check(guards, metrics(p99_ms=25.0), metrics(p99_ms=10.0))
    assert outcome.verdict == "pass"
    assert outcome.reason.endswith("p99 25.0 ms <= 30.0 ms")
    outcome = check(guards, metrics(p99_ms=42.0), metrics(p99_ms=10.0))
    assert outcome.verdict == "fail"
    assert outcome.reason == "p99 42.0 ms > 1.5 x champion 10.0 ms and > 30.0 ms"
    # The ratio, when it is the larger limit, also passes a canary above the bound.
    assert check(guards, metrics(p99_ms=40.0), metrics(p99_ms=30.0)).verdict == "pass"


def test_champion_without_traffic_is_left_out() -> None:
    # At 100 % canary the champion serves nothing: only the absolute bound applies.
    outcome = check(Guards(max_p99_ms=30.0), metrics(p99_ms=31.0), NO_TRAFFIC)
    assert outcome.verdict == "fail"
    assert outcome.reason == "p99 31.0 ms > 30.0 ms"
    # Too little champion traffic counts as none: its p99 of 1 ms is noise.
    thin = metrics(requests=19, p99_ms=1.0)
    assert check(Guards(max_p99_ms=30.0), metrics(p99_ms=29.0), thin).verdict == "pass"
    outcome = check(Guards(), metrics(p99_ms=900.0), thin)
    assert outcome.verdict == "pass"
    assert outcome.reason == (
        "success rate 100.0% >= 99.0%; p99 900.0 ms unchecked: the champion had 19 requests "
        "and no max_p99_ms is set"
    )


def test_success_rate_is_judged_before_latency() -> None:
    outcome = check(Guards(), metrics(failures=50, p99_ms=99.0), metrics(p99_ms=10.0))
    assert outcome.reason.startswith("success rate 50.0% < 99.0%")


# --- the state machine: progress


def test_happy_path_through_every_step_to_promotion() -> None:
    status, action = start("credit", "v2", "v1", PLAN, now=1000.0)
    assert action == SetWeight(5)
    assert (status.step, status.phase, status.canary_percent) == (0, RolloutPhase.PROGRESSING, 5)
    weights = [5]
    now = 1000.0
    for _ in range(40):
        now += PLAN.check_interval_s
        status, action = on_check(status, PASS, now)
        if isinstance(action, SetWeight):
            weights.append(action.percent)
            assert status.step_started_s == status.changed_s == now
        if isinstance(action, Promote):
            break
        assert status.phase is RolloutPhase.PROGRESSING
    assert weights == [5, 25, 50, 100]
    assert action == Promote()
    assert status.phase is RolloutPhase.PROMOTED
    assert status.canary_percent == 100
    assert status.reason == "every step passed"
    assert now == 1000.0 + 4 * PLAN.dwell_s  # each step exactly one dwell, the last one included


def test_a_step_advances_only_once_the_dwell_has_elapsed() -> None:
    status = started(now=0.0)
    status, action = on_check(status, PASS, 59.999)
    assert action == Hold()
    assert status.step == 0
    status, action = on_check(status, PASS, 60.0)
    assert action == SetWeight(25)
    assert status.step == 1


def test_inconclusive_checks_never_advance() -> None:
    status = started(now=0.0)
    status, _ = on_check(status, PASS, 10.0)  # a pass before the dwell ends
    for now in (60.0, 70.0, 500.0):
        status, action = on_check(status, INCONCLUSIVE, now)
        assert action == Hold()
        assert status.step == 0
        assert status.last_check == INCONCLUSIVE
        assert status.failed_checks == 0
    status, action = on_check(status, PASS, 510.0)
    assert action == SetWeight(25)


def test_a_failure_counts_but_does_not_restart_the_dwell() -> None:
    status = started(now=0.0)
    status, action = on_check(status, FAIL, 50.0)
    assert action == Hold()
    assert (status.failed_checks, status.step_started_s, status.last_check) == (1, 0.0, FAIL)
    status, action = on_check(status, PASS, 60.0)
    assert action == SetWeight(25)
    assert status.failed_checks == 1  # cumulative: the next step starts with it


# --- the state machine: rollback


def test_failure_limit_rolls_back_with_the_last_reason() -> None:
    status = started(now=0.0)
    status, _ = on_check(status, FAIL, 10.0)
    status, _ = on_check(status, PASS, 60.0)  # advances to 25 %
    status, action = on_check(status, FAIL, 70.0)
    assert action == Hold()
    assert status.failed_checks == 2
    last = result("fail", "success rate 90.0% < 99.0% (10 of 100 requests failed)")
    status, action = on_check(status, last, 80.0)
    reason = (
        "3 failed checks reached the failure limit; "
        "last: success rate 90.0% < 99.0% (10 of 100 requests failed)"
    )
    assert action == Rollback(reason)
    assert status.phase is RolloutPhase.ROLLED_BACK
    assert (status.reason, status.failed_checks, status.last_check) == (reason, 3, last)
    assert (status.changed_s, status.canary_percent) == (80.0, 0)


def test_failure_limit_of_one() -> None:
    status, action = on_check(started(RolloutPlan(failure_limit=1)), FAIL, 1.0)
    assert status.phase is RolloutPhase.ROLLED_BACK
    assert action == Rollback(
        "1 failed check reached the failure limit; last: p99 42.0 ms > 1.5 x champion 10.0 ms"
    )


# --- the state machine: operators


def test_pause_holds_the_weight_and_resume_restarts_the_dwell() -> None:
    status = started(now=0.0)
    status, action = pause(status, 30.0, "checking dashboards")
    assert action == Hold()
    assert (status.phase, status.reason, status.changed_s) == (
        RolloutPhase.PAUSED,
        "checking dashboards",
        30.0,
    )
    assert status.canary_percent == 5
    status, action = on_check(status, PASS, 100.0)  # past the dwell, but paused
    assert action == Hold()
    assert (status.step, status.last_check) == (0, PASS)
    status, action = resume(status, 200.0)
    assert action == Hold()
    assert (status.phase, status.reason, status.step_started_s) == (
        RolloutPhase.PROGRESSING,
        "",
        200.0,
    )
    status, action = on_check(status, PASS, 259.0)
    assert action == Hold()
    status, action = on_check(status, PASS, 260.0)
    assert action == SetWeight(25)


def test_failures_while_paused_still_roll_back() -> None:
    status, _ = pause(started(RolloutPlan(failure_limit=2)), 1.0, "hold")
    status, action = on_check(status, FAIL, 2.0)
    assert (action, status.phase) == (Hold(), RolloutPhase.PAUSED)
    status, action = on_check(status, FAIL, 3.0)
    assert isinstance(action, Rollback)
    assert status.phase is RolloutPhase.ROLLED_BACK


@pytest.mark.parametrize("paused", [False, True])
def test_manual_promote_skips_the_remaining_steps(paused: bool) -> None:
    status = started()
    if paused:
        status, _ = pause(status, 1.0, "hold")
    status, action = promote(status, 5.0)
    assert action == Promote()
    assert (status.phase, status.reason, status.changed_s) == (
        RolloutPhase.PROMOTED,
        "promoted manually",
        5.0,
    )
    assert status.canary_percent == 100


@pytest.mark.parametrize("paused", [False, True])
def test_abort_rolls_back_with_the_operator_reason(paused: bool) -> None:
    status = started()
    if paused:
        status, _ = pause(status, 1.0, "hold")
    status, action = abort(status, 5.0, "bad feature drift")
    assert action == Rollback("bad feature drift")
    assert (status.phase, status.reason, status.canary_percent) == (
        RolloutPhase.ABORTED,
        "bad feature drift",
        0,
    )


def test_pause_and_resume_out_of_turn() -> None:
    status = started()
    with pytest.raises(InvalidInput, match=r"^the rollout of 'credit' is not paused$"):
        resume(status, 1.0)
    status, _ = pause(status, 1.0, "hold")
    with pytest.raises(InvalidInput, match=r"^the rollout of 'credit' is already paused$"):
        pause(status, 2.0, "again")


def ended(phase: RolloutPhase) -> RolloutStatus:
    status = started()
    if phase is RolloutPhase.PROMOTED:
        return promote(status, 1.0)[0]
    if phase is RolloutPhase.ABORTED:
        return abort(status, 1.0, "stop")[0]
    for now in (1.0, 2.0, 3.0):
        status, _ = on_check(status, FAIL, now)
    return status


@pytest.mark.parametrize(
    "phase", [RolloutPhase.PROMOTED, RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED]
)
@pytest.mark.parametrize(
    ("verb", "transition"),
    [
        ("record a check", lambda status: on_check(status, PASS, 9.0)),
        ("pause", lambda status: pause(status, 9.0, "x")),
        ("resume", lambda status: resume(status, 9.0)),
        ("promote", lambda status: promote(status, 9.0)),
        ("abort", lambda status: abort(status, 9.0, "x")),
    ],
)
def test_nothing_follows_a_final_phase(phase: RolloutPhase, verb: str, transition: Any) -> None:
    status = ended(phase)
    assert status.phase is phase
    assert phase not in ACTIVE
    with pytest.raises(InvalidInput) as raised:
        transition(status)
    assert raised.value.message == (
        f"cannot {verb}: the rollout of 'credit' has ended ({phase.value})"
    )


def test_start_needs_two_versions() -> None:
    with pytest.raises(InvalidInput, match=r"^canary and champion are the same version 'v1'$"):
        start("credit", "v1", "v1", PLAN, 0.0)


def test_status_to_dict_is_json_able() -> None:
    status, _ = on_check(started(now=0.0), FAIL, 10.0)
    as_dict = status.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["phase"] == "progressing"
    assert as_dict["canary_percent"] == 5
    assert as_dict["failed_checks"] == 1
    assert as_dict["plan"] == PLAN.to_dict()
    assert as_dict["last_check"]["verdict"] == "fail"
    assert as_dict["last_check"]["canary"]["requests"] == 100
    assert started().to_dict()["last_check"] is None


# --- property: random check sequences obey the module's rules


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["pass", "fail", "inconclusive"]), st.floats(0.0, 40.0)),
        max_size=60,
    ),
    st.integers(1, 4),
)
def test_random_checks_follow_the_rules(
    checks: list[tuple[Verdict, float]], failure_limit: int
) -> None:
    plan = RolloutPlan(dwell_s=60.0, failure_limit=failure_limit)
    status = started(plan, now=0.0)
    now = 0.0
    for verdict, delay in checks:
        now += delay
        before = status
        status, action = on_check(status, result(verdict), now)
        failures = before.failed_checks + (verdict == "fail")
        assert status.failed_checks == failures
        if failures >= failure_limit:
            assert isinstance(action, Rollback)
            assert status.phase is RolloutPhase.ROLLED_BACK
            break
        moved = verdict == "pass" and now - before.step_started_s >= plan.dwell_s
        if not moved:
            assert action == Hold()
            assert status.step == before.step
        elif before.step == len(plan.steps) - 1:
            assert action == Promote()
            break
        else:
            assert action == SetWeight(plan.steps[before.step + 1])
            assert status.step == before.step + 1
            assert status.step_started_s == now


def test_a_status_survives_its_journal_form() -> None:
    plan = RolloutPlan(steps=(10, 100), dwell_s=1.0, check_interval_s=0.5, failure_limit=2)
    status, _ = start("d", "2", "1", plan, now=100.0)
    status, _ = pause(status, now=101.0, reason="look at it")
    restored = RolloutStatus.from_dict(json.loads(json.dumps(status.to_dict())))
    assert restored == status


def test_a_drift_guard_fails_a_window_that_drifted() -> None:
    guards = Guards(min_requests=1, max_drift="alert")
    healthy = metrics(requests=50, p99_ms=5.0)
    assert check(guards, healthy, healthy, canary_drift="warn").verdict == "pass"
    failed = check(guards, healthy, healthy, canary_drift="alert")
    assert failed.verdict == "fail" and failed.reason.startswith("canary drift alert")
    strict = Guards(min_requests=1, max_drift="warn")
    assert check(strict, healthy, healthy, canary_drift="warn").verdict == "fail"
    assert check(strict, healthy, healthy, canary_drift="insufficient_data").verdict == "pass"
    assert check(strict, healthy, healthy, canary_drift=None).verdict == "pass"  # no profile
    assert check(Guards(min_requests=1), healthy, healthy, "alert").verdict == "pass"  # off
    with pytest.raises(InvalidInput, match="max_drift"):
        Guards(max_drift="sometimes")
    plan = RolloutPlan.from_dict({"guards": {"max_drift": "alert"}})
    assert RolloutPlan.from_dict(plan.to_dict()) == plan
