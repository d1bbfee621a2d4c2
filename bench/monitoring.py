"""`monitoring`: what the drift sketches and keeping predictions for actuals cost the gateway,
in one run on one machine.

Modelgate four times side by side (`journal.SideBySide`), each with its own temp folder, server
config and journal, all serving the repository as it is with the same `[journal]` settings
(on by default; `journal=False` isolates the monitoring); only `[monitoring]` differs:

  off        sketches = false, accuracy = false: the base every cost is held against
  sketches   the drift sketches alone: each executed batch's rows counted against the version's
             training-data profile, in the batcher's worker thread after the answers went back
  accuracy   keeping predictions alone: each answer's label and scores kept by request id on
             the event loop, for the actuals joined later
  both       the server's default

Requests name no version, so each goes through the deployment's routing as in production. Each
path at each concurrency runs every variant once per repeat, in an order rotated each repeat;
cost = the drop in median req/s from `off`, in %, with the per-repeat costs (each against the
same repeat's `off` run) for the noise. After the last point, while the servers still run, each
one's drift and accuracy reports show whether it did what its variant asks: rows sketched and
predictions kept at least as many as the OK replies measured where on (warm-ups and path checks
add more), none where off. The reports cover the last READ_WINDOW; drift keeps an hour of
windows by default, so a run must end within the hour for the counts to add up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .clients import ApiError, Endpoint, call_json
from .compare import Point, resolve_model_file, select_cores
from .journal import (
    OFF,
    CostRow,
    SideBySide,
    checked_tools,
    cost_rows,
    git_revision,
    interleaved_seconds,
    server_toml,
)
from .model import ModelSpec, random_rows
from .payloads import build_request_set
from .procs import pinned
from .recorder import SERVER, Recorder, RunSettings, broke, run_meta

DEFAULT_PATHS: tuple[str, ...] = ("grpc-raw", "http-json")
DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 64)
# The target: the sketches cost at most this much throughput at TARGET_CONCURRENCY on
# TARGET_PATH (reported, not enforced).
TARGET_PCT = 2.0
TARGET_PATH = "grpc-raw"
TARGET_CONCURRENCY = 64
# The reports read after the run cover this much (`?window=`): the whole run, with the
# accuracy windows aligned to the hour (one hour of them could start just before the run ends).
READ_WINDOW = "2h"
READ_TIMEOUT_S = 10.0


@dataclass(frozen=True, kw_only=True)
class MonitoringBenchConfig(RunSettings):
    """Every knob of `run_monitoring_bench`."""

    model_repository: Path
    model: str = "credit_risk"
    paths: tuple[str, ...] = DEFAULT_PATHS
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    journal: bool = True  # every server's [journal] enabled
    fsync: str = "batch"  # every server's [journal] fsync (the server's default)


@dataclass(frozen=True)
class Variant:
    """One server's `[monitoring]` switches."""

    name: str
    sketches: bool
    accuracy: bool

    def describe(self) -> str:
        return f"sketches {_on(self.sketches)}, accuracy {_on(self.accuracy)}"


VARIANTS: tuple[Variant, ...] = (
    Variant(OFF, False, False),
    Variant("sketches", True, False),
    Variant("accuracy", False, True),
    Variant("both", True, True),
)


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def monitoring_toml(variant: Variant, journal: bool, fsync: str) -> str:
    """The server config of one variant: the journal table every variant shares, and its
    `[monitoring]` switches; the rest stays default."""
    return server_toml(journal, fsync) + (
        "[monitoring]\n"
        f"sketches = {str(variant.sketches).lower()}\n"
        f"accuracy = {str(variant.accuracy).lower()}\n"
    )


# --- what the servers did -----------------------------------------------------------------------


def sketched_rows(drift: Mapping[str, Any]) -> dict[str, int]:
    """Rows sketched per version from a drift report (GET .../drift); versions whose drift is
    not monitored (they answer an error) left out. KeyError/TypeError/ValueError if malformed."""
    return {
        str(v["version"]): int(v["window"]["rows"]) for v in drift["versions"] if "error" not in v
    }


def kept_predictions(accuracy: Mapping[str, Any]) -> int:
    """Predicted rows kept for actuals, over every version, from an accuracy report (GET
    .../accuracy). KeyError/TypeError/ValueError if malformed."""
    return sum(int(v["join"]["predictions"]) for v in accuracy["versions"])


@dataclass(frozen=True)
class Check:
    """What one server's monitoring reports show after the run, against its variant."""

    variant: Variant
    sketched: dict[str, int]  # version -> rows sketched; versions not monitored left out
    kept: int  # predicted rows kept for actuals
    ok_replies: int  # OK replies of the measured runs

    @property
    def ok(self) -> bool:
        """On: at least a row per OK reply (and one at all); off: nothing monitored or kept."""
        least = max(self.ok_replies, 1)
        rows = sum(self.sketched.values())
        sketches = rows >= least if self.variant.sketches else not self.sketched
        accuracy = self.kept >= least if self.variant.accuracy else self.kept == 0
        return sketches and accuracy

    def describe(self) -> str:
        if self.sketched:
            rows = ", ".join(f"v{v} {n}" for v, n in sorted(self.sketched.items()))
            drift = f"rows sketched {rows}"
        else:
            drift = "drift not monitored (every version answers an error)"
        verdict = "as configured" if self.ok else "NOT as configured"
        return (
            f"{drift}; {self.kept} predictions kept; for {self.ok_replies} OK replies measured: "
            f"{verdict} ({self.variant.describe()})"
        )


