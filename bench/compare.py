"""`compare`: one model, one machine, every path, in one go.

Runs the direct ONNX Runtime floor, then Modelgate (HTTP JSON, HTTP binary, gRPC typed, gRPC raw),
MLServer (the same paths where it serves them) and, when asked for, KServe (likewise) and Triton
with dynamic batching on and off (HTTP JSON and gRPC raw) at each concurrency level, `repeats`
times, servers pinned to one core and the load generators to another. Repeats are interleaved
(repeat 1 of everything, then repeat 2, ...) so that a noisy minute on a shared machine hits one
sample of every point rather than all samples of one; reports use per-point medians.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, ModelConfig, from_mapping, read_toml

from . import kserve, mlserver, peers, triton, venvs
from .measure import Target, tool_for
from .model import ModelSpec, random_rows
from .payloads import PATHS, build_request_set
from .procs import available_cores, pin_command, pinned
from .recorder import POINT, SERVER, Recorder, RunSettings, broke, run_meta
from .stats import RunResult, median_result

FLOOR = "direct"
FLOOR_PATH = "onnxruntime"
MLSERVER = "mlserver"
KSERVE = "kserve"
TRITON = "triton"
TRITON_NOBATCH = "triton-nobatch"
# The paths Triton is measured on: one per transport, the fastest of each elsewhere.
TRITON_PATHS: tuple[str, ...] = ("http-json", "grpc-raw")
# Ratio columns of the summary: a label, and its servers in order of preference (the first one
# measured is the one every other row is held against).
REFERENCES: dict[str, tuple[str, ...]] = {
    "MLServer": (MLSERVER,),
    "KServe": (KSERVE,),
    "Triton": (TRITON, TRITON_NOBATCH),
}
DEFAULT_CONCURRENCY: tuple[int, ...] = (1, 8, 64)
# Per point, on top of its duration: tool start, connection setup, process exit.
POINT_OVERHEAD_S = 0.3


class CompareError(ValueError):
    """The comparison cannot start as configured (no model file, bad core list, ...)."""


@dataclass(frozen=True, kw_only=True)
class CompareConfig(RunSettings):
    """Every knob of a comparison; `run_compare(config)` is the library entry point."""

    model_repository: Path
    model: str
    model_version: str | None = None  # None: the highest numeric version folder
    servers: tuple[str, ...] = (FLOOR, "modelgate", MLSERVER)
    paths: tuple[str, ...] = tuple(PATHS)
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    cache_dir: Path = field(default_factory=venvs.default_cache_dir)
    modelgate_config: Path | None = None  # a server TOML for Modelgate; None: its defaults


@dataclass
class Point:
    server: str
    path: str
    concurrency: int
    runs: list[RunResult] = field(default_factory=list)

    @property
    def median(self) -> RunResult:
        return median_result(self.runs)


@dataclass(frozen=True)
class PeerRatio:
    """A row held against a reference server's `path` (its counterpart): row / reference."""

    server: str
    path: str
    throughput: float | None
    p99: float | None


@dataclass(frozen=True)
class SummaryRow:
    """One line of the comparison table. Throughput and p99 are at the highest concurrency,
    p50 and the added latency at the lowest (1 by default); None where not measured. `vs` has
    the ratios to each REFERENCES label measured, but the row's own."""

    server: str
    path: str
    tool: str
    throughput_rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    added_latency_us: float | None
    throughput_vs_floor: float | None
    p50_vs_floor: float | None
    vs: dict[str, PeerRatio]
    errors: int


@dataclass
class CompareResult:
    meta: dict[str, Any]
    points: list[Point]
    rows: list[SummaryRow]
    skipped: list[dict[str, str]]

    @property
    def failed(self) -> bool:
        """True if a request failed, a server did not start or a run broke; a path a server
        does not serve is not a failure."""
        return any(row.errors for row in self.rows) or broke(self.skipped)


PeerStart = Callable[[CompareConfig, ModelSpec, Path, Path], peers.PeerSpec]


def _modelgate(
    config: CompareConfig, model: ModelSpec, model_file: Path, tmp: Path
) -> peers.PeerSpec:
    # the server's defaults, the journal (prediction records) included, in a folder of its own,
    # unless a server config says otherwise
    if config.modelgate_config is None:
        setup = "journal on (defaults: async records, digest capture)"
    else:
        setup = f"server config {config.modelgate_config}"
    return peers.modelgate_spec(
        config.model_repository,
        host=config.host,
        config=config.modelgate_config,
        journal=tmp / "journal",
        notes=(peers.MODELGATE_NOTE, setup),
    )


def _mlserver(
    config: CompareConfig, model: ModelSpec, model_file: Path, tmp: Path
) -> peers.PeerSpec:
    venv = mlserver.ensure_venv(config.cache_dir)
    return mlserver.mlserver_spec(venv, tmp / "mlserver", model, model_file, host=config.host)


