"""`journal`: what journaling every prediction costs, in one run on one machine.

Two parts:

appends   The journal alone, in this process pinned to the server core: `callers` coroutines
          await `Journal.append` of prediction payloads as `PredictionPayloads` encodes them with
          capture = digest (the model's own rows, its file hash and profile id), each run into a
          fresh journal. Durable appends with fsync = batch at each caller count, async appends
          (durable=False, fsync = batch), and durable appends with fsync = off for reference (the
          encode, chain, write and commit path without a sync). Records/s, groups/s, fsyncs/s
          and the mean group size come from `stats()` deltas over the measured window; the
          append-call latency from the callers.
gateway   Modelgate three times side by side, each with its own temp journal folder, server
          config (`[journal] enabled`, `fsync`) and temp copy of the model repository whose
          `<model>/config.toml` sets `record_durable`: journal off, on with async records, on
          with durable records. Each path is loaded at each concurrency (h2load for gRPC, wrk
          for HTTP), servers on the server core, load on the client core. Configurations are
          interleaved and their order rotates with each repeat, so drift on a shared machine
          spreads over all of them. Cost = the drop in median req/s from journal off, in %;
          the per-repeat costs (each against the same repeat's journal-off run) show the noise.
          Between points the servers' `/metrics` give their group commits and fsyncs, and at
          the end each journal's prediction records are counted against the OK replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvloop

from gateway.config import ConfigError, ModelConfig, from_mapping
from gateway.governance.journal import Journal, JournalError, JournalOptions, verify_journal
from gateway.governance.ledger import PREDICTIONS
from gateway.governance.predictions import PredictionPayloads
from gateway.protocol.types import InferInput

from . import peers
from .clients import Endpoint
from .compare import CompareError, Point, resolve_model_file, select_cores
from .measure import Target, tool_for
from .model import ModelSpec, random_rows
from .payloads import PATHS, RequestSet, build_request_set
from .procs import pinned
from .recorder import POINT, SERVER, Recorder, RunSettings, broke, run_meta
from .stats import percentile_key, percentiles

PARTS: tuple[str, ...] = ("appends", "gateway")
DEFAULT_CALLERS: tuple[int, ...] = (1, 64, 512)
DEFAULT_PATHS: tuple[str, ...] = ("grpc-raw", "http-json")
DEFAULT_CONCURRENCY: tuple[int, ...] = (64,)
# The target: journaling costs at most this much throughput at TARGET_CONCURRENCY on
# TARGET_PATH (reported, not enforced).
TARGET_PCT = 3.0
TARGET_PATH = "grpc-raw"
TARGET_CONCURRENCY = 64
# What the gateway journals a prediction as (serving.py).
KIND = "prediction"
ACTOR = "anonymous"
MODEL_CONFIG = "config.toml"
PROFILE_FILE = "profile.json"
APPEND_PERCENTILES: tuple[float, ...] = (50.0, 99.0)
# Per point, on top of its duration: tool or journal start, connection setup, exit, drain (a
# policy change in `routing`).
POINT_OVERHEAD_S = 0.5
METRICS_TIMEOUT_S = 5.0


@dataclass(frozen=True, kw_only=True)
class JournalBenchConfig(RunSettings):
    """Every knob of `run_journal_bench`."""

    model_repository: Path
    model: str = "credit_risk"
    model_version: str | None = None  # None: the highest numeric version folder
    parts: tuple[str, ...] = PARTS
    callers: tuple[int, ...] = DEFAULT_CALLERS  # appends: durable callers (fsync batch and off)
    async_callers: int = 64  # appends: callers of the async case
    paths: tuple[str, ...] = DEFAULT_PATHS
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    fsync: str = "batch"  # the gateway servers' [journal] fsync
    journal_dir: Path | None = None  # where temp journals and repositories go (None: $TMPDIR)
    payload_pool: int = 4096  # distinct prediction payloads the append callers cycle through


# --- the journal alone ----------------------------------------------------------------------


@dataclass(frozen=True)
class AppendCase:
    durable: bool
    fsync: str
    callers: int

    @property
    def mode(self) -> str:
        return "durable" if self.durable else "async"

    @property
    def label(self) -> str:
        return f"{self.mode} fsync={self.fsync} callers={self.callers}"


def append_cases(callers: Sequence[int], async_callers: int) -> list[AppendCase]:
    """Durable with fsync = batch at each caller count, async once, durable with fsync = off
    at each caller count (the reference without syncs)."""
    return [
        *(AppendCase(True, "batch", c) for c in callers),
        AppendCase(False, "batch", async_callers),
        *(AppendCase(True, "off", c) for c in callers),
    ]


@dataclass(frozen=True)
class AppendRun:
    """One measured window of appends: rates from the journal's counters, latency of the
    append call (ms) from the callers."""

    elapsed_s: float
    records: int
    records_per_s: float
    groups_per_s: float
    fsyncs_per_s: float
    mean_group: float
    mb_per_s: float
    largest_group: int
    append_ms: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "append_ms": dict(self.append_ms)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppendRun:
        return cls(
            elapsed_s=float(data["elapsed_s"]),
            records=int(data["records"]),
            records_per_s=float(data["records_per_s"]),
            groups_per_s=float(data["groups_per_s"]),
            fsyncs_per_s=float(data["fsyncs_per_s"]),
            mean_group=float(data["mean_group"]),
            mb_per_s=float(data["mb_per_s"]),
            largest_group=int(data["largest_group"]),
            append_ms={str(k): float(v) for k, v in data["append_ms"].items()},
        )


def append_run(
    *,
    records: int,
    groups: int,
    fsyncs: int,
    written_bytes: int,
    largest_group: int,
    elapsed_s: float,
    latencies_ns: Sequence[int] | np.ndarray,
) -> AppendRun:
    """An AppendRun from counter deltas over `elapsed_s` and the append calls' latencies."""
    rate = (lambda n: n / elapsed_s) if elapsed_s > 0 else (lambda n: 0.0)
    latency: dict[str, float] = {}
    if len(latencies_ns):
        millis = np.asarray(latencies_ns, dtype=np.float64) / 1e6
        values = percentiles(millis, APPEND_PERCENTILES)
        latency = {percentile_key(q): v for q, v in zip(APPEND_PERCENTILES, values, strict=True)}
        latency["mean"] = float(millis.mean())
        latency["max"] = float(millis.max())
    return AppendRun(
        elapsed_s=elapsed_s,
        records=records,
        records_per_s=rate(records),
        groups_per_s=rate(groups),
        fsyncs_per_s=rate(fsyncs),
        mean_group=records / groups if groups else 0.0,
        mb_per_s=rate(written_bytes) / 1e6,
        largest_group=largest_group,
        append_ms=latency,
    )


