"""The alert engine (for_s, dedup, cool-down, resolve, bounds, patterns) on an injected clock,
and the parsing of the ``[alerts]`` config section."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping

import pytest

from gateway.config import ConfigError
from gateway.monitoring.alert_config import AlertsConfig, parse_alerts
from gateway.monitoring.alerts import Alert, AlertEngine, Rule, Sample, Severity, dedup_key
from gateway.monitoring.channels import EmailSettings, PagerDutySettings, WebhookSettings
from gateway.monitoring.dispatch import RetryPolicy

T0 = 1_700_000_000.0
CREDIT = {"deployment": "credit_risk", "version": "2"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def error_rate(value: float, labels: Mapping[str, str] = CREDIT) -> Sample:
    return Sample("error_rate", value, labels)


def engine_at(*rules: Rule, cooldown_s: float = 300.0) -> tuple[AlertEngine, Clock]:
    clock = Clock()
    return AlertEngine(rules, cooldown_s=cooldown_s, clock=clock), clock


HIGH_ERRORS = Rule("error_rate_high", "error_rate", above=0.05, severity=Severity.CRITICAL)


def test_fires_once_then_resolves_with_the_same_key() -> None:
    engine, clock = engine_at(HIGH_ERRORS)
    assert engine.evaluate([error_rate(0.01)]) == []

    clock.now = T0 + 10
    [firing] = engine.evaluate([error_rate(0.12)])
    assert firing == Alert(
        rule=HIGH_ERRORS,
        labels=CREDIT,
        value=0.12,
        state="firing",
        started_s=T0 + 10,
        resolved_s=None,
        dedup_key="6bbceb7adb4cdbd9eef4875bfd565bd0",
        summary="[CRITICAL] error_rate_high: error_rate = 0.12 above 0.05 "
        "(deployment=credit_risk, version=2)",
    )
    assert firing.severity is Severity.CRITICAL

    clock.now = T0 + 20  # still breaching, another value: deduplicated
    assert engine.evaluate([error_rate(0.3)]) == []
    assert [alert.value for alert in engine.active()] == [0.3]

    clock.now = T0 + 30
    [resolved] = engine.evaluate([error_rate(0.02)])
    assert resolved.state == "resolved"
    assert resolved.dedup_key == firing.dedup_key
    assert (resolved.started_s, resolved.resolved_s, resolved.value) == (T0 + 10, T0 + 30, 0.02)
    assert resolved.summary == (
        "[RESOLVED] error_rate_high: error_rate = 0.02 (deployment=credit_risk, version=2)"
    )
    assert engine.active() == []
    assert engine.evaluate([error_rate(0.02)]) == []


def test_value_equal_to_the_bound_does_not_fire() -> None:
    engine, _ = engine_at(HIGH_ERRORS, Rule("accuracy_low", "accuracy", below=0.8))
    assert engine.evaluate([error_rate(0.05), Sample("accuracy", 0.8, CREDIT)]) == []


def test_below_and_a_band() -> None:
    band = Rule("latency_band", "latency_p99_ms", above=250.0, below=1.0)
    engine, clock = engine_at(Rule("accuracy_low", "accuracy", below=0.8), band)
    fired = engine.evaluate(
        [Sample("accuracy", 0.7, CREDIT), Sample("latency_p99_ms", 0.5, CREDIT)]
    )
    assert [(alert.rule.name, alert.summary.split(": ")[1]) for alert in fired] == [
        ("accuracy_low", "accuracy = 0.7 below 0.8 (deployment=credit_risk, version=2)"),
        ("latency_band", "latency_p99_ms = 0.5 below 1 (deployment=credit_risk, version=2)"),
    ]
    clock.now += 1  # the band breached on its other side: the same series, still firing
    assert (
        engine.evaluate([Sample("accuracy", 0.7, CREDIT), Sample("latency_p99_ms", 300, CREDIT)])
        == []
    )


def test_for_s_needs_the_breach_to_hold_without_a_gap() -> None:
    slow = Rule("latency_high", "latency_p99_ms", above=250.0, for_s=60.0)
    engine, clock = engine_at(slow)

    def at(offset: float, value: float) -> list[Alert]:
        clock.now = T0 + offset
        return engine.evaluate([Sample("latency_p99_ms", value, CREDIT)])

    assert at(0, 300) == []
    assert at(30, 100) == []  # cleared while pending: no notification, the timer restarts
    assert at(40, 300) == []
    assert at(99, 300) == []
    [firing] = at(100, 300)
    assert firing.started_s == T0 + 40
    assert at(101, 300) == []


def test_cooldown_holds_back_a_flapping_series() -> None:
    engine, clock = engine_at(HIGH_ERRORS, cooldown_s=300.0)
    [first] = engine.evaluate([error_rate(0.1)])
    clock.now = T0 + 10
    [resolved] = engine.evaluate([error_rate(0.0)])
    assert resolved.state == "resolved"

    for offset in (20, 100, 309):  # breaching again inside the cool-down: nothing sent
        clock.now = T0 + offset
        assert engine.evaluate([error_rate(0.1)]) == []
    assert engine.active() == []

    clock.now = T0 + 310  # the cool-down is over and the breach held throughout
    [again] = engine.evaluate([error_rate(0.1)])
    assert (again.state, again.started_s, again.dedup_key) == ("firing", T0 + 20, first.dedup_key)


def test_cooldown_is_per_series() -> None:
    engine, clock = engine_at(HIGH_ERRORS)
    other = {"deployment": "credit_risk", "version": "3"}
    engine.evaluate([error_rate(0.1)])
    clock.now += 1
    engine.evaluate([error_rate(0.0)])
    clock.now += 1
    [fired] = engine.evaluate([error_rate(0.1), error_rate(0.1, other)])
    assert fired.labels == other


def test_missing_and_non_finite_samples_resolve() -> None:
    engine, clock = engine_at(HIGH_ERRORS)
    other = {"deployment": "credit_risk", "version": "3"}
    assert len(engine.evaluate([error_rate(0.1), error_rate(0.2, other)])) == 2

    clock.now += 1
    [gone] = engine.evaluate([error_rate(0.2, other)])
    assert (gone.labels, gone.state, gone.value) == (CREDIT, "resolved", 0.1)  # last seen value

    clock.now += 1
    [nan] = engine.evaluate([error_rate(math.nan, other)])
    assert (nan.labels, nan.state, nan.value) == (other, "resolved", 0.2)
    assert engine.evaluate([error_rate(math.inf, other)]) == []


def test_deployment_pattern() -> None:
    rule = Rule("credit_errors", "error_rate", above=0.05, deployment="credit_*")
    engine, _ = engine_at(rule, Rule("lag", "journal_lag_s", above=10.0))
    fired = engine.evaluate(
        [
            error_rate(0.1, {"deployment": "credit_risk"}),
            error_rate(0.1, {"deployment": "fraud"}),
            error_rate(0.1, {}),  # no deployment label: only "*" matches it
            Sample("journal_lag_s", 12.0, {}),
        ]
    )
    assert [(alert.rule.name, dict(alert.labels)) for alert in fired] == [
        ("credit_errors", {"deployment": "credit_risk"}),
        ("lag", {}),
    ]
    assert fired[1].summary == "[WARNING] lag: journal_lag_s = 12 above 10"


def test_one_sample_can_fire_several_rules() -> None:
    warn = Rule("errors_warn", "error_rate", above=0.01, severity=Severity.WARNING)
    engine, _ = engine_at(warn, HIGH_ERRORS)
    fired = engine.evaluate([error_rate(0.1)])
    assert [(alert.rule.name, alert.severity) for alert in fired] == [
        ("errors_warn", Severity.WARNING),
        ("error_rate_high", Severity.CRITICAL),
    ]
    assert fired[0].dedup_key != fired[1].dedup_key


def test_dedup_key_is_stable_and_label_order_free() -> None:
    assert dedup_key("error_rate_high", {"version": "2", "deployment": "credit_risk"}) == (
        "6bbceb7adb4cdbd9eef4875bfd565bd0"
    )
    assert dedup_key("error_rate_high", {"deployment": "credit_risk"}) != dedup_key(
        "error_rate_high", CREDIT
    )


def test_severity_order_and_names() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.CRITICAL
    assert Severity.parse("Critical") is Severity.CRITICAL
    assert Severity.CRITICAL.label == "critical"
    with pytest.raises(ConfigError, match="one of info, warning, critical"):
        Severity.parse("page")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "r", "metric": "drift"}, "give above, below or both"),
        ({"name": "r", "metric": "drift", "above": 1.0, "below": 2.0}, "below must be <= above"),
        ({"name": "", "metric": "drift", "above": 1.0}, "name must be non-empty"),
        ({"name": "r", "metric": "", "above": 1.0}, "metric must be non-empty"),
        ({"name": "r", "metric": "drift", "above": 1.0, "for_s": -1.0}, "for_s must be >= 0"),
    ],
)
def test_invalid_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Rule(**kwargs)  # type: ignore[arg-type]


def test_engine_refuses_duplicate_rule_names() -> None:
    with pytest.raises(ValueError, match="unique"):
        AlertEngine([HIGH_ERRORS, HIGH_ERRORS])


# --- config -----------------------------------------------------------------------------------

FULL_CONFIG = """
[alerts]
cooldown_s = 600
evaluate_interval_s = 5
queue_size = 100