def read_check(endpoint: Endpoint, model: str, variant: Variant, ok_replies: int) -> Check:
    """The Check of the server at `endpoint` (its reads need no credentials: `[auth]
    inference` is off by default). Raises ApiError, or KeyError/TypeError/ValueError for a
    malformed report."""
    query = f"?window={READ_WINDOW}"
    route = f"/v2/models/{model}"
    drift = call_json(endpoint, "GET", route + "/drift" + query, timeout_s=READ_TIMEOUT_S)
    accuracy = call_json(endpoint, "GET", route + "/accuracy" + query, timeout_s=READ_TIMEOUT_S)
    return Check(variant, sketched_rows(drift), kept_predictions(accuracy), ok_replies)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class MonitoringResult:
    meta: dict[str, Any]
    points: dict[tuple[str, str, int], Point]
    rows: list[CostRow]  # against `off`
    checks: dict[str, Check]  # variant -> what its server's reports showed
    skipped: list[dict[str, str]]

    @property
    def failed(self) -> bool:
        """True if a request failed, a server did not start, a run broke, a report could not
        be read or a server's reports do not match its variant."""
        return (
            any(row.errors for row in self.rows)
            or broke(self.skipped)
            or any(not check.ok for check in self.checks.values())
        )


def estimate_seconds(config: MonitoringBenchConfig) -> float:
    return interleaved_seconds(config, len(VARIANTS) * len(config.paths) * len(config.concurrency))


def run_monitoring_bench(
    config: MonitoringBenchConfig, *, log_dir: Path, say: Callable[[str], None] = print
) -> MonitoringResult:
    """Run every variant on every path at every concurrency, then read each server's reports;
    `say` gets progress, `log_dir` the servers' logs. Raises CompareError for a bad
    configuration and FileNotFoundError when `client="native"` and wrk/h2load are missing,
    before anything is started; later failures are listed in `skipped`."""
    tools = checked_tools(config, config.paths)
    model_file, version = resolve_model_file(config.model_repository, config.model, None)
    # no version in the requests: the deployment's routing picks it
    model = ModelSpec.from_onnx(model_file, config.model, "")
    server_cores, client_cores = select_cores(config.pin, config.server_cores, config.client_cores)
    recorder = Recorder(config, client_cores, say)
    side = SideBySide(config, recorder, model, server_cores, log_dir, "monitoring")
    journal = f"journal on (fsync {config.fsync})" if config.journal else "journal off"
    say(
        f"model {model.name} (inputs of v{version}), requests unpinned, {journal} in every "
        f"variant; server cores {server_cores}, client cores {client_cores}; {config.repeats} x "
        f"{config.duration_s:g} s per point: about {estimate_seconds(config) / 60:.1f} min"
    )
    load_at_start = list(os.getloadavg())  # before this run adds its own (up to ~2)
    revision = git_revision(Path(__file__).resolve().parent)  # the code the servers will run
    rows = random_rows(model, batch=1, count=config.distinct_requests, seed=config.seed)
    request_sets = {p: build_request_set(p, model, rows) for p in config.paths}
    checks: dict[str, Check] = {}
    with (
        tempfile.TemporaryDirectory(prefix="modelgate-bench-monitoring-") as tmp,
        contextlib.ExitStack() as stack,
        pinned(client_cores),  # the Python load generator's home, with the load generators
    ):
        endpoints: dict[Variant, Endpoint] = {}
        for variant in VARIANTS:
            folder = Path(tmp) / variant.name
            folder.mkdir()
            endpoint = side.start(
                stack,
                variant.name,
                folder,
                config.model_repository,
                monitoring_toml(variant, config.journal, config.fsync),
                [f"[monitoring] {variant.describe()}; {journal}"],
                request_sets,
            )
            if endpoint is not None:
                endpoints[variant] = endpoint
        side.measure(config.paths, config.concurrency)
        for variant, endpoint in endpoints.items():  # the servers still run
            try:
                check = read_check(endpoint, model.name, variant, side.ok_replies(variant.name))
            except (ApiError, KeyError, TypeError, ValueError) as err:
                recorder.skip(SERVER, f"monitoring {variant.name}", "reports", str(err))
                continue
            checks[variant.name] = check
            say(f"monitoring {variant.name}: {check.describe()}")
    meta = {
        **run_meta(config, server_cores, client_cores),
        "git": revision,
        "load_average_start": load_at_start,
        "load_average_end": list(os.getloadavg()),
        "model": model.name,
        "paths": list(config.paths),
        "concurrency": list(config.concurrency),
        "journal": journal,
        "variants": {v.name: v.describe() for v in VARIANTS},
        "tools": tools,
        "target": {"pct": TARGET_PCT, "path": TARGET_PATH, "concurrency": TARGET_CONCURRENCY},
    }
    costs = cost_rows(side.points, side.server_journal)
    return MonitoringResult(meta, side.points, costs, checks, recorder.skipped)