def median_append(runs: Sequence[AppendRun]) -> AppendRun:
    """Field-wise median of repeats; records summed, the largest group the largest seen."""
    if not runs:
        raise ValueError("median of no runs")
    keys = sorted(set.intersection(*(set(r.append_ms) for r in runs)))

    def med(name: str) -> float:
        return float(statistics.median(getattr(r, name) for r in runs))

    return AppendRun(
        elapsed_s=med("elapsed_s"),
        records=sum(r.records for r in runs),
        records_per_s=med("records_per_s"),
        groups_per_s=med("groups_per_s"),
        fsyncs_per_s=med("fsyncs_per_s"),
        mean_group=med("mean_group"),
        mb_per_s=med("mb_per_s"),
        largest_group=max(r.largest_group for r in runs),
        append_ms={k: float(statistics.median(r.append_ms[k] for r in runs)) for k in keys},
    )


@dataclass
class AppendPoint:
    case: AppendCase
    runs: list[AppendRun] = field(default_factory=list)

    @property
    def median(self) -> AppendRun:
        return median_append(self.runs)


def prediction_payloads(
    model: ModelSpec, model_file: Path, *, count: int, seed: int
) -> list[bytes]:
    """`count` prediction payloads, encoded, as the gateway journals them with capture = digest:
    the model's file hash and profile id, a distinct request id and input digest each."""
    from gateway.monitoring.profile import load_profile  # only this command needs it

    content_hash = hashlib.sha256(model_file.read_bytes()).hexdigest()
    profile = model_file.with_name(PROFILE_FILE)
    profile_id = str(load_profile(profile)["id"]) if profile.is_file() else ""
    template = PredictionPayloads(model.name, model.version, content_hash, profile_id, "digest", 0)
    routing = "pinned" if model.version else "latest"
    rng = random.Random(seed)
    payloads = []
    for rows in random_rows(model, batch=1, count=count, seed=seed):
        inputs = [InferInput(s.name, s.datatype, rows[s.name]) for s in model.inputs]
        request_id = f"{rng.getrandbits(128):032x}"
        latency_us = rng.randrange(50_000, 500_000) // 1000
        payloads.append(template.encode(inputs, [], request_id, latency_us, routing))
    return payloads


