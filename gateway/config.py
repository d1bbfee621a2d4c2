"""Configuration: typed sections read from a TOML file, every key with a default.

A key the code does not know, or a value of the wrong type, is a ConfigError naming it, so a typo
in a config file fails at start-up instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.errors import GatewayError
from gateway.lifecycle.breaker import BreakerConfig
from gateway.monitoring.drift import DriftConfig

RECORD_CAPTURES = ("none", "digest", "full", "sampled")  # see governance/predictions.py
BATCH_WAITS = ("adaptive", "fixed")  # see batching.py
IMPORTANCES = ("low", "moderate", "high", "critical")  # see governance/approvals.py


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the key."""


@dataclass(frozen=True)
class ModelConfig:
    """Per model: `[model_defaults]` in the server config, overridden by `<model>/config.toml`."""

    max_batch_size: int = 64  # rows per ONNX Runtime run; 0 turns dynamic batching off
    max_queue_delay_us: int = 0  # how long a request may wait for others to join its batch
    # adaptive: wait only while requests keep arriving (up to the delay) | fixed: the whole delay
    batch_wait: str = "adaptive"
    instances: int = 1  # runs of one version that may execute at once (worker threads)
    timeout_ms: int = 0  # a request not answered in this time fails over (0: no limit)
    intra_op_threads: int = 1  # ONNX Runtime threads inside one operator
    inter_op_threads: int = 1  # ONNX Runtime threads across operators
    warmup_file: str = ""  # JSON of sample inputs ({input: rows}), relative to the model folder
    warmup_samples: int = 1  # samples generated from the metadata when there is no warmup_file
    shapes: dict[str, list[int]] = field(default_factory=dict)  # tensor name -> declared shape
    record_capture: str = "digest"  # prediction records keep: none | digest | full | sampled
    record_sample_percent: float = 1.0  # with record_capture = sampled: share kept in full
    record_durable: bool = False  # answer only once the prediction record is on disk
    # low | moderate | high | critical; high and critical changes need a second person
    importance: str = "moderate"
    # what the model predicts, for accuracy against actuals (monitoring/accuracy.py TaskSpec:
    # kind, label_output, score_output, classes, positive); empty: read from the signature
    task: dict[str, Any] = field(default_factory=dict)
    feature_importances: dict[str, float] = field(default_factory=dict)  # drift's overall score

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_queue_delay_us", "warmup_samples", "timeout_ms"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        for name in ("instances", "intra_op_threads", "inter_op_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if self.batch_wait not in BATCH_WAITS:
            raise ConfigError(f"batch_wait must be one of {', '.join(BATCH_WAITS)}")
        if self.record_capture not in RECORD_CAPTURES:
            raise ConfigError(f"record_capture must be one of {', '.join(RECORD_CAPTURES)}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(f"importance must be one of {', '.join(IMPORTANCES)}")
        if not 0.0 <= self.record_sample_percent <= 100.0:
            raise ConfigError("record_sample_percent must lie in [0, 100]")
        for feature, weight in self.feature_importances.items():
            if not weight >= 0:  # NaN too
                raise ConfigError(f"feature_importances.{feature} must be >= 0")
        for tensor, shape in self.shapes.items():
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and d >= -1 for d in shape
            ):
                raise ConfigError(f"shapes.{tensor} must be a list of integers >= -1")


@dataclass(frozen=True)
class TracingConfig:
    exporter: str = "off"  # off | console | otlp
    otlp_endpoint: str = "http://127.0.0.1:4317"  # OTLP/gRPC collector, when exporter = otlp
    service_name: str = "modelgate"
    sample_ratio: float = 1.0  # share of requests traced
    metrics: bool = False  # also export drift, accuracy and health gauges (monitoring/telemetry.py)
    metrics_interval_s: float = 15.0  # how often the gauges are exported

    def __post_init__(self) -> None:
        if self.exporter not in ("off", "console", "otlp"):
            raise ConfigError(
                f"tracing.exporter must be off, console or otlp, not {self.exporter!r}"
            )
        if not 0.0 <= self.sample_ratio <= 1.0:
            raise ConfigError("tracing.sample_ratio must lie in [0, 1]")
        if self.metrics_interval_s <= 0:
            raise ConfigError("tracing.metrics_interval_s must be > 0")


