"""Alert rules and the alert state machine: which notifications to send, given metric samples.

Pure: no I/O, no tasks, the clock injected. Delivery is `channels` (one destination) and
`dispatch` (queues, retries, routing by severity); `alert_config` parses the TOML.

A *series* is one rule and one label set. Each `AlertEngine.evaluate` moves every series::

    inactive --breach--> pending --breach held for_s, cool-down over--> firing   (notify "firing")
    pending  --clear-->  inactive                                                 (nothing sent)
    firing   --clear, or missing from the samples--> inactive + cool-down        (notify "resolved")

Decisions:

- Dedup: a firing series is notified once; evaluations that still breach send nothing, even
  when the value changes. The dedup key (a hash of rule name and labels) is the same for the
  firing and the resolve, across restarts, so PagerDuty closes the incident it opened.
- Cool-down: after a resolve, the series does not fire again for ``cooldown_s``. A breach during
  the cool-down is pending (its ``for_s`` counts from the breach), and fires when the cool-down
  ends if it still holds. So a flapping series notifies at most once per ``cooldown_s``.
- Missing series: `evaluate` takes the complete current snapshot; a series absent from it counts
  as cleared, so a removed deployment or a metric no longer reported does not page forever.
  The resolve carries the last value seen.
- Non-finite values (NaN from 0/0, e.g. an error rate without requests; ±inf) are no data: the
  series counts as missing. Comparisons are strict: value > above, value < below.
- One clock (wall time by default) times both ``for_s`` and the reported timestamps; a clock
  step moves both.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from gateway.config import ConfigError

AlertState = Literal["firing", "resolved"]


class Severity(enum.IntEnum):
    """How urgent an alert is; ordered, so a channel takes the alerts at or above its minimum."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        """The lower-case name used in config files and payloads."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """The severity named `text` (any case). Raises ConfigError for other names."""
        try:
            return cls[text.upper()]
        except KeyError:
            known = ", ".join(severity.label for severity in cls)
            raise ConfigError(f"severity must be one of {known}, not {text!r}") from None


@dataclass(frozen=True)
class Rule:
    """Fire when `metric` is above `above` or below `below` for `for_s` seconds.

    `metric` is a sample's name; the gateway reports drift, accuracy, error_rate,
    latency_p99_ms, breaker_open (0 or 1) and journal_lag_s, but any name works. `deployment`
    is an fnmatch pattern on the sample's ``deployment`` label ("*" also matches samples
    without one, such as journal_lag_s). Raises ConfigError for an invalid rule.
    """

    name: str
    metric: str
    above: float | None = None
    below: float | None = None
    severity: Severity = Severity.WARNING
    for_s: float = 0.0
    deployment: str = "*"

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise ConfigError("a rule's name must be non-empty printable text")
        if not self.metric:
            raise ConfigError(f"rule {self.name}: metric must be non-empty")
        if self.above is None and self.below is None:
            raise ConfigError(f"rule {self.name}: give above, below or both")
        if self.above is not None and self.below is not None and self.below > self.above:
            raise ConfigError(f"rule {self.name}: below must be <= above (fires outside them)")
        if not self.for_s >= 0:
            raise ConfigError(f"rule {self.name}: for_s must be >= 0")

    def matches(self, sample: Sample) -> bool:
        return sample.metric == self.metric and fnmatchcase(
            sample.labels.get("deployment", ""), self.deployment
        )

    def breached(self, value: float) -> bool:
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )


@dataclass(frozen=True)
class Sample:
    """One metric's current value for one label set (deployment, version, ...)."""

    metric: str
    value: float
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Alert:
    """One notification: a series started firing, or resolved."""

    rule: Rule
    labels: Mapping[str, str]
    value: float  # the breaching value; for a resolve, the value that cleared it (or the last)
    state: AlertState
    started_s: float  # when the breach began (before for_s), by the engine's clock
    resolved_s: float | None  # when it cleared; None while firing
    dedup_key: str  # the same for a series' firing and resolve, across restarts
    summary: str  # one line, e.g. "[CRITICAL] error_rate_high: error_rate = 0.12 above 0.05 ..."

    @property
    def severity(self) -> Severity:
        return self.rule.severity

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the webhook body, PagerDuty's custom_details and the journal payload."""
        return {
            "rule": self.rule.name,
            "metric": self.rule.metric,
            "above": self.rule.above,
            "below": self.rule.below,
            "state": self.state,
            "severity": self.severity.label,
            "value": self.value,
            "labels": dict(sorted(self.labels.items())),
            "started_s": self.started_s,
            "resolved_s": self.resolved_s,
            "dedup_key": self.dedup_key,
            "summary": self.summary,
        }