@dataclass
class _Drive:
    stop: bool = False
    measuring: bool = False
    latencies_ns: list[int] = field(default_factory=list)


async def _drive(
    journal: Journal,
    case: AppendCase,
    payloads: Sequence[bytes],
    warmup_s: float,
    duration_s: float,
) -> AppendRun:
    state = _Drive()
    count = len(payloads)

    async def caller(first: int) -> None:
        # An async append that finds room returns without suspending: a caller then runs on
        # until the queue is full, as a burst of requests would.
        index = first
        while not state.stop:
            payload = payloads[index % count]
            index += case.callers
            started = time.perf_counter_ns()
            await journal.append(PREDICTIONS, KIND, ACTOR, payload, durable=case.durable)
            if state.measuring:
                state.latencies_ns.append(time.perf_counter_ns() - started)

    tasks = [asyncio.create_task(caller(k)) for k in range(case.callers)]
    try:
        await asyncio.sleep(warmup_s)
        before, t0 = journal.stats(), time.perf_counter()
        state.measuring = True
        await asyncio.sleep(duration_s)
        state.measuring = False
        after, t1 = journal.stats(), time.perf_counter()
    finally:
        state.stop = True
        await asyncio.gather(*tasks)
    return append_run(
        records=after.records - before.records,
        groups=after.groups - before.groups,
        fsyncs=after.fsyncs - before.fsyncs,
        written_bytes=after.bytes - before.bytes,
        largest_group=after.largest_group,
        elapsed_s=t1 - t0,
        latencies_ns=state.latencies_ns,
    )


def measure_appends(
    case: AppendCase,
    payloads: Sequence[bytes],
    root: Path,
    *,
    warmup_s: float,
    duration_s: float,
    queue_limit: int = JournalOptions.queue_limit,
) -> AppendRun:
    """One window of `case` into a new journal at `root` (on uvloop, like the server); the
    journal is closed (drained and synced) before this returns. Default options but fsync (the
    gateway's defaults, queue limit included, unless given)."""
    options = JournalOptions(fsync=case.fsync, queue_limit=queue_limit)
    with Journal.open(root, options) as journal:
        return uvloop.run(_drive(journal, case, payloads, warmup_s, duration_s))


# --- the gateway with and without journaling --------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    journal: bool
    durable: bool  # the model's record_durable


OFF = "off"
VARIANTS: tuple[Variant, ...] = (
    Variant(OFF, False, False),
    Variant("async", True, False),
    Variant("durable", True, True),
)

_TABLE_HEADER = re.compile(r"^\s*\[")


def set_top_level_key(text: str, key: str, value: str) -> str:
    """`text` (TOML) with top-level `key = value` (`value` a TOML literal): the existing line
    replaced, else a line added before the first table. Everything else is kept as it is."""
    lines = text.splitlines()
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    end = next((i for i, line in enumerate(lines) if _TABLE_HEADER.match(line)), len(lines))
    for i in range(end):
        if assignment.match(lines[i]):
            lines[i] = f"{key} = {value}"
            break
    else:
        at = end
        while at > 0 and not lines[at - 1].strip():  # keep the blank line before a table
            at -= 1
        lines.insert(at, f"{key} = {value}")
    return "\n".join(lines) + "\n"


def server_toml(journal: bool, fsync: str) -> str:
    """The server config of one variant: only the journal table; the rest stays default."""
    return (
        "# written by gateway.bench\n"
        "[journal]\n"
        f"enabled = {'true' if journal else 'false'}\n"
        f"fsync = {json.dumps(fsync)}\n"  # a JSON string is a TOML basic string
    )