@dataclass(frozen=True)
class JournalConfig:
    """`[journal]`: the append-only record of every admin operation and every prediction."""

    enabled: bool = True
    path: str = "journal"  # folder of segments, checkpoints and (by default) the signing key
    fsync: str = "batch"  # batch: one fsync per group | interval | off (tests only)
    fsync_interval_ms: int = 10  # with fsync = interval: the longest a written record waits
    segment_bytes: int = 64 * 1024 * 1024  # a segment is closed once it reaches this size
    queue_limit: int = 65_536  # records waiting for the writer; beyond, requests wait or fail
    when_full: str = "wait"  # wait (back-pressure: requests slow) | fail (503, fail closed)
    async_window_ms: int = 20  # records of async mode are gathered this long into one group
    durable_window_us: int = 0  # a durable record waits at most this long to share a sync
    retention_days: int = 183  # exported segments older than this may be deleted (EU AI Act 19)
    export_dir: str = ""  # where the admin API's journal export writes; default <path>/exports
    accept_damage: bool = False  # start on a damaged journal anyway (--accept-damage)
    checkpoint_every: int = 1000  # records of a stream between signed checkpoints
    checkpoint_interval_s: float = 10.0  # or this long after the last one, when records came in
    signing_key: str = ""  # Ed25519 PEM; default <path>/signing-key.pem, created on first start
    key_name: str = "modelgate.journal"  # the signer's name in checkpoint notes

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ConfigError("journal.checkpoint_every must be >= 1")
        if self.checkpoint_interval_s <= 0:
            raise ConfigError("journal.checkpoint_interval_s must be > 0")
        if not self.key_name or any(c.isspace() or c == "+" for c in self.key_name):
            raise ConfigError("journal.key_name must be non-empty, without spaces or '+'")


@dataclass(frozen=True)
class MonitoringConfig:
    """`[monitoring]`: service health, drift and accuracy."""

    sketches: bool = True  # drift sketches for versions with a training-data profile
    accuracy: bool = True  # keep predictions by request id to join the actuals sent later
    slow_request_ms: float = 100.0  # answered slower than this: counted as slow
    health_period_s: float = 10.0  # health windows: a snapshot of the counters this often
    health_horizon: int = 360  # snapshots kept (one hour at the default period)
    accuracy_window_s: float = 3600.0  # actuals are counted in windows this long...
    accuracy_horizon: int = 48  # ... this many of them kept
    predictions_kept: int = 100_000  # recent predictions held for joining actuals...
    predictions_max_age_s: float = 7 * 86400.0  # ... at most this old
    # `[monitoring.drift]`: windows and thresholds of the drift sketches (monitoring/drift.py)
    drift: DriftConfig = field(default_factory=DriftConfig)

    def __post_init__(self) -> None:
        durations = (self.slow_request_ms, self.health_period_s, self.accuracy_window_s)
        counts = (self.health_horizon, self.accuracy_horizon, self.predictions_kept)
        if min(durations) <= 0 or self.predictions_max_age_s <= 0 or min(counts) < 1:
            raise ConfigError("monitoring: durations must be > 0 and counts >= 1")