def _kserve(config: CompareConfig, model: ModelSpec, model_file: Path, tmp: Path) -> peers.PeerSpec:
    venv = kserve.ensure_venv(config.cache_dir)
    return kserve.kserve_spec(venv, model.name, model_file, host=config.host)


def model_batching(repository: Path, model: str) -> ModelConfig:
    """The model's config as Modelgate reads it (`<model>/config.toml` over the defaults), so a
    peer that batches can batch alike; raises ConfigError for a malformed file."""
    config_file = repository / model / "config.toml"
    if not config_file.exists():
        return ModelConfig()
    return from_mapping(ModelConfig, read_toml(config_file), str(config_file))


def _triton(dynamic_batching: bool) -> PeerStart:
    name = TRITON if dynamic_batching else TRITON_NOBATCH

    def start(
        config: CompareConfig, model: ModelSpec, model_file: Path, tmp: Path
    ) -> peers.PeerSpec:
        batching = model_batching(config.model_repository, model.name)
        if dynamic_batching and not batching.max_batch_size:
            raise ConfigError(f"{model.name}: max_batch_size 0, so Triton cannot batch it either")
        install = triton.TritonInstall.find(triton.ensure_venv(config.cache_dir))
        return triton.bench_spec(
            install,
            tmp / name,
            model,
            model_file,
            name=name,
            max_batch_size=batching.max_batch_size,
            dynamic_batching=dynamic_batching,
            # Triton has no adaptive wait: its nearest is no wait (batch what queued while busy)
            max_queue_delay_us=batching.max_queue_delay_us if batching.batch_wait == "fixed" else 0,
            host=config.host,
        )

    return start


@dataclass(frozen=True)
class Peer:
    """How to start one server, and the paths measured on it (None: every path asked for);
    `versioned` False for a server without model versions (KServe: its versioned V2 routes
    answer 501), which is asked for the model by name only."""

    start: PeerStart
    paths: tuple[str, ...] | None = None
    versioned: bool = True


# Server name -> how to start it; the CLI's --servers choices are FLOOR plus these keys.
PEERS: dict[str, Peer] = {
    "modelgate": Peer(_modelgate),
    MLSERVER: Peer(_mlserver),
    KSERVE: Peer(_kserve, versioned=False),
    TRITON: Peer(_triton(dynamic_batching=True), TRITON_PATHS),
    TRITON_NOBATCH: Peer(_triton(dynamic_batching=False), TRITON_PATHS),
}
SERVERS: tuple[str, ...] = (FLOOR, *PEERS)


