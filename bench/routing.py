"""`routing`: what a deployment's traffic policy costs, on one Modelgate.

One server (the repository as it is, the server's defaults, a temp journal folder whose
admin token the bench reads) serves the model's two highest versions. Requests name no version,
so every one goes through the deployment's routing table. Scenarios, each a whole traffic
policy set with one `PUT /admin/deployments/{model}/traffic` before its point:

  single   the newer version alone: {"weights": {new: 100}}
  split    {"weights": {old: 90, new: 10}}, weighted random per request
  shadow   the newer version alone, the older as a shadow: every answer is followed by a copy
           to the shadow (its own task, after the answer is sent; bounded in flight, past which
           copies are dropped and counted)

Each path at each concurrency runs every scenario once per repeat, in an order rotated each
repeat (as `journal` does), so drift on a shared machine spreads over all of them; reports show
medians, req/s and p99 against `single` (median and per repeat), and for `shadow` the copies
sent and dropped (from the deployment's counters).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.governance.identity import ADMIN_TOKEN_FILE

from . import peers
from .clients import ApiError, Endpoint, call_json
from .compare import CompareError, Point, resolve_model_file, select_cores
from .journal import CostRow, checked_tools, cost_rows, git_revision, interleaved_seconds, rotated
from .measure import Target
from .model import ModelSpec, random_rows
from .payloads import build_request_set
from .procs import pinned
from .recorder import SERVER, Recorder, RunSettings, broke, run_meta

SINGLE = "single"
SPLIT = "split"
SHADOW = "shadow"
SCENARIO_NAMES: tuple[str, ...] = (SINGLE, SPLIT, SHADOW)
SPLIT_OLD_PERCENT = 90  # the 90/10: the older version keeps most of the traffic
DEFAULT_PATHS: tuple[str, ...] = ("http-json", "grpc-raw")
DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 64)
ADMIN_TIMEOUT_S = 10.0


class AdminError(ApiError):
    """An admin call left the policy other than asked (e.g. held for approval)."""


@dataclass(frozen=True, kw_only=True)
class RoutingBenchConfig(RunSettings):
    """Every knob of `run_routing_bench`."""

    model_repository: Path
    model: str = "credit_risk"
    versions: tuple[str, str] | None = None  # (older, newer); None: the two highest numeric
    paths: tuple[str, ...] = DEFAULT_PATHS
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class Scenario:
    name: str
    policy: dict[str, Any]  # the body of PUT /admin/deployments/{d}/traffic
    shadow: str | None = None  # the version shadowed, if any

    def describe(self) -> str:
        weights = ", ".join(f"v{v} {w}" for v, w in self.policy["weights"].items())
        return weights + (f", v{self.shadow} shadow" if self.shadow else "")


def scenarios(old: str, new: str) -> tuple[Scenario, ...]:
    """single, split and shadow over the versions `old` and `new` (see the module docstring)."""
    alone = {new: 100}
    split = {old: SPLIT_OLD_PERCENT, new: 100 - SPLIT_OLD_PERCENT}
    return (
        Scenario(SINGLE, {"weights": alone, "shadows": []}),
        Scenario(SPLIT, {"weights": split, "shadows": []}),
        Scenario(SHADOW, {"weights": alone, "shadows": [old]}, shadow=old),
    )


def two_versions(repository: Path, model: str, versions: tuple[str, str] | None) -> tuple[str, str]:
    """(older, newer): as given, else the two highest numeric version folders; raises
    CompareError where the model has fewer than two or a given one has no model.onnx."""
    if versions is None:
        numeric = sorted(
            (p.name for p in (repository / model).glob("*") if p.is_dir() and p.name.isdigit()),
            key=int,
        )
        if len(numeric) < 2:
            raise CompareError(f"{repository / model} needs two numeric version folders")
        versions = (numeric[-2], numeric[-1])
    for version in versions:
        resolve_model_file(repository, model, version)
    if versions[0] == versions[1]:
        raise CompareError("the two versions must differ")
    return versions


class Admin:
    """The admin HTTP API of one gateway, with its admin token (blocking calls)."""

    def __init__(self, endpoint: Endpoint, token: str, deployment: str) -> None:
        self._endpoint = endpoint
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._path = f"/admin/deployments/{deployment}"

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        return call_json(
            self._endpoint,
            method,
            path,
            body=body,
            headers=self._headers,
            timeout_s=ADMIN_TIMEOUT_S,
        )

    def deployment(self) -> dict[str, Any]:
        return self._call("GET", self._path, None)

    def set_policy(self, scenario: Scenario) -> None:
        """Replace the traffic policy; raises ApiError if the call fails, AdminError unless
        the policy is in force on return."""
        answer = self._call("PUT", self._path + "/traffic", scenario.policy)
        if "pending_change" in answer:
            raise AdminError("the traffic change waits for an approval (importance high?)")
        policy = answer.get("policy") or {}
        weights = {v: int(w) for v, w in (policy.get("weights") or {}).items()}
        if weights != scenario.policy["weights"] or policy.get("shadows", []) != list(
            scenario.policy["shadows"]
        ):
            raise AdminError(f"asked for {scenario.policy}, the deployment has {policy}")

    def shadow_counts(self, version: str) -> dict[str, int]:
        """The shadow counters of `version` (copies, dropped, failed) so far."""
        for entry in self.deployment().get("versions", []):
            if entry.get("version") == version:
                shadow = entry.get("shadow") or {}
                return {k: int(shadow.get(k, 0)) for k in ("copies", "dropped", "failed")}
        raise AdminError(f"version {version} is not in the deployment")


@dataclass
class RoutingResult:
    meta: dict[str, Any]
    points: dict[tuple[str, str, int], Point]
    rows: list[CostRow]  # against `single`
    shadow: dict[tuple[str, int], dict[str, int]]  # (path, c) -> shadow copies over its runs
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True if a request failed, the server did not start, a policy could not be set or a
        run broke (a path the server does not serve is listed, not a failure)."""
        return any(row.errors for row in self.rows) or broke(self.skipped)