def prepare_repository(source: Path, model: str, target: Path, *, durable: bool) -> ModelConfig:
    """Copy the repository to `target` and set `record_durable` in the model's config.toml
    (its other keys kept); returns the model config as the server will read it. Raises
    ConfigError if the edited file does not parse."""
    shutil.copytree(source, target)
    config_file = target / model / MODEL_CONFIG
    text = config_file.read_text() if config_file.exists() else ""
    edited = set_top_level_key(text, "record_durable", "true" if durable else "false")
    config_file.write_text(edited)
    try:
        data = tomllib.loads(edited)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_file}: {error}") from None
    return from_mapping(ModelConfig, data, str(config_file))


def rotated(items: Sequence[Any], shift: int) -> list[Any]:
    """`items` started at index `shift` (mod len): repeat r measures in order r, r+1, ..."""
    if not items:
        return []
    k = shift % len(items)
    return [*items[k:], *items[:k]]


def cost_pct(off: float | None, on: float | None) -> float | None:
    """Throughput lost to journaling, in % of the journal-off throughput (negative: faster)."""
    if off is None or on is None or off <= 0:
        return None
    return (off - on) / off * 100.0


@dataclass(frozen=True)
class CostRow:
    """One variant on one path at one concurrency, against the base variant (journal off here,
    a single version in `routing`); `cost_pct` etc. None for the base itself."""

    variant: str
    path: str
    concurrency: int
    tool: str
    throughput_rps: float
    p50_ms: float | None
    p99_ms: float | None
    cost_pct: float | None
    p50_delta_ms: float | None
    p99_delta_ms: float | None
    paired_cost_pct: tuple[float, ...]  # per repeat, against that repeat's journal-off run
    errors: int
    server_journal: dict[str, float] | None = None  # medians from /metrics: groups/s, fsyncs/s

    @property
    def throughput_ratio(self) -> float | None:
        """req/s against the base's (1 - cost)."""
        return None if self.cost_pct is None else 1.0 - self.cost_pct / 100.0

    @property
    def p99_ratio(self) -> float | None:
        """p99 against the base's."""
        if self.p99_ms is None or self.p99_delta_ms is None:
            return None
        base = self.p99_ms - self.p99_delta_ms
        return self.p99_ms / base if base > 0 else None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def cost_rows(
    points: Mapping[tuple[str, str, int], Point],
    server_journal: Mapping[tuple[str, str, int], Sequence[Mapping[str, float]]] | None = None,
    base_variant: str = OFF,
) -> list[CostRow]:
    """The cost table from per-point runs (key: variant, path, concurrency), in the order the
    points were made, against `base_variant`. Pure. Paired costs pair the i-th run of a variant
    with the i-th run of the base (runs are appended one per repeat); none where their counts
    differ."""
    rows = []
    for (variant, path, c), point in points.items():
        if not point.runs:
            continue
        median = point.median
        base = points.get((base_variant, path, c))
        base_median = base.median if base is not None and base.runs else None
        paired: tuple[float, ...] = ()
        if variant != base_variant and base is not None and len(base.runs) == len(point.runs):
            paired = tuple(
                cost
                for off, on in zip(base.runs, point.runs, strict=True)
                if (cost := cost_pct(off.throughput_rps, on.throughput_rps)) is not None
            )
        against = base_median if variant != base_variant else None
        samples = (server_journal or {}).get((variant, path, c)) or []
        rows.append(
            CostRow(
                variant=variant,
                path=path,
                concurrency=c,
                tool=",".join(sorted({r.tool for r in point.runs})),
                throughput_rps=median.throughput_rps,
                p50_ms=median.latency_ms.get("p50"),
                p99_ms=median.latency_ms.get("p99"),
                cost_pct=cost_pct(against.throughput_rps, median.throughput_rps)
                if against
                else None,
                p50_delta_ms=_delta(median.latency_ms.get("p50"), against.latency_ms.get("p50"))
                if against
                else None,
                p99_delta_ms=_delta(median.latency_ms.get("p99"), against.latency_ms.get("p99"))
                if against
                else None,
                paired_cost_pct=paired,
                errors=median.errors,
                server_journal={
                    k: float(statistics.median(s[k] for s in samples)) for k in samples[0]
                }
                if samples
                else None,
            )
        )
    return rows