def resolve_model_file(repository: Path, model: str, version: str | None) -> tuple[Path, str]:
    """`repository/model/<version>/model.onnx` and the version used; raises CompareError."""
    model_dir = repository / model
    if version is None:
        numeric = [p.name for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
        if not numeric:
            raise CompareError(f"no numeric version folders under {model_dir}")
        version = max(numeric, key=int)
    model_file = model_dir / version / "model.onnx"
    if not model_file.is_file():
        raise CompareError(f"{model_file} does not exist")
    return model_file, version


def choose_cores(config: CompareConfig) -> tuple[list[int] | None, list[int] | None]:
    """(server cores, client cores); (None, None) when unpinned. Raises CompareError if pinning
    is asked for on fewer than two cores or the two sets overlap."""
    return select_cores(config.pin, config.server_cores, config.client_cores)


def select_cores(
    pin: bool, server_cores: Sequence[int] | None, client_cores: Sequence[int] | None
) -> tuple[list[int] | None, list[int] | None]:
    """`choose_cores` for any command: the given cores, else the first and the second allowed."""
    if not pin:
        return None, None
    cores = available_cores()
    server = list(server_cores) if server_cores else cores[:1]
    client = list(client_cores) if client_cores else cores[1:2]
    if not server or not client:
        raise CompareError(f"pinning needs two cores, this process may use {cores}; try --no-pin")
    if set(server) & set(client):
        raise CompareError(f"server cores {server} and client cores {client} overlap")
    return server, client


def counterpart(path: str, measured: set[str]) -> str | None:
    """The reference server's path a path is held against: the same path if the reference served
    it, else its first path of the same transport (e.g. http-binary -> http-json)."""
    if path in measured:
        return path
    transport = PATHS[path].transport if path in PATHS else None
    return next((p for p in PATHS if p in measured and PATHS[p].transport == transport), None)


def reference_servers(measured: set[str]) -> dict[str, str]:
    """REFERENCES label -> the server rows are held against: its first choice measured."""
    chosen = {}
    for label, choices in REFERENCES.items():
        found = next((server for server in choices if server in measured), None)
        if found is not None:
            chosen[label] = found
    return chosen


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize_rows(points: list[Point], low: int, high: int) -> list[SummaryRow]:
    """The comparison table from per-point medians: throughput and p99 at `high` in flight, p50
    at `low`, added latency = p50 - floor p50, ratios to the floor and to each reference's
    counterpart path (`reference_servers`). Pure; the floor's only point (1 in flight) stands
    in for both levels."""
    medians = {(p.server, p.path, p.concurrency): p.median for p in points if p.runs}
    floor = medians.get((FLOOR, FLOOR_PATH, 1))
    order: list[tuple[str, str]] = []
    for p in points:
        if (p.server, p.path) not in order:
            order.append((p.server, p.path))
    references = reference_servers({server for server, _ in order})
    served = {ref: {path for server, path in order if server == ref} for ref in references.values()}

    def stat(server: str, path: str, c: int, key: str) -> float | None:
        if server == FLOOR:
            c = 1
        result = medians.get((server, path, c))
        if result is None:
            return None
        if key == "rps":
            return result.throughput_rps
        return result.latency_ms.get(key)

    rows = []
    for server, path in order:
        runs = [m for (s, p, _), m in medians.items() if (s, p) == (server, path)]
        tput = stat(server, path, high, "rps")
        p50 = stat(server, path, low, "p50")
        p99 = None if server == FLOOR else stat(server, path, high, "p99")
        floor_p50 = floor.latency_ms.get("p50") if floor else None
        vs = {}
        for label, ref in references.items():
            against = counterpart(path, served[ref])
            if server not in (FLOOR, *REFERENCES[label]) and against is not None:
                vs[label] = PeerRatio(
                    ref,
                    against,
                    _ratio(tput, stat(ref, against, high, "rps")),
                    _ratio(p99, stat(ref, against, high, "p99")),
                )
        rows.append(
            SummaryRow(
                server=server,
                path=path,
                tool=",".join(sorted({r.tool for r in runs})),
                throughput_rps=tput,
                p50_ms=p50,
                p99_ms=p99,
                added_latency_us=(p50 - floor_p50) * 1e3
                if p50 is not None and floor_p50 is not None
                else None,
                throughput_vs_floor=_ratio(tput, floor.throughput_rps if floor else None),
                p50_vs_floor=_ratio(p50, floor_p50),
                vs=vs,
                errors=sum(r.errors for r in runs),
            )
        )
    return rows


def _measure_floor(
    model_file: Path, config: CompareConfig, cores: list[int] | None, label: str
) -> RunResult:
    # A fresh process pinned to the server core: the floor gets the same core, and none of
    # the load generator's threads or memory.
    command = pin_command(
        [
            sys.executable,
            "-m",
            "gateway.bench",
            "direct",
            "--model-file",
            str(model_file),
            "--duration",
            str(config.duration_s),
            "--seed",
            str(config.seed),
            "--label",
            label,
            "--json",
        ],
        cores,
    )
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        text=True,
        timeout=config.duration_s + 120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"direct floor exited {done.returncode}")
    return RunResult.from_json(json.loads(done.stdout))


def estimate_seconds(config: CompareConfig, n_server_paths: int) -> float:
    points = n_server_paths * len(config.concurrency) * config.repeats
    floor = config.repeats if FLOOR in config.servers else 0
    return (points + floor) * (config.duration_s + POINT_OVERHEAD_S) + n_server_paths * (
        config.warmup_s + POINT_OVERHEAD_S
    )


def run_compare(
    config: CompareConfig, *, log_dir: Path, say: Callable[[str], None] = print
) -> CompareResult:
    """Run the whole comparison; `say` gets progress messages, `log_dir` the servers' logs.

    Servers that fail to start, paths a server does not serve and points whose load tool fails
    are recorded in `skipped` rather than aborting the rest. Raises CompareError for bad
    configuration and FileNotFoundError when `client="native"` and wrk/h2load are missing,
    before anything is started.
    """
    unknown = set(config.servers) - set(SERVERS)
    if unknown:
        raise CompareError(f"unknown servers {sorted(unknown)}; choose from {list(SERVERS)}")
    if 1 not in config.concurrency:
        raise CompareError("--concurrency must include 1 (p50 and added latency are at 1)")
    if config.repeats < 1 or config.duration_s <= 0:
        raise CompareError("--repeats must be >= 1 and --duration > 0")
    tools = {transport: tool_for(transport, config.client) for transport in ("http", "grpc")}
    model_file, version = resolve_model_file(
        config.model_repository, config.model, config.model_version
    )
    model = ModelSpec.from_onnx(model_file, config.model, version)
    server_cores, client_cores = choose_cores(config)
    run = _Comparison(config, model, model_file, server_cores, client_cores, log_dir, say)
    # This process is the Python load generator's home: pinned with the load generators.
    with contextlib.ExitStack() as stack, pinned(client_cores):
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelgate-bench-")))
        for name in config.servers:
            if name != FLOOR:
                run.start_peer(stack, name, tmp)
        run.announce()
        run.warm_up()
        for rep in range(config.repeats):
            run.one_repeat(rep)
    points = list(run.points.values())
    low, high = min(config.concurrency), max(config.concurrency)
    meta = {
        **run_meta(config, server_cores, client_cores),
        "model": model.name,
        "model_version": version,
        "model_file": str(model_file),
        "batch": 1,
        "concurrency": list(config.concurrency),
        "low_concurrency": low,
        "high_concurrency": high,
        "tools": tools,
        "server_notes": run.notes,
    }
    return CompareResult(meta, points, summarize_rows(points, low, high), run.recorder.skipped)


