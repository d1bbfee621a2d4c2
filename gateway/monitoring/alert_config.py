"""The ``[alerts]`` section of the server config, parsed from the plain dict TOML gives::

    [alerts]
    cooldown_s = 300            # a resolved series stays quiet this long (flapping)
    evaluate_interval_s = 15    # how often the rules run
    queue_size = 1000           # per channel; more pending notifications are dropped

    [alerts.retry]              # per notification and channel
    attempts = 5
    base_s = 0.5
    max_s = 30

    [[alerts.rules]]
    name = "error_rate_high"
    metric = "error_rate"       # drift, accuracy, error_rate, latency_p99_ms, breaker_open, ...
    above = 0.05                # and/or below = ...
    severity = "critical"       # info, warning (default), critical
    for_s = 60
    deployment = "credit_*"     # fnmatch pattern; default "*"

    [alerts.channels.oncall]
    type = "pagerduty"          # a key of channels.CHANNEL_TYPES
    min_severity = "critical"   # default "warning"
    routing_key = "..."         # the type's own keys: channels.<Type>Settings

Every error is a ConfigError naming the key (``alerts.rules[0]: ...``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config import ConfigError, from_mapping
from gateway.monitoring.alerts import Rule, Severity
from gateway.monitoring.channels import CHANNEL_TYPES, Channel
from gateway.monitoring.dispatch import RetryPolicy


@dataclass(frozen=True)
class ChannelConfig:
    """One ``[alerts.channels.<name>]`` table."""

    name: str
    type: str
    min_severity: Severity
    settings: Any  # CHANNEL_TYPES[type].settings_type

    def build(self) -> Channel:
        """The channel; no I/O until its first send."""
        return CHANNEL_TYPES[self.type](self.name, self.settings, self.min_severity)


@dataclass(frozen=True)
class AlertsConfig:
    cooldown_s: float = 300.0
    evaluate_interval_s: float = 15.0
    queue_size: int = 1000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rules: tuple[Rule, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()

    def __post_init__(self) -> None:
        if not self.cooldown_s >= 0:
            raise ConfigError("cooldown_s must be >= 0")
        if not self.evaluate_interval_s > 0:
            raise ConfigError("evaluate_interval_s must be > 0")
        if self.queue_size < 1:
            raise ConfigError("queue_size must be >= 1")


def parse_alerts(data: Mapping[str, Any], where: str = "alerts") -> AlertsConfig:
    """The alerts config from the ``[alerts]`` table `data`; `where` prefixes error messages.
    Raises ConfigError."""
    scalars = dict(data)
    rules = _list_of_tables(scalars.pop("rules", []), f"{where}.rules")
    channels = _table(scalars.pop("channels", {}), f"{where}.channels")
    config = from_mapping(AlertsConfig, scalars, where)
    parsed_rules = tuple(_rule(rule, f"{where}.rules[{i}]") for i, rule in enumerate(rules))
    names = [rule.name for rule in parsed_rules]
    if duplicated := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(f"{where}.rules: duplicate names {duplicated}")
    parsed_channels = tuple(
        _channel(name, _table(table, f"{where}.channels.{name}"), f"{where}.channels.{name}")
        for name, table in channels.items()
    )
    return dataclasses.replace(config, rules=parsed_rules, channels=parsed_channels)


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _list_of_tables(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be an array of tables ([[{where}]])")
    return [_table(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _severity(value: Any, where: str) -> Severity:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    try:
        return Severity.parse(value)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _rule(table: dict[str, Any], where: str) -> Rule:
    for required in ("name", "metric"):
        if required not in table:
            raise ConfigError(f"{where}: '{required}' is required")
    values = dict(table)
    if "severity" in values:
        values["severity"] = _severity(values["severity"], f"{where}: 'severity'")
    for bound in (
        "above",
        "below",
    ):  # from_mapping takes an int for a float, but not for float | None
        if isinstance(values.get(bound), int) and not isinstance(values[bound], bool):
            values[bound] = float(values[bound])
    return from_mapping(Rule, values, where)


def _channel(name: str, table: dict[str, Any], where: str) -> ChannelConfig:
    settings = dict(table)
    kind = settings.pop("type", None)
    if not isinstance(kind, str) or kind not in CHANNEL_TYPES:
        raise ConfigError(
            f"{where}: 'type' must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}"
        )
    min_severity = _severity(settings.pop("min_severity", "warning"), f"{where}: 'min_severity'")
    parsed = from_mapping(CHANNEL_TYPES[kind].settings_type, settings, where)
    return ChannelConfig(name, kind, min_severity, parsed)