_METRIC_LINE = re.compile(r"^(modelgate_journal_[a-z_]+?)(?:_total)?(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def parse_journal_metrics(text: str) -> dict[str, float]:
    """The journal counters in a Prometheus exposition (`_total` suffix dropped, labelled
    series skipped): {"records": ..., "group_commits": ..., "fsyncs": ..., "bytes": ...}."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if "{" in line:
            continue
        match = _METRIC_LINE.match(line)
        if match:
            found[match.group(1).removeprefix("modelgate_journal_")] = float(match.group(2))
    return found


def metrics_rates(
    before: Mapping[str, float], after: Mapping[str, float], elapsed_s: float
) -> dict[str, float] | None:
    """groups/s, fsyncs/s and the mean group size between two scrapes; None if a counter is
    missing (a server without journal metrics) or nothing was committed."""
    names = ("records", "group_commits", "fsyncs")
    if elapsed_s <= 0 or any(n not in before or n not in after for n in names):
        return None
    records, groups, fsyncs = (after[n] - before[n] for n in names)
    if groups <= 0:
        return None
    return {
        "groups_per_s": groups / elapsed_s,
        "fsyncs_per_s": fsyncs / elapsed_s,
        "mean_group": records / groups,
    }


def mount_of(path: Path, mounts: str) -> tuple[str, str]:
    """(mount point, filesystem type) holding `path`, from /proc/mounts text; ("?", "?") when
    none matches."""
    best = ("?", "?")
    resolved = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and (best[0] == "?" or len(point) > len(best[0])):
            best = (point, fields[2])
    return best


def git_revision(folder: Path) -> str | None:
    """The commit of the checkout holding `folder` (the code the servers run), "+dirty" when
    tracked files differ from it; None outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return None
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def _filesystem(path: Path) -> dict[str, str]:
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        mounts = ""
    point, kind = mount_of(path.resolve(), mounts)
    return {"path": str(path), "mount": point, "type": kind}


# --- servers side by side -------------------------------------------------------------------

JOURNAL_FOLDER = "journal"  # in each server's folder, next to its server.toml
SERVER_CONFIG = "server.toml"


def checked_tools(settings: RunSettings, paths: Sequence[str]) -> dict[str, str]:
    """The load generator of each transport of `paths`. Raises CompareError for bad timing or
    an unknown path, FileNotFoundError when `client="native"` and wrk/h2load are missing."""
    if settings.repeats < 1 or settings.duration_s <= 0 or settings.warmup_s < 0:
        raise CompareError("--repeats must be >= 1, --duration > 0 and --warmup >= 0")
    bad_paths = set(paths) - set(PATHS)
    if bad_paths or not paths:
        raise CompareError(f"unknown paths {sorted(bad_paths)}; choose from {list(PATHS)}")
    return {PATHS[p].transport: tool_for(PATHS[p].transport, settings.client) for p in paths}


def interleaved_seconds(settings: RunSettings, points: int) -> float:
    """About how long `points` take, each warmed up once then measured once per repeat."""
    step = settings.duration_s + POINT_OVERHEAD_S
    return points * (settings.repeats * step + settings.warmup_s + POINT_OVERHEAD_S)


class SideBySide:
    """Modelgate servers of one model side by side, one per configuration (a variant), measured
    interleaved: every path at every concurrency runs each variant once per repeat, in an order
    rotated each repeat, so drift on a shared machine spreads over all of them. Between points
    each server's /metrics give its group commits and fsyncs. Owned by its thread."""

    def __init__(
        self,
        settings: RunSettings,
        recorder: Recorder,
        model: ModelSpec,
        server_cores: Sequence[int] | None,
        log_dir: Path,
        label: str,
    ) -> None:
        # fixed
        self._settings = settings
        self._recorder = recorder
        self._model = model
        self._server_cores = server_cores
        self._log_dir = log_dir
        self._label = label  # servers are "modelgate-{label}-{variant}", points "{label} {variant}"
        # grown by `start`
        self._variants: list[str] = []  # every variant asked for, started or not, in order
        self._targets: dict[str, dict[str, Target]] = {}  # variant -> path -> target
        # grown by `measure`: per (variant, path, concurrency)
        self.points: dict[tuple[str, str, int], Point] = {}
        self.server_journal: dict[tuple[str, str, int], list[dict[str, float]]] = {}

    def start(
        self,
        stack: contextlib.ExitStack,
        variant: str,
        folder: Path,
        repository: Path,
        server_config: str,
        notes: Sequence[str],
        request_sets: Mapping[str, RequestSet],
    ) -> Endpoint | None:
        """Start the server of `variant` on `repository`, stopped when `stack` closes, with
        `server_config` (TOML text) written to `folder`/SERVER_CONFIG and its journal in
        `folder`/JOURNAL_FOLDER, and check which paths of `request_sets` it serves; its
        endpoint, or None (recorded) if it did not come up."""
        self._variants.append(variant)
        name = f"modelgate-{self._label}-{variant}"
        config_file = folder / SERVER_CONFIG
        config_file.write_text(server_config)
        spec = peers.modelgate_spec(
            repository,
            host=self._settings.host,
            name=name,
            config=config_file,
            journal=folder / JOURNAL_FOLDER,
            notes=notes,
        )
        server = self._recorder.start(
            stack,
            spec,
            cores=self._server_cores,
            ready_path=self._model.ready_path,
            log_dir=self._log_dir,
            ready_timeout_s=self._settings.ready_timeout_s,
        )
        if server is None:
            return None
        self._targets[variant] = self._recorder.targets(
            name, spec, self._model.infer_path, request_sets
        )
        self._recorder.say(f"{name} ready (log: {server.log_file})")
        return spec.endpoint

    def measure(self, paths: Sequence[str], concurrency: Sequence[int]) -> None:
        """Warm every started server up at each path and concurrency, then the repeats."""
        settings = self._settings
        if settings.warmup_s > 0:
            for variant, targets in self._targets.items():
                for path, target in targets.items():
                    for c in concurrency:
                        server = f"{self._label} {variant}"
                        self._recorder.measure(
                            server, path, target, c, settings.warmup_s, "warm-up"
                        )
        for rep in range(settings.repeats):
            tag = f"[{rep + 1}/{settings.repeats}]"
            for path in paths:
                for c in concurrency:
                    for variant in rotated(self._variants, rep):
                        target = self._targets.get(variant, {}).get(path)
                        if target is not None:
                            self._point(variant, path, target, c, tag)

    def _point(self, variant: str, path: str, target: Target, c: int, tag: str) -> None:
        before = _scrape(target.endpoint.http_base)
        seconds = self._settings.duration_s
        result = self._recorder.measure(f"{self._label} {variant}", path, target, c, seconds, tag)
        if result is None:
            return
        key = (variant, path, c)
        self.points.setdefault(key, Point(variant, path, c)).runs.append(result)
        after = _scrape(target.endpoint.http_base)
        rates = metrics_rates(before, after, result.duration_s)
        if rates is not None:
            self.server_journal.setdefault(key, []).append(rates)

    def ok_replies(self, variant: str) -> int:
        """OK replies `variant`'s server sent in the measured runs (warm-ups and path checks
        not counted)."""
        return sum(
            r.requests - r.errors
            for (v, _, _), point in self.points.items()
            if v == variant
            for r in point.runs
        )


def _scrape(base_url: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=METRICS_TIMEOUT_S) as resp:
            return parse_journal_metrics(resp.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return {}


# --- the run ----------------------------------------------------------------------------------


@dataclass
class JournalBenchResult:
    meta: dict[str, Any]
    appends: list[AppendPoint]
    points: dict[tuple[str, str, int], Point]
    costs: list[CostRow]
    journalled: dict[str, dict[str, int]]  # variant -> records in its journal, OK replies sent
    skipped: list[dict[str, str]]

    @property
    def failed(self) -> bool:
        """True if a request failed, a server did not start, a run broke, or a journal holds
        fewer prediction records than the OK replies its server sent."""
        return (
            any(row.errors for row in self.costs)
            or broke(self.skipped)
            or any(j["records"] < j["ok_replies"] for j in self.journalled.values())
        )


def estimate_seconds(config: JournalBenchConfig, n_paths: int) -> float:
    seconds = 0.0
    step = config.duration_s + POINT_OVERHEAD_S
    if "appends" in config.parts:
        cases = len(append_cases(config.callers, config.async_callers))
        seconds += cases * config.repeats * (step + config.warmup_s)
    if "gateway" in config.parts:
        seconds += interleaved_seconds(config, len(VARIANTS) * n_paths * len(config.concurrency))
    return seconds


def run_journal_bench(
    config: JournalBenchConfig, *, log_dir: Path, say: Callable[[str], None] = print
) -> JournalBenchResult:
    """Run the parts of `config`; `say` gets progress, `log_dir` the servers' logs.

    Raises CompareError for a bad configuration, FileNotFoundError when `client="native"` and
    wrk/h2load are missing, before anything is started; later failures are listed in `skipped`.
    """
    unknown = set(config.parts) - set(PARTS)
    if unknown or not config.parts:
        raise CompareError(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    tools = checked_tools(config, config.paths)
    if not config.callers or min(config.callers) < 1 or config.async_callers < 1:
        raise CompareError("caller counts must be >= 1")
    model_file, version = resolve_model_file(
        config.model_repository, config.model, config.model_version
    )
    model = ModelSpec.from_onnx(model_file, config.model, version)
    server_cores, client_cores = select_cores(config.pin, config.server_cores, config.client_cores)
    load_at_start = list(os.getloadavg())  # before this run adds its own (up to ~2)
    revision = git_revision(Path(__file__).resolve().parent)  # the code the servers will run
    base = config.journal_dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    run = _JournalRun(config, model, server_cores, client_cores, base, log_dir, say)
    n_paths = len(config.paths) if "gateway" in config.parts else 0
    say(
        f"model {model.name} v{version}; server cores {server_cores}, client cores "
        f"{client_cores}; journals under {base}; {config.repeats} x {config.duration_s:g} s "
        f"per point: about {estimate_seconds(config, n_paths) / 60:.1f} min"
    )
    payload_bytes = 0.0
    if "appends" in config.parts:
        payloads = prediction_payloads(
            model, model_file, count=config.payload_pool, seed=config.seed
        )
        payload_bytes = float(np.mean([len(p) for p in payloads]))
        run.appends(payloads)
    if "gateway" in config.parts:
        run.gateway()
    meta = {
        **run_meta(config, server_cores, client_cores),
        "git": revision,
        "git_at_server_start": run.server_revision,
        "load_average_start": load_at_start,
        "load_average_end": list(os.getloadavg()),
        "model": model.name,
        "model_version": version,
        "model_file": str(model_file),
        "parts": list(config.parts),
        "journal_filesystem": _filesystem(base),
        "payload_bytes_mean": payload_bytes,
        "payload_capture": "digest",
        "callers": list(config.callers),
        "async_callers": config.async_callers,
        "paths": list(config.paths),
        "concurrency": list(config.concurrency),
        "gateway_fsync": config.fsync,
        "record_capture": run.record_capture,
        "variants": {v.name: {"journal": v.journal, "record_durable": v.durable} for v in VARIANTS},
        "tools": tools,
        "target": {"pct": TARGET_PCT, "path": TARGET_PATH, "concurrency": TARGET_CONCURRENCY},
    }
    return JournalBenchResult(
        meta=meta,
        appends=list(run.append_points.values()),
        points=run.side.points,
        costs=cost_rows(run.side.points, run.side.server_journal),
        journalled=run.journalled,
        skipped=run.recorder.skipped,
    )


class _JournalRun:
    """The state of one `run_journal_bench`, all owned by its thread."""

    def __init__(
        self,
        config: JournalBenchConfig,
        model: ModelSpec,
        server_cores: list[int] | None,
        client_cores: list[int] | None,
        base: Path,
        log_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        self.config = config
        self.model = model
        self.server_cores = server_cores
        self.client_cores = client_cores
        self.base = base
        self.log_dir = log_dir
        self.say = say
        self.append_points: dict[AppendCase, AppendPoint] = {}
        self.journalled: dict[str, dict[str, int]] = {}
        self.recorder = Recorder(config, client_cores, say)
        self.side = SideBySide(config, self.recorder, model, server_cores, log_dir, "journal")
        self.record_capture: str | None = None
        self.server_revision: str | None = None  # the code the servers run (a shared checkout
        # may move while the journal-alone part runs)

    # appends

    def appends(self, payloads: Sequence[bytes]) -> None:
        """Every case once per repeat, interleaved; in this thread pinned to the server core
        (the journal's writer thread, started meanwhile, inherits it)."""
        config = self.config
        cases = append_cases(config.callers, config.async_callers)
        with pinned(self.server_cores):
            for rep in range(config.repeats):
                for case in cases:
                    label = f"[{rep + 1}/{config.repeats}] journal {case.label}"
                    try:
                        with tempfile.TemporaryDirectory(
                            prefix="modelgate-bench-journal-", dir=self.base
                        ) as tmp:
                            result = measure_appends(
                                case,
                                payloads,
                                Path(tmp),
                                warmup_s=config.warmup_s,
                                duration_s=config.duration_s,
                            )
                    except (JournalError, OSError) as err:
                        self.recorder.skip(POINT, "journal", case.label, f"[{rep + 1}] {err}")
                        continue
                    self.append_points.setdefault(case, AppendPoint(case)).runs.append(result)
                    self.say(
                        f"{label}  {result.records_per_s:9.0f} records/s  "
                        f"{result.groups_per_s:7.0f} groups/s  group {result.mean_group:6.1f}  "
                        f"p99 {result.append_ms.get('p99', float('nan')):.3f} ms"
                    )

    # gateway

    def gateway(self) -> None:
        config = self.config
        rows = random_rows(self.model, batch=1, count=config.distinct_requests, seed=config.seed)
        request_sets = {p: build_request_set(p, self.model, rows) for p in config.paths}
        journals: dict[str, Path] = {}
        self.server_revision = git_revision(Path(__file__).resolve().parent)
        with tempfile.TemporaryDirectory(prefix="modelgate-bench-journal-", dir=self.base) as tmp:
            # This process is the Python load generator's home: pinned with the load generators.
            with contextlib.ExitStack() as stack, pinned(self.client_cores):
                for variant in VARIANTS:
                    if self._start(stack, variant, Path(tmp) / variant.name, request_sets):
                        journals[variant.name] = Path(tmp) / variant.name / JOURNAL_FOLDER
                if OFF not in journals:
                    self.say("journal-off server did not start: no cost can be computed")
                self.side.measure(config.paths, config.concurrency)
            # servers stopped: their journals are closed and complete
            for name, journal_dir in journals.items():
                self._count(name, journal_dir)

    def _start(
        self,
        stack: contextlib.ExitStack,
        variant: Variant,
        folder: Path,
        request_sets: Mapping[str, RequestSet],
    ) -> bool:
        """Start `variant`'s server in `folder`, on a copy of the repository; whether it came
        up."""
        config = self.config
        folder.mkdir()
        try:
            model_config = prepare_repository(
                config.model_repository, config.model, folder / "models", durable=variant.durable
            )
        except (ConfigError, OSError) as err:
            self.recorder.skip(SERVER, f"modelgate-journal-{variant.name}", "*", str(err))
            return False
        if variant.journal:
            self.record_capture = model_config.record_capture
        notes = [
            f"journal {'on' if variant.journal else 'off'}"
            + (
                f" (fsync {config.fsync}, record_durable {str(variant.durable).lower()}, "
                f"capture {model_config.record_capture})"
                if variant.journal
                else ""
            )
        ]
        endpoint = self.side.start(
            stack,
            variant.name,
            folder,
            folder / "models",
            server_toml(variant.journal, config.fsync),
            notes,
            request_sets,
        )
        return endpoint is not None

    def _count(self, variant: str, journal_dir: Path) -> None:
        """Prediction records in a stopped server's journal, against the OK replies measured
        (warm-ups and checks add records, not replies counted: records >= replies)."""
        ok = self.side.ok_replies(variant)
        variant_config = next(v for v in VARIANTS if v.name == variant)
        if not variant_config.journal:
            present = (journal_dir / PREDICTIONS).exists()
            self.journalled[variant] = {"records": 0, "ok_replies": 0}
            if present:
                reason = "journal off, yet a journal exists"
                self.recorder.skip(SERVER, f"journal {variant}", "*", reason)
            return
        try:
            scans = verify_journal(journal_dir, [PREDICTIONS], allow_torn_tail=True)
        except (JournalError, OSError) as err:
            self.recorder.skip(SERVER, f"journal {variant}", "*", f"journal unreadable: {err}")
            return
        records = scans[PREDICTIONS].head_seq
        self.journalled[variant] = {"records": records, "ok_replies": ok}
        self.say(f"journal {variant}: {records} prediction records for {ok} OK replies measured")