class _Comparison:
    """The state of one `run_compare`, all owned by its thread: what was started, what each
    server serves, and the points measured so far."""

    def __init__(
        self,
        config: CompareConfig,
        model: ModelSpec,
        model_file: Path,
        server_cores: list[int] | None,
        client_cores: list[int] | None,
        log_dir: Path,
        say: Callable[[str], None],
    ) -> None:
        # fixed for the whole run
        self.config = config
        self.model = model
        self.model_file = model_file
        self.server_cores = server_cores
        self.client_cores = client_cores
        self.log_dir = log_dir
        self.say = say
        self.rows = random_rows(model, batch=1, count=config.distinct_requests, seed=config.seed)
        # filled while servers start
        self.targets: dict[str, dict[str, Target]] = {}
        self.notes: dict[str, list[str]] = {}
        # filled as the run goes
        self.recorder = Recorder(config, client_cores, say)
        self.points: dict[tuple[str, str, int], Point] = {}

    def start_peer(self, stack: contextlib.ExitStack, name: str, tmp: Path) -> None:
        """Start one server (stopped when `stack` closes) and check each of its paths once."""
        peer = PEERS[name]
        try:
            spec = peer.start(self.config, self.model, self.model_file, tmp)
        except (venvs.PeerSetupError, ConfigError) as err:
            self.recorder.skip(SERVER, name, "*", str(err))
            return
        model = self.model if peer.versioned else dataclasses.replace(self.model, version="")
        server = self.recorder.start(
            stack,
            spec,
            cores=self.server_cores,
            ready_path=model.ready_path,
            log_dir=self.log_dir,
            ready_timeout_s=self.config.ready_timeout_s,
        )
        if server is None:
            return
        self.notes[name] = spec.notes
        requests = {
            path: build_request_set(path, model, self.rows)
            for path in self.config.paths
            if peer.paths is None or path in peer.paths
        }
        self.targets[name] = self.recorder.targets(name, spec, model.infer_path, requests)
        self.say(f"{name} ready (log: {server.log_file})")

    def announce(self) -> None:
        config = self.config
        n_paths = sum(len(t) for t in self.targets.values())
        self.say(
            f"model {self.model.name} v{self.model.version} ({self.model_file}); "
            f"server cores {self.server_cores}, client cores {self.client_cores}; "
            f"{n_paths} server paths x {list(config.concurrency)} x {config.repeats} repeats "
            f"of {config.duration_s:g} s: about {estimate_seconds(config, n_paths) / 60:.1f} min"
        )

    def warm_up(self) -> None:
        """One unrecorded run per path at the highest concurrency (JIT-free, but allocators,
        connection pools and CPU caches still have a first time)."""
        if self.config.warmup_s <= 0:
            return
        high = max(self.config.concurrency)
        for server, paths in self.targets.items():
            for path, target in paths.items():
                self.recorder.measure(server, path, target, high, self.config.warmup_s, "warm-up")

    def one_repeat(self, rep: int) -> None:
        tag = f"[{rep + 1}/{self.config.repeats}]"
        if FLOOR in self.config.servers:
            try:
                result = _measure_floor(
                    self.model_file, self.config, self.server_cores, f"{tag} {FLOOR} {FLOOR_PATH}"
                )
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as err:
                self.recorder.skip(POINT, FLOOR, FLOOR_PATH, f"{tag} {err}")
            else:
                self._point(FLOOR, FLOOR_PATH, 1).runs.append(result)
        for server, paths in self.targets.items():
            for path, target in paths.items():
                for c in self.config.concurrency:
                    seconds = self.config.duration_s
                    result = self.recorder.measure(server, path, target, c, seconds, tag)
                    if result is not None:
                        self._point(server, path, c).runs.append(result)

    def _point(self, server: str, path: str, c: int) -> Point:
        return self.points.setdefault((server, path, c), Point(server, path, c))