@dataclass(frozen=True)
class AuthConfig:
    """`[auth]`: who may call. The admin API and journal reads always need credentials."""

    inference: bool = False  # inference and model reads need credentials too
    tokens_file: str = ""  # API tokens (hashed); default <journal.path>/tokens.json
    # `[auth.ldap]`: HTTP Basic / gRPC `authorization: Basic` checked by a bind as the user;
    # keys: governance/ldap.py LdapConfig, checked at start-up; empty: LDAP off
    ldap: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerConfig:
    repository: str = "examples/models"  # folder of <model>/<version>/model.onnx
    uploads: str = ""  # model files uploaded through the admin API; default <journal.path>/uploads
    host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    max_request_bytes: int = 64 * 1024 * 1024  # larger bodies are refused (HTTP 413)
    strict_readiness: bool = True  # ready only when every model in the repository is ready
    access_log: bool = False  # one JSON line per request on the `modelgate.access` logger
    log_level: str = "info"
    tracing: TracingConfig = field(default_factory=TracingConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    model_defaults: ModelConfig = field(default_factory=ModelConfig)
    change_ttl_s: float = 3600.0  # how long a change request waits for its approval
    health_interval_s: float = 2.0  # remote versions' health checks, which feed their breakers
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    # `[alerts]`: rules, channels, cool-down; checked at start-up (monitoring/alert_config.py)
    alerts: dict[str, Any] = field(default_factory=dict)
    # `[breaker]`: when a version is ejected from routing (lifecycle/breaker.py BreakerConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)

    @property
    def tokens_path(self) -> Path:
        return Path(self.auth.tokens_file or Path(self.journal.path) / "tokens.json")

    @property
    def uploads_path(self) -> Path:
        return Path(self.uploads or Path(self.journal.path) / "uploads")

    def __post_init__(self) -> None:
        for name in ("http_port", "grpc_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{name} must be a port number")
        if self.health_interval_s <= 0 or self.change_ttl_s <= 0:
            raise ConfigError("health_interval_s and change_ttl_s must be > 0")
        if self.max_request_bytes < 1:
            raise ConfigError("max_request_bytes must be >= 1")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError(f"log_level must be a logging level name, not {self.log_level!r}")


T = TypeVar("T")


def from_mapping(cls: type[T], data: dict[str, Any], where: str, base: T | None = None) -> T:
    """Build dataclass `cls` from `data`, starting from `base` (or the defaults); nested
    dataclass fields take nested tables. Raises ConfigError for unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key '{key}' (known: {', '.join(sorted(known))})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a table")
            nested_base = getattr(base, key) if base is not None else None
            values[key] = from_mapping(hint, value, f"{where}.{key}", nested_base)  # type: ignore[arg-type]
        else:
            values[key] = _checked(value, hint, where, key)
    try:
        return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]
    except (ValueError, GatewayError) as error:  # the sections' own checks (ConfigError too)
        raise ConfigError(f"{where}: {error}") from None


def _checked(value: Any, hint: Any, where: str, name: str) -> Any:
    """`value` as the field `name` of type `hint` takes it; raises ConfigError naming
    `where: 'name'` (an item of a table as name.key, of a list as name[index])."""
    origin = typing.get_origin(hint) or hint
    if origin is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin in (types.UnionType, typing.Union):
        origin = typing.get_args(hint)[0]
    wrong = not isinstance(value, origin) or (isinstance(value, bool) and origin is not bool)
    if wrong:
        raise ConfigError(
            f"{where}: '{name}' must be {origin.__name__}, not {type(value).__name__}"
        )
    # the items of a typed table or list too: a wrong one would surface only when used
    args = typing.get_args(hint)
    if origin is dict and args and args[1] is not Any:
        return {k: _checked(v, args[1], where, f"{name}.{k}") for k, v in value.items()}
    if origin is list and args:
        return [_checked(v, args[0], where, f"{name}[{i}]") for i, v in enumerate(value)]
    return value


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None


def load_server_config(path: Path | None, **overrides: Any) -> ServerConfig:
    """The server config from `path` (or defaults), then the command-line overrides that are
    not None."""
    config = ServerConfig()
    if path is not None:
        config = from_mapping(ServerConfig, read_toml(path), str(path), config)
    given = {key: value for key, value in overrides.items() if value is not None}
    return from_mapping(ServerConfig, given, "command line", config) if given else config