[alerts.retry]
attempts = 3
base_s = 1
max_s = 20

[[alerts.rules]]
name = "error_rate_high"
metric = "error_rate"
above = 0.05
severity = "critical"
for_s = 60
deployment = "credit_*"

[[alerts.rules]]
name = "accuracy_low"
metric = "accuracy"
below = 1

[alerts.channels.oncall]
type = "pagerduty"
min_severity = "critical"
routing_key = "R0UT1NGKEY"

[alerts.channels.mail]
type = "email"
min_severity = "info"
host = "smtp.example.com"
port = 587
starttls = true
username = "alerts"
password = "s3cret"
sender = "modelgate@example.com"
recipients = ["ml@example.com"]

[alerts.channels.hook]
type = "webhook"
url = "https://hooks.example.com/modelgate"
secret = "whsec"
"""


def test_parses_the_full_example() -> None:
    config = parse_alerts(tomllib.loads(FULL_CONFIG)["alerts"])
    assert (config.cooldown_s, config.evaluate_interval_s, config.queue_size) == (600.0, 5.0, 100)
    assert config.retry == RetryPolicy(attempts=3, base_s=1.0, max_s=20.0)
    assert config.rules == (
        Rule(
            "error_rate_high",
            "error_rate",
            above=0.05,
            severity=Severity.CRITICAL,
            for_s=60.0,
            deployment="credit_*",
        ),
        Rule("accuracy_low", "accuracy", below=1.0),
    )
    assert [(c.name, c.type, c.min_severity) for c in config.channels] == [
        ("oncall", "pagerduty", Severity.CRITICAL),
        ("mail", "email", Severity.INFO),
        ("hook", "webhook", Severity.WARNING),
    ]
    oncall, mail, hook = config.channels
    assert oncall.settings == PagerDutySettings(routing_key="R0UT1NGKEY")
    assert mail.settings == EmailSettings(
        host="smtp.example.com",
        port=587,
        starttls=True,
        username="alerts",
        password="s3cret",
        sender="modelgate@example.com",
        recipients=["ml@example.com"],
    )
    assert hook.settings == WebhookSettings(
        url="https://hooks.example.com/modelgate", secret="whsec"
    )
    assert [type(c.build()).__name__ for c in config.channels] == [
        "PagerDutyChannel",
        "EmailChannel",
        "WebhookChannel",
    ]


def test_empty_section_is_the_defaults() -> None:
    assert parse_alerts({}) == AlertsConfig()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"cooldown": 1}, "alerts: unknown key 'cooldown'"),
        ({"evaluate_interval_s": 0}, "alerts: evaluate_interval_s must be > 0"),
        ({"retry": {"attempts": 0}}, r"alerts.retry: attempts must be >= 1"),
        ({"rules": {"name": "x"}}, r"alerts.rules must be an array of tables"),
        ({"rules": [{"name": "x", "above": 1}]}, r"alerts.rules\[0\]: 'metric' is required"),
        (
            {"rules": [{"name": "x", "metric": "drift", "above": 1, "labels": {}}]},
            r"alerts.rules\[0\]: unknown key 'labels'",
        ),
        (
            {"rules": [{"name": "x", "metric": "drift", "above": "1"}]},
            r"alerts.rules\[0\]: 'above' must be float, not str",
        ),
        (
            {"rules": [{"name": "x", "metric": "drift", "above": 1, "severity": "page"}]},
            r"alerts.rules\[0\]: 'severity': severity must be one of",
        ),
        (
            {"rules": [{"name": "x", "metric": "drift"}]},
            r"alerts.rules\[0\]: rule x: give above, below or both",
        ),
        (
            {"rules": [{"name": "x", "metric": "drift", "above": 1}] * 2},
            r"alerts.rules: duplicate names \['x'\]",
        ),
        ({"channels": {"x": {"type": "sms"}}}, r"alerts.channels.x: 'type' must be one of email"),
        # not a string: once a TypeError (a list is no dict key) instead of this message
        ({"channels": {"x": {"type": ["slack"]}}}, r"alerts.channels.x: 'type' must be one of"),
        (
            {"channels": {"x": {"type": "slack", "url": "ftp://x"}}},
            r"alerts.channels.x: url must start with http",
        ),
        (
            {"channels": {"x": {"type": "webhook", "url": "http://h/", "min_severity": "low"}}},
            r"alerts.channels.x: 'min_severity': severity must be one of",
        ),
        (
            {"channels": {"x": {"type": "webhook", "url": "http://h/"}}},
            r"alerts.channels.x: secret is required",
        ),
        ({"channels": {"x": {"type": "pagerduty"}}}, r"alerts.channels.x: routing_key is required"),
        (
            {
                "channels": {
                    "x": {"type": "email", "sender": "a@b", "recipients": ["c@d"], "username": "u"}
                }
            },
            r"alerts.channels.x: username needs starttls = true",
        ),
        (
            {"channels": {"x": {"type": "email", "sender": "a@b", "recipients": []}}},
            r"alerts.channels.x: recipients must be a non-empty list",
        ),
        (
            {
                "channels": {
                    "x": {
                        "type": "email",
                        "sender": "a@b",
                        "recipients": ["c@d"],
                        "starttls": True,
                        "ca_file": "/nonexistent/ca.pem",
                    }
                }
            },
            r"alerts.channels.x: ca_file must name a PEM file",
        ),
    ],
)
def test_config_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_alerts(table)