def estimate_seconds(config: RoutingBenchConfig) -> float:
    points = len(SCENARIO_NAMES) * len(config.paths) * len(config.concurrency)
    return interleaved_seconds(config, points)


def run_routing_bench(
    config: RoutingBenchConfig, *, log_dir: Path, say: Callable[[str], None] = print
) -> RoutingResult:
    """Run every scenario on every path at every concurrency; `say` gets progress, `log_dir`
    the server's log. Raises CompareError for a bad configuration and FileNotFoundError when
    `client="native"` and wrk/h2load are missing, before anything is started; later failures
    are listed in `skipped`."""
    tools = checked_tools(config, config.paths)
    old, new = two_versions(config.model_repository, config.model, config.versions)
    model_file, _ = resolve_model_file(config.model_repository, config.model, new)
    # no version in the requests: routing picks it
    model = ModelSpec.from_onnx(model_file, config.model, "")
    server_cores, client_cores = select_cores(config.pin, config.server_cores, config.client_cores)
    recorder = Recorder(config, client_cores, say)
    run = _RoutingRun(config, model, scenarios(old, new), recorder)
    say(
        f"model {model.name} v{old} and v{new}, requests unpinned; server cores {server_cores}, "
        f"client cores {client_cores}; {config.repeats} x {config.duration_s:g} s per point: "
        f"about {estimate_seconds(config) / 60:.1f} min"
    )
    load_at_start = list(os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="modelgate-bench-routing-") as tmp,
        contextlib.ExitStack() as stack,
        pinned(client_cores),  # the Python load generator's home, with the load generators
    ):
        journal = Path(tmp) / "journal"
        spec = peers.modelgate_spec(
            config.model_repository,
            host=config.host,
            name="modelgate-routing",
            journal=journal,
            notes=(peers.MODELGATE_NOTE, "journal on (server defaults)"),
        )
        server = recorder.start(
            stack,
            spec,
            cores=server_cores,
            ready_path=model.ready_path,
            log_dir=log_dir,
            ready_timeout_s=config.ready_timeout_s,
        )
        if server is not None:
            say(f"{spec.name} ready (log: {server.log_file})")
            token = (journal / ADMIN_TOKEN_FILE).read_text().strip()
            run.measure_all(Admin(spec.endpoint, token, model.name), spec)
    meta = {
        **run_meta(config, server_cores, client_cores),
        "git": git_revision(Path(__file__).resolve().parent),
        "load_average_start": load_at_start,
        "load_average_end": list(os.getloadavg()),
        "model": model.name,
        "versions": {"old": old, "new": new},
        "scenarios": {s.name: s.describe() for s in run.scenarios},
        "paths": list(config.paths),
        "concurrency": list(config.concurrency),
        "tools": tools,
        "server_notes": spec.notes,
    }
    rows = cost_rows(run.points, base_variant=SINGLE)
    return RoutingResult(meta, run.points, rows, run.shadow, recorder.skipped)


class _RoutingRun:
    """The state of one `run_routing_bench`, all owned by its thread."""

    def __init__(
        self,
        config: RoutingBenchConfig,
        model: ModelSpec,
        scenarios: tuple[Scenario, ...],
        recorder: Recorder,
    ) -> None:
        self.config = config
        self.model = model
        self.scenarios = scenarios
        self.recorder = recorder
        self.points: dict[tuple[str, str, int], Point] = {}
        self.shadow: dict[tuple[str, int], dict[str, int]] = {}

    def measure_all(self, admin: Admin, spec: peers.PeerSpec) -> None:
        """Check each path once, warm every point up, then the repeats."""
        config = self.config
        rows = random_rows(self.model, batch=1, count=config.distinct_requests, seed=config.seed)
        requests = {path: build_request_set(path, self.model, rows) for path in config.paths}
        targets = self.recorder.targets(spec.name, spec, self.model.infer_path, requests)
        try:
            if config.warmup_s > 0:
                for scenario in self.scenarios:
                    admin.set_policy(scenario)
                    for path, target in targets.items():
                        for c in config.concurrency:
                            server = f"routing {scenario.name}"
                            self.recorder.measure(
                                server, path, target, c, config.warmup_s, "warm-up"
                            )
            for rep in range(config.repeats):
                self._one_repeat(rep, admin, targets)
        except ApiError as err:
            self.recorder.skip(SERVER, spec.name, "admin", str(err))

    def _one_repeat(self, rep: int, admin: Admin, targets: Mapping[str, Target]) -> None:
        tag = f"[{rep + 1}/{self.config.repeats}]"
        seconds = self.config.duration_s
        for path, target in targets.items():
            for c in self.config.concurrency:
                for scenario in rotated(list(self.scenarios), rep):
                    admin.set_policy(scenario)
                    before = admin.shadow_counts(scenario.shadow) if scenario.shadow else None
                    server = f"routing {scenario.name}"
                    result = self.recorder.measure(server, path, target, c, seconds, tag)
                    if result is None:
                        continue
                    key = (scenario.name, path, c)
                    self.points.setdefault(key, Point(scenario.name, path, c)).runs.append(result)
                    if scenario.shadow and before is not None:
                        after = admin.shadow_counts(scenario.shadow)
                        totals = self.shadow.setdefault((path, c), dict.fromkeys(after, 0))
                        for k in after:
                            totals[k] += after[k] - before[k]