def dedup_key(rule_name: str, labels: Mapping[str, str]) -> str:
    """32 hex characters of SHA-256 over the rule name and the sorted labels: stable across
    processes (unlike hash()), and well under PagerDuty's 255-character limit."""
    canonical = json.dumps([rule_name, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _summary(rule: Rule, labels: Mapping[str, str], value: float, state: AlertState) -> str:
    where = ", ".join(f"{key}={labels[key]}" for key in sorted(labels))
    suffix = f" ({where})" if where else ""
    if state == "resolved":
        return f"[RESOLVED] {rule.name}: {rule.metric} = {value:g}{suffix}"
    bound = f"above {rule.above:g}" if rule.above is not None and value > rule.above else None
    bound = bound or f"below {rule.below:g}"
    return f"[{rule.severity.name}] {rule.name}: {rule.metric} = {value:g} {bound}{suffix}"


@dataclass
class _Series:
    """A series in breach (pending or firing); dropped from the engine when it clears."""

    rule: Rule
    labels: Mapping[str, str]
    key: str
    since: float
    value: float
    firing: bool = False

    def alert(self, state: AlertState, resolved_s: float | None = None) -> Alert:
        return Alert(
            rule=self.rule,
            labels=self.labels,
            value=self.value,
            state=state,
            started_s=self.since,
            resolved_s=resolved_s,
            dedup_key=self.key,
            summary=_summary(self.rule, self.labels, self.value, state),
        )


class AlertEngine:
    """Evaluates rules on snapshots of samples; see the module doc for the state machine.

    Owned by the event loop (or one thread): it holds no lock.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        cooldown_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rules = tuple(rules)
        names = [rule.name for rule in self._rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        if not cooldown_s >= 0:
            raise ValueError("cooldown_s must be >= 0")
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._series: dict[str, _Series] = {}  # by dedup key: series in breach
        self._quiet_until: dict[str, float] = {}  # by dedup key: cool-downs still running

    def evaluate(self, samples: Iterable[Sample]) -> list[Alert]:
        """The notifications to send now, resolves first, for this complete snapshot."""
        now = self._clock()
        seen: dict[str, tuple[Rule, Sample]] = {}
        for sample in samples:
            if not math.isfinite(sample.value):
                continue
            for rule in self._rules:
                if rule.matches(sample):
                    seen[dedup_key(rule.name, sample.labels)] = (rule, sample)
        notifications = [
            resolved for key in list(self._series) if (resolved := self._clear(key, seen, now))
        ]
        for key, (rule, sample) in seen.items():
            if rule.breached(sample.value):
                fired = self._breach(key, rule, sample, now)
                if fired is not None:
                    notifications.append(fired)
        self._quiet_until = {key: t for key, t in self._quiet_until.items() if t > now}
        return notifications

    def active(self) -> list[Alert]:
        """The series firing now, as firing alerts carrying their latest value."""
        return [series.alert("firing") for series in self._series.values() if series.firing]

    def _clear(self, key: str, seen: Mapping[str, tuple[Rule, Sample]], now: float) -> Alert | None:
        """Drop the series `key` unless it still breaches; a resolve if it was firing."""
        series = self._series[key]
        current = seen.get(key)
        if current is not None:
            series.value = current[1].value
            if series.rule.breached(series.value):
                return None
        del self._series[key]
        if not series.firing:
            return None
        self._quiet_until[key] = now + self._cooldown_s
        return series.alert("resolved", resolved_s=now)

    def _breach(self, key: str, rule: Rule, sample: Sample, now: float) -> Alert | None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(rule, dict(sample.labels), key, now, sample.value)
        series.value = sample.value
        due = now - series.since >= rule.for_s and now >= self._quiet_until.get(key, now)
        if series.firing or not due:
            return None
        series.firing = True
        return series.alert("firing")
