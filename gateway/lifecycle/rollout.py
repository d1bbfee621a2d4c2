"""Canary rollouts: the plan, the guards a check window must pass, and the step state machine.

In the spirit of Flagger's analysis (a metric check every interval, traffic in steps) and of Argo
Rollouts' failureLimit (failed checks count over the whole rollout). Pure: each transition takes a
status and the time and returns the new status and the action to apply. The controller owns the
timers, turns `Outcomes` windows into `check()` results and applies the actions.

Rules:
- A step advances only on a passing check that arrives once `dwell_s` has passed since the step
  started. Inconclusive checks (too little canary traffic) neither advance nor fail: a quiet canary
  stalls rather than moving on unexamined.
- Failed checks count over the whole rollout and do not restart the dwell; the one that reaches
  `failure_limit` rolls back.
- At the last step (100 %) a passing check after the dwell promotes.
- PAUSED holds the current weight. Checks are still recorded and failures still count toward the
  limit, since the canary keeps serving its share; nothing advances. Resume restarts the dwell, so
  the step again gets a full dwell of checks before it moves on.
- PROMOTED, ROLLED_BACK and ABORTED are final: any further transition is InvalidInput.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from gateway.errors import InvalidInput
from gateway.lifecycle.outcomes import WindowMetrics

Verdict: TypeAlias = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True)
class Guards:
    """What a canary's check window must show; validated on construction (InvalidInput).

    Latency passes when canary p99 <= max(max_p99_ratio x champion p99, max_p99_ms): the ratio
    catches regressions against the live baseline, the absolute bound (Flagger's threshold) keeps
    a fast champion from failing a canary that is still well within its budget. The ratio applies
    only when the champion had `min_requests` in the window; without either, latency is unchecked.
    """

    min_success_rate: float = 0.99
    max_p99_ratio: float = 1.5
    max_p99_ms: float | None = None
    min_requests: int = 20  # fewer canary requests in a window: the check is inconclusive
    # "warn" or "alert": fail a check whose window shows the canary's drift (its inputs and
    # outputs against its training-data profile) at that status or worse; None: not checked
    max_drift: str | None = None

    def __post_init__(self) -> None:
        if self.max_drift not in (None, "warn", "alert"):
            raise InvalidInput(f"guards: max_drift must be warn or alert, got {self.max_drift!r}")
        if not 0.0 <= self.min_success_rate <= 1.0:
            raise InvalidInput(
                f"guards: min_success_rate must be between 0 and 1, got {self.min_success_rate}"
            )
        if not 0.0 < self.max_p99_ratio < math.inf:
            raise InvalidInput(
                f"guards: max_p99_ratio must be a positive number, got {self.max_p99_ratio}"
            )
        if self.max_p99_ms is not None and not 0.0 < self.max_p99_ms < math.inf:
            raise InvalidInput(
                "guards: max_p99_ms must be a positive number of milliseconds, "
                f"got {self.max_p99_ms}"
            )
        if self.min_requests < 1:
            raise InvalidInput(f"guards: min_requests must be at least 1, got {self.min_requests}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_success_rate": self.min_success_rate,
            "max_p99_ratio": self.max_p99_ratio,
            "max_p99_ms": self.max_p99_ms,
            "min_requests": self.min_requests,
            "max_drift": self.max_drift,
        }


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Traffic steps and check cadence; validated on construction, so a plan object is valid."""

    steps: tuple[int, ...] = (5, 25, 50, 100)  # canary traffic percent per step
    dwell_s: float = 60.0  # least time at each step before a passing check advances it
    check_interval_s: float = 10.0
    failure_limit: int = 3  # failed checks over the whole rollout that roll it back
    guards: Guards = field(default_factory=Guards)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidInput naming the first problem with the plan."""
        if not self.steps:
            raise InvalidInput("a plan needs at least one step")
        for step in self.steps:
            if not 0 < step <= 100:
                raise InvalidInput(f"step {step} % is outside 1..100 %")
        for before, after in itertools.pairwise(self.steps):
            if after <= before:
                raise InvalidInput(
                    f"steps must be strictly increasing, but {after} % follows {before} %"
                )
        if self.steps[-1] != 100:
            raise InvalidInput(f"a plan must end at 100 %, but its last step is {self.steps[-1]} %")
        if not 0.0 < self.dwell_s < math.inf:
            raise InvalidInput(f"dwell_s must be a positive number of seconds, got {self.dwell_s}")
        if not 0.0 < self.check_interval_s < math.inf:
            raise InvalidInput(
                "check_interval_s must be a positive number of seconds, "
                f"got {self.check_interval_s}"
            )
        if self.failure_limit < 1:
            raise InvalidInput(f"failure_limit must be at least 1, got {self.failure_limit}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPlan:
        """A plan from its JSON form (the admin API); missing keys take the defaults.

        Raises InvalidInput for a non-object, an unknown key, a wrong type or an invalid plan.
        """
        return cls(**_parse(data, "rollout plan", "", _PLAN_FIELDS))

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "dwell_s": self.dwell_s,
            "check_interval_s": self.check_interval_s,
            "failure_limit": self.failure_limit,
            "guards": self.guards.to_dict(),
        }


# --- from_dict: each key's parser takes the value and its name for the error message.


def _parse(
    data: object, what: str, prefix: str, parsers: Mapping[str, Callable[[object, str], object]]
) -> dict[str, Any]:
    """The constructor's keyword arguments; `prefix` qualifies the names in error messages."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{what} must be an object, got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in parsers)
    if unknown:
        raise InvalidInput(
            f"unknown key(s) in {what}: {', '.join(unknown)}; known: {', '.join(parsers)}"
        )
    return {key: parsers[key](value, prefix + key) for key, value in data.items()}


def _number(value: object, name: str) -> float:
    # bool is an int subclass; `true` is no duration.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number, got {value!r}")
    return float(value)


def _optional_number(value: object, name: str) -> float | None:
    return None if value is None else _number(value, name)


def _integer(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer, got {value!r}")
    return value


def _steps(value: object, name: str) -> tuple[int, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"{name} must be a list of percentages, got {value!r}")
    return tuple(_integer(step, f"{name}[{index}]") for index, step in enumerate(value))


def _optional_text(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidInput(f"{name} must be a string")


def _guards(value: object, name: str) -> Guards:
    return Guards(**_parse(value, name, name + ".", _GUARD_FIELDS))


_GUARD_FIELDS: dict[str, Callable[[object, str], object]] = {
    "min_success_rate": _number,
    "max_p99_ratio": _number,
    "max_p99_ms": _optional_number,
    "min_requests": _integer,
    "max_drift": lambda value, name: _optional_text(value, name),
}
_PLAN_FIELDS: dict[str, Callable[[object, str], object]] = {
    "steps": _steps,
    "dwell_s": _number,
    "check_interval_s": _number,
    "failure_limit": _integer,
    "guards": _guards,
}


# --- Checks


@dataclass(frozen=True, slots=True)
class CheckResult:
    verdict: Verdict
    reason: str  # for operators, e.g. "p99 42.0 ms > 1.5 x champion 10.0 ms"
    canary: WindowMetrics
    champion: WindowMetrics

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "canary": self.canary.to_dict(),
            "champion": self.champion.to_dict(),
        }


_DRIFT_RANK = {"ok": 0, "insufficient_data": 0, "warn": 1, "alert": 2}


def check(
    guards: Guards,
    canary: WindowMetrics,
    champion: WindowMetrics,
    canary_drift: str | None = None,
) -> CheckResult:
    """Judge one check window of the canary against the guards and the champion's same window.

    Inconclusive below `min_requests` canary requests; then the success rate, then the drift
    status of the window (`canary_drift`, when the guards ask for it and the canary has a
    profile), then p99 (see `Guards` for the latency rule and when the champion is left out).
    """
    result = _check_traffic(guards, canary, champion)
    limit = guards.max_drift
    drifted = (
        limit is not None
        and canary_drift is not None
        and _DRIFT_RANK.get(canary_drift, 0) >= _DRIFT_RANK[limit]
    )
    if result.verdict == "pass" and drifted:
        reason = f"canary drift {canary_drift} (limit: below {limit}); {result.reason}"
        return CheckResult("fail", reason, canary, champion)
    return result


def _check_traffic(guards: Guards, canary: WindowMetrics, champion: WindowMetrics) -> CheckResult:
    if canary.requests < guards.min_requests:
        return CheckResult(
            "inconclusive",
            f"{canary.requests} canary requests in the window, fewer than the "
            f"{guards.min_requests} a check needs",
            canary,
            champion,
        )
    rate = canary.success_rate
    if rate < guards.min_success_rate:
        return CheckResult(
            "fail",
            f"success rate {rate:.1%} < {guards.min_success_rate:.1%} "
            f"({canary.failures} of {canary.requests} requests failed)",
            canary,
            champion,
        )
    rate_ok = f"success rate {rate:.1%} >= {guards.min_success_rate:.1%}"
    limits: list[tuple[float, str]] = []
    if champion.requests >= guards.min_requests:
        limits.append(
            (
                guards.max_p99_ratio * champion.p99_ms,
                f"{guards.max_p99_ratio:g} x champion {champion.p99_ms:.1f} ms",
            )
        )
    if guards.max_p99_ms is not None:
        limits.append((guards.max_p99_ms, f"{guards.max_p99_ms:.1f} ms"))
    p99 = canary.p99_ms
    if not limits:
        return CheckResult(
            "pass",
            f"{rate_ok}; p99 {p99:.1f} ms unchecked: the champion had {champion.requests} "
            f"requests and no max_p99_ms is set",
            canary,
            champion,
        )
    limit, limit_text = max(limits)
    if p99 > limit:
        # Above the largest limit means above every one: name them all.
        exceeded = " and > ".join(text for _, text in limits)
        return CheckResult("fail", f"p99 {p99:.1f} ms > {exceeded}", canary, champion)
    return CheckResult("pass", f"{rate_ok}, p99 {p99:.1f} ms <= {limit_text}", canary, champion)


# --- The state machine


class RolloutPhase(enum.Enum):
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


# The phases a rollout can leave; the others are final.
ACTIVE = frozenset({RolloutPhase.PROGRESSING, RolloutPhase.PAUSED})


@dataclass(frozen=True, slots=True)
class Hold:
    """Change nothing."""


@dataclass(frozen=True, slots=True)
class SetWeight:
    """Send `percent` of the deployment's traffic to the canary, the rest to the champion."""

    percent: int


@dataclass(frozen=True, slots=True)
class Promote:
    """Make the canary the champion, with all the traffic."""


@dataclass(frozen=True, slots=True)
class Rollback:
    """Send all the traffic back to the champion."""

    reason: str


Action: TypeAlias = Hold | SetWeight | Promote | Rollback


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """One rollout at one moment; transitions return a new one. Times are the controller's clock."""

    deployment: str
    canary: str
    champion: str
    plan: RolloutPlan
    step: int  # index into plan.steps
    phase: RolloutPhase
    failed_checks: int  # over the whole rollout
    step_started_s: float  # when the current step started (or was resumed)
    changed_s: float  # when the phase or step last changed
    reason: str = ""  # why it paused or ended
    last_check: CheckResult | None = None

    @property
    def canary_percent(self) -> int:
        """The canary's share of traffic once the last action is applied."""
        if self.phase is RolloutPhase.PROMOTED:
            return 100
        if self.phase not in ACTIVE:
            return 0
        return self.plan.steps[self.step]

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "canary": self.canary,
            "champion": self.champion,
            "plan": self.plan.to_dict(),
            "step": self.step,
            "canary_percent": self.canary_percent,
            "phase": self.phase.value,
            "failed_checks": self.failed_checks,
            "step_started_s": self.step_started_s,
            "changed_s": self.changed_s,
            "reason": self.reason,
            "last_check": None if self.last_check is None else self.last_check.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutStatus:
        """A status as `to_dict` wrote it (the journal's copy). The last check's details are
        not kept: they describe a window that ended before the restart."""
        return cls(
            deployment=data["deployment"],
            canary=data["canary"],
            champion=data["champion"],
            plan=RolloutPlan.from_dict(data["plan"]),
            step=data["step"],
            phase=RolloutPhase(data["phase"]),
            failed_checks=data["failed_checks"],
            step_started_s=data["step_started_s"],
            changed_s=data["changed_s"],
            reason=data["reason"],
        )


def start(
    deployment: str, canary: str, champion: str, plan: RolloutPlan, now: float
) -> tuple[RolloutStatus, Action]:
    """Begin at the first step. The plan is valid by construction; the versions must differ."""
    if canary == champion:
        raise InvalidInput(f"canary and champion are the same version '{canary}'")
    status = RolloutStatus(
        deployment=deployment,
        canary=canary,
        champion=champion,
        plan=plan,
        step=0,
        phase=RolloutPhase.PROGRESSING,
        failed_checks=0,
        step_started_s=now,
        changed_s=now,
    )
    return status, SetWeight(plan.steps[0])


def on_check(
    status: RolloutStatus, result: CheckResult, now: float
) -> tuple[RolloutStatus, Action]:
    """Apply one check result (see the module's rules)."""
    _require_active(status, "record a check")
    plan = status.plan
    if result.verdict == "fail":
        failed = status.failed_checks + 1
        if failed >= plan.failure_limit:
            plural = "" if failed == 1 else "s"
            reason = (
                f"{failed} failed check{plural} reached the failure limit; last: {result.reason}"
            )
            ended = replace(
                status,
                phase=RolloutPhase.ROLLED_BACK,
                failed_checks=failed,
                reason=reason,
                last_check=result,
                changed_s=now,
            )
            return ended, Rollback(reason)
        return replace(status, failed_checks=failed, last_check=result), Hold()
    status = replace(status, last_check=result)
    if (
        result.verdict != "pass"
        or status.phase is RolloutPhase.PAUSED
        or now - status.step_started_s < plan.dwell_s
    ):
        return status, Hold()
    if status.step == len(plan.steps) - 1:
        promoted = replace(
            status, phase=RolloutPhase.PROMOTED, reason="every step passed", changed_s=now
        )
        return promoted, Promote()
    step = status.step + 1
    advanced = replace(status, step=step, step_started_s=now, changed_s=now)
    return advanced, SetWeight(plan.steps[step])


def pause(status: RolloutStatus, now: float, reason: str) -> tuple[RolloutStatus, Action]:
    """Hold the current weight until `resume`; checks keep counting toward the failure limit."""
    _require_active(status, "pause")
    if status.phase is RolloutPhase.PAUSED:
        raise InvalidInput(f"the rollout of '{status.deployment}' is already paused")
    return replace(status, phase=RolloutPhase.PAUSED, reason=reason, changed_s=now), Hold()


def resume(status: RolloutStatus, now: float) -> tuple[RolloutStatus, Action]:
    """Continue a paused rollout; the current step's dwell starts again."""
    _require_active(status, "resume")
    if status.phase is not RolloutPhase.PAUSED:
        raise InvalidInput(f"the rollout of '{status.deployment}' is not paused")
    resumed = replace(
        status, phase=RolloutPhase.PROGRESSING, reason="", step_started_s=now, changed_s=now
    )
    return resumed, Hold()


def promote(status: RolloutStatus, now: float) -> tuple[RolloutStatus, Action]:
    """Promote now, skipping the remaining steps (an operator's decision)."""
    _require_active(status, "promote")
    promoted = replace(
        status, phase=RolloutPhase.PROMOTED, reason="promoted manually", changed_s=now
    )
    return promoted, Promote()


def abort(status: RolloutStatus, now: float, reason: str) -> tuple[RolloutStatus, Action]:
    """Stop and send all traffic back to the champion (an operator's decision)."""
    _require_active(status, "abort")
    aborted = replace(status, phase=RolloutPhase.ABORTED, reason=reason, changed_s=now)
    return aborted, Rollback(reason)


def _require_active(status: RolloutStatus, verb: str) -> None:
    if status.phase not in ACTIVE:
        raise InvalidInput(
            f"cannot {verb}: the rollout of '{status.deployment}' has ended ({status.phase.value})"
        )
