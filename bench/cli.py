"""Command line: `python -m gateway.bench {compare,journal,routing,monitoring,load,report,direct}
...` (and `modelgate bench ...`).

A thin shell: each option fills one field of `CompareConfig`, `JournalBenchConfig`,
`RoutingBenchConfig` or `MonitoringBenchConfig` (or one argument of a driver), and only this
module prints results or picks exit codes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import compare as compare_mod
from . import direct, measure, pydriver, report
from . import drift as drift_mod
from . import journal as journal_mod
from . import monitoring as monitoring_mod
from . import routing as routing_mod
from .clients import Endpoint, check_path
from .model import ModelSpec, ModelSpecError, random_rows
from .payloads import PATHS, build_request_set
from .stats import RunResult, median_result
from .venvs import default_cache_dir

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_REPOSITORY = PACKAGE_DIR.parent / "examples" / "models"
DEFAULT_OUT = PACKAGE_DIR / "results"
# Open loop warms its fresh client up in closed loop at this many in flight (see pydriver).
OPEN_LOOP_WARMUP_CONCURRENCY = 8


@dataclass(frozen=True)
class Preset:
    duration_s: float
    repeats: int
    concurrency: tuple[int, ...]
    warmup_s: float


# The default comparison fits in about 6 minutes on 2 cores; --quick is a smoke run of about one.
FULL = Preset(5.0, 3, compare_mod.DEFAULT_CONCURRENCY, 1.0)
QUICK = Preset(2.0, 1, (1, 64), 0.5)
# `journal`: about 4 minutes with the defaults on 2 cores; --quick about one.
JOURNAL_FULL = Preset(5.0, 3, journal_mod.DEFAULT_CONCURRENCY, 1.0)
JOURNAL_QUICK = Preset(2.0, 1, journal_mod.DEFAULT_CONCURRENCY, 0.5)
# `routing`: about 4 minutes with the defaults; --quick under one.
ROUTING_FULL = Preset(5.0, 3, routing_mod.DEFAULT_CONCURRENCY, 1.0)
ROUTING_QUICK = Preset(2.0, 1, routing_mod.DEFAULT_CONCURRENCY, 0.5)
# `monitoring`: about 5 minutes with the defaults; --quick about one.
MONITORING_FULL = Preset(5.0, 3, monitoring_mod.DEFAULT_CONCURRENCY, 1.0)
MONITORING_QUICK = Preset(2.0, 1, monitoring_mod.DEFAULT_CONCURRENCY, 0.5)


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from err
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected numbers > 0, got {text!r}")
    return values


def _csv(values: Sequence[int]) -> str:
    return ",".join(str(v) for v in values)


def _choices(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return values

    return parse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where there is none to show (None, off switches)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    fmt = _Formatter
    parser = argparse.ArgumentParser(
        prog="python -m gateway.bench",
        description="Load generator and side-by-side comparisons for V2 inference servers.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    cmp = sub.add_parser(
        "compare",
        formatter_class=fmt,
        help="direct ORT floor vs Modelgate (4 paths) vs MLServer (and KServe and Triton when "
        "asked), pinned, medians of repeats",
        description="Run the direct ONNX Runtime floor, Modelgate, MLServer and (when named in "
        "--servers) KServe, and Triton with dynamic batching on and off, on the same model and "
        "machine; "
        "print tables, write JSON and a PNG of latency vs throughput. Triton runs the model "
        "through its Python backend (the pytriton wheel has no ONNX Runtime backend): not its "
        "best case.",
    )
    _model_options(cmp, "model repository (NAME/VERSION/model.onnx)", "model name")
    cmp.add_argument(
        "--model-version", default=None, help="version to pin every request to (default: highest)"
    )
    cmp.add_argument(
        "--servers",
        type=_choices(compare_mod.SERVERS),
        default="direct,modelgate,mlserver",
        help="comma list: " + ",".join(compare_mod.SERVERS) + " (triton and triton-nobatch: "
        "http-json and grpc-raw only, about 1.5 min more each with the defaults)",
    )
    cmp.add_argument(
        "--paths",
        type=_choices(tuple(PATHS)),
        default=",".join(PATHS),
        help="comma list: " + ",".join(PATHS),
    )
    cmp.add_argument(
        "--concurrency",
        type=_ints,
        default=None,
        help="requests in flight, comma list incl. 1 "
        f"(default {_csv(FULL.concurrency)}; quick {_csv(QUICK.concurrency)})",
    )
    cmp.add_argument(
        "--modelgate-config",
        type=Path,
        default=None,
        help="server TOML for Modelgate, e.g. to measure the serving core with [journal] and "
        "[monitoring] off (default: the server's defaults, journal on)",
    )
    _run_options(
        cmp,
        FULL,
        QUICK,
        warmup_help="unrecorded seconds per path before its first point",
        server_cores_help="cores for servers and the floor (default: first allowed)",
        out_help="folder for JSON, PNG and server logs",
    )
    cmp.add_argument(
        "--cache-dir",
        type=Path,
        default=default_cache_dir(),
        help="where the peers' venvs (MLServer, KServe, Triton) live (reused)",
    )

    _journal_parser(sub)
    drift_mod.add_parser(sub)
    _routing_parser(sub)
    _monitoring_parser(sub)

    load = sub.add_parser(
        "load",
        formatter_class=fmt,
        help="load a running V2 server: closed loop at given concurrency, open loop at given rate",
        description="Closed loop (--concurrency) or open loop (--rate, Python generator, latency "
        "from the intended send time) against a running V2 server.",
    )
    load.add_argument("--url", default="http://127.0.0.1:8000", help="HTTP base URL")
    load.add_argument("--grpc", default="127.0.0.1:8001", help="gRPC host:port")
    load.add_argument("--model", default="credit_risk", help="model name")
    load.add_argument(
        "--model-version", default="", help="version to pin requests to ('' = server default)"
    )
    load.add_argument(
        "--model-file",
        type=Path,
        default=None,
        help=".onnx to read inputs from (default: ask the server's model metadata)",
    )
    load.add_argument(
        "--paths",
        type=_choices(tuple(PATHS)),
        default="http-json",
        help="comma list: " + ",".join(PATHS),
    )
    mode = load.add_mutually_exclusive_group()
    mode.add_argument(
        "--concurrency",
        type=_ints,
        default="1,64",
        help="closed loop: requests in flight, comma list",
    )
    mode.add_argument(
        "--rate",
        type=_floats,
        default=None,
        help="open loop: requests/s, comma list (Python generator)",
    )
    load.add_argument("--duration", type=float, default=10.0, help="seconds per point")
    load.add_argument("--repeats", type=int, default=1, help="runs per point, median reported")
    load.add_argument(
        "--max-in-flight", type=int, default=1024, help="open loop: cap on outstanding requests"
    )
    load.add_argument("--seed", type=int, default=0, help="seed of the random request rows")
    load.add_argument("--batch", type=int, default=1, help="rows per request")
    load.add_argument("--json", type=Path, default=None, help="also write the results here")
    load.add_argument(
        "--request-timeout", type=float, default=10.0, help="per-request timeout, seconds"
    )
    load.add_argument(
        "--client-cores", type=_cores, default=None, help="pin the load generator to these cores"
    )
    _client_options(load)

    rep = sub.add_parser(
        "report",
        formatter_class=fmt,
        help="re-print the tables and redraw the PNG of a saved compare JSON",
    )
    rep.add_argument("json_file", type=Path, help="a compare-*.json written by `compare`")
    rep.add_argument("--png", type=Path, default=None, help="PNG to write (default: next to it)")

    dr = sub.add_parser(
        "direct",
        formatter_class=fmt,
        help="time ONNX Runtime in-process, one call at a time (the floor)",
    )
    dr.add_argument("--model-file", type=Path, required=True, help=".onnx file")
    dr.add_argument("--duration", type=float, default=5.0, help="seconds")
    dr.add_argument("--seed", type=int, default=0, help="seed of the random rows")
    dr.add_argument("--label", default="direct", help="progress line label")
    dr.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return parser


def _journal_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = _Formatter
    jr = sub.add_parser(
        "journal",
        formatter_class=fmt,
        help="prediction journaling: journal appends alone, gateway req/s journal off vs on",
        description="Measure the journal alone (durable appends with fsync per group at several "
        "caller counts, async appends, fsync=off for reference) and Modelgate with journaling "
        "off, on with async records and on with durable records, side by side on the same "
        "machine; print tables, write JSON.",
    )
    jr.add_argument(
        "--parts",
        type=_choices(journal_mod.PARTS),
        default=",".join(journal_mod.PARTS),
        help="comma list: " + ",".join(journal_mod.PARTS),
    )
    _model_options(
        jr, "model repository, copied per server (NAME/VERSION/model.onnx)", "model name"
    )
    jr.add_argument(
        "--model-version", default=None, help="version to pin every request to (default: highest)"
    )
    jr.add_argument(
        "--callers",
        type=_ints,
        default=_csv(journal_mod.DEFAULT_CALLERS),
        help="journal alone: concurrent durable callers, comma list",
    )
    jr.add_argument(
        "--async-callers", type=int, default=64, help="journal alone: callers of the async case"
    )
    _load_options(jr, journal_mod.DEFAULT_PATHS, journal_mod.DEFAULT_CONCURRENCY, "gateway: ")
    jr.add_argument(
        "--fsync",
        choices=("batch", "interval", "off"),
        default="batch",
        help="gateway: the servers' [journal] fsync",
    )
    jr.add_argument(
        "--journal-dir",
        type=Path,
        default=None,
        help="where the temp journals and repositories go; its filesystem is what fsync "
        "measures (default: the system temp dir)",
    )
    _run_options(
        jr,
        JOURNAL_FULL,
        JOURNAL_QUICK,
        warmup_help="unrecorded seconds before each journal-alone run and per gateway point",
        server_cores_help="cores for the servers and the journal alone (default: first allowed)",
        out_help="folder for JSON and server logs",
    )


def _routing_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rt = sub.add_parser(
        "routing",
        formatter_class=_Formatter,
        help="deployment routing: req/s with one version, a 90/10 split, a shadow",
        description="Start one Modelgate and, through its admin API, switch the model's "
        "deployment between one version alone, a 90/10 split over two versions and one version "
        "with the other as a shadow; requests name no version, so each is routed. Each path at "
        "each concurrency runs every scenario once per repeat, interleaved; print a table "
        "against the single version, write JSON.",
    )
    _model_options(rt, "model repository (NAME/VERSION/model.onnx)", "model (deployment) name")
    rt.add_argument(
        "--versions",
        type=_version_pair,
        default=None,
        help="OLD,NEW: the split gives OLD 90 and NEW 10; single and shadow serve NEW "
        "(default: the two highest numeric versions)",
    )
    _load_options(rt, routing_mod.DEFAULT_PATHS, routing_mod.DEFAULT_CONCURRENCY)
    _run_options(
        rt,
        ROUTING_FULL,
        ROUTING_QUICK,
        warmup_help="unrecorded seconds per scenario, path and concurrency before the repeats",
        server_cores_help="cores for the server (default: first allowed)",
        out_help="folder for JSON and the server log",
    )


def _monitoring_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mo = sub.add_parser(
        "monitoring",
        formatter_class=_Formatter,
        help="monitoring: req/s with drift sketches and kept predictions off, each alone, both",
        description="Start Modelgate four times side by side, [monitoring] sketches and "
        "accuracy both off, each alone and both on, with the same journal settings; requests "
        "name no version, so each is routed. Each path at each concurrency runs every variant "
        "once per repeat, interleaved; print a table against both off and what each server's "
        "drift and accuracy reports show, write JSON.",
    )
    _model_options(
        mo,
        "model repository (NAME/VERSION/model.onnx; a version with profile.json is sketched)",
        "model (deployment) name",
    )
    _load_options(mo, monitoring_mod.DEFAULT_PATHS, monitoring_mod.DEFAULT_CONCURRENCY)
    mo.add_argument(
        "--journal",
        choices=("on", "off"),
        default="on",
        help="every server's [journal] enabled (off: the monitoring's cost alone)",
    )
    _run_options(
        mo,
        MONITORING_FULL,
        MONITORING_QUICK,
        warmup_help="unrecorded seconds per variant, path and concurrency before the repeats",
        server_cores_help="cores for the servers (default: first allowed)",
        out_help="folder for JSON and the servers' logs",
    )


def _version_pair(text: str) -> tuple[str, str]:
    parts = [v.strip() for v in text.split(",")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected OLD,NEW (two versions), got {text!r}")
    return parts[0], parts[1]


def _model_options(parser: argparse.ArgumentParser, repository_help: str, model_help: str) -> None:
    """--model-repository and --model."""
    parser.add_argument(
        "--model-repository", type=Path, default=DEFAULT_REPOSITORY, help=repository_help
    )
    parser.add_argument("--model", default="credit_risk", help=model_help)


def _load_options(
    parser: argparse.ArgumentParser,
    paths: Sequence[str],
    concurrency: Sequence[int],
    scope: str = "",
) -> None:
    """--paths and --concurrency with their defaults; `scope` starts their help (the part of
    the command they are for)."""
    parser.add_argument(
        "--paths",
        type=_choices(tuple(PATHS)),
        default=",".join(paths),
        help=f"{scope}comma list: " + ",".join(PATHS),
    )
    parser.add_argument(
        "--concurrency",
        type=_ints,
        default=_csv(concurrency),
        help=f"{scope}requests in flight, comma list",
    )


def _run_options(
    parser: argparse.ArgumentParser,
    full: Preset,
    quick: Preset,
    *,
    warmup_help: str,
    server_cores_help: str,
    out_help: str,
) -> None:
    """The options every measuring command has: timing (with its presets), load generator,
    pinning, seed, output folder and timeouts."""
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help=f"seconds per point (default {full.duration_s:g}; quick {quick.duration_s:g})",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"runs per point, median reported (default {full.repeats}; quick {quick.repeats})",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help=f"{warmup_help} (default {full.warmup_s:g}; quick {quick.warmup_s:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-run defaults (about a minute); explicit options still win",
    )
    _client_options(parser)
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and load to separate cores"
    )
    parser.add_argument("--server-cores", type=_cores, default=None, help=server_cores_help)
    parser.add_argument(
        "--client-cores",
        type=_cores,
        default=None,
        help="cores for load generators (default: second allowed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random request rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=out_help)
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds a server may take to become ready",
    )
    parser.add_argument(
        "--request-timeout", type=float, default=10.0, help="per-request timeout, seconds"
    )


def _run_fields(args: argparse.Namespace, full: Preset, quick: Preset) -> dict[str, Any]:
    """The config fields of `_run_options`; timing from the options given, else the preset's."""
    preset = quick if args.quick else full
    return {
        "duration_s": preset.duration_s if args.duration is None else args.duration,
        "repeats": preset.repeats if args.repeats is None else args.repeats,
        "warmup_s": preset.warmup_s if args.warmup is None else args.warmup,
        "client": args.client,
        "pin": not args.no_pin,
        "server_cores": args.server_cores,
        "client_cores": args.client_cores,
        "seed": args.seed,
        "request_timeout_s": args.request_timeout,
        "ready_timeout_s": args.ready_timeout,
    }


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client",
        choices=measure.CLIENT_MODES,
        default="auto",
        help="load generator: auto = wrk/h2load when installed, else Python; native = require them",
    )


def _cores(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated core numbers, got {text!r}"
        ) from err


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Library modules log (MLServer venv setup); the CLI shows it on stderr, like progress.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "compare":
            return _compare(args)
        if args.command == "journal":
            return _journal(args)
        if args.command == "routing":
            return _routing(args)
        if args.command == "monitoring":
            return _monitoring(args)
        if args.command == "drift":
            return drift_mod.main(args)
        if args.command == "load":
            return _load(args)
        if args.command == "report":
            return _report(args)
        return _direct(args)
    except (compare_mod.CompareError, ModelSpecError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _compare(args: argparse.Namespace) -> int:
    concurrency = args.concurrency or (QUICK if args.quick else FULL).concurrency
    config = compare_mod.CompareConfig(
        model_repository=args.model_repository,
        model=args.model,
        model_version=args.model_version,
        servers=args.servers,
        paths=args.paths,
        concurrency=tuple(sorted(set(concurrency))),
        cache_dir=args.cache_dir,
        modelgate_config=args.modelgate_config,
        **_run_fields(args, FULL, QUICK),
    )
    run = _Output(args.out, "compare")
    result = compare_mod.run_compare(config, log_dir=run.log_dir, say=_say)
    print(report.compare_text(result))
    json_path = run.write(report.compare_json(result))
    png_path = json_path.with_suffix(".png")
    report.plot_compare(result, png_path)
    print(f"\nwrote {json_path}\nwrote {png_path}\nserver logs in {run.log_dir}")
    return 1 if result.failed or not result.rows else 0


def _journal(args: argparse.Namespace) -> int:
    config = journal_mod.JournalBenchConfig(
        model_repository=args.model_repository,
        model=args.model,
        model_version=args.model_version,
        parts=args.parts,
        callers=tuple(dict.fromkeys(args.callers)),
        async_callers=args.async_callers,
        paths=args.paths,
        concurrency=tuple(sorted(set(args.concurrency))),
        fsync=args.fsync,
        journal_dir=args.journal_dir,
        **_run_fields(args, JOURNAL_FULL, JOURNAL_QUICK),
    )
    run = _Output(args.out, "journal")
    result = journal_mod.run_journal_bench(config, log_dir=run.log_dir, say=_say)
    print(report.journal_text(result))
    print(f"\nwrote {run.write(report.journal_json(result))}")
    if "gateway" in config.parts:
        print(f"server logs in {run.log_dir}")
    empty = not result.appends and not result.costs
    return 1 if result.failed or empty else 0


def _routing(args: argparse.Namespace) -> int:
    config = routing_mod.RoutingBenchConfig(
        model_repository=args.model_repository,
        model=args.model,
        versions=args.versions,
        paths=args.paths,
        concurrency=tuple(sorted(set(args.concurrency))),
        **_run_fields(args, ROUTING_FULL, ROUTING_QUICK),
    )
    run = _Output(args.out, "routing")
    result = routing_mod.run_routing_bench(config, log_dir=run.log_dir, say=_say)
    print(report.routing_text(result))
    print(f"\nwrote {run.write(report.routing_json(result))}\nserver log in {run.log_dir}")
    return 1 if result.failed or not result.rows else 0


def _monitoring(args: argparse.Namespace) -> int:
    config = monitoring_mod.MonitoringBenchConfig(
        model_repository=args.model_repository,
        model=args.model,
        paths=args.paths,
        concurrency=tuple(sorted(set(args.concurrency))),
        journal=args.journal == "on",
        **_run_fields(args, MONITORING_FULL, MONITORING_QUICK),
    )
    run = _Output(args.out, "monitoring")
    result = monitoring_mod.run_monitoring_bench(config, log_dir=run.log_dir, say=_say)
    print(report.monitoring_text(result))
    print(f"\nwrote {run.write(report.monitoring_json(result))}\nserver logs in {run.log_dir}")
    return 1 if result.failed or not result.rows else 0


def _say(message: str) -> None:
    """Progress goes to stderr: stdout carries the report."""
    print(message, file=sys.stderr)


class _Output:
    """Where one run's files go: `<out>/<command>-<stamp>.json` and the servers' logs in
    `<out>/<command>-<stamp>-logs/`."""

    def __init__(self, out: Path, command: str) -> None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self._out = out
        self._json = out / f"{command}-{stamp}.json"
        self.log_dir = out / f"{command}-{stamp}-logs"

    def write(self, document: dict[str, Any]) -> Path:
        self._out.mkdir(parents=True, exist_ok=True)
        report.write_json(self._json, document)
        return self._json


def _load(args: argparse.Namespace) -> int:
    if args.client_cores:
        # The Python generator runs in this process; wrk/h2load get the same cores via taskset.
        os.sched_setaffinity(0, args.client_cores)
    endpoint = Endpoint(args.url.rstrip("/"), args.grpc)
    model = _load_model_spec(args, endpoint)
    rows = random_rows(model, batch=args.batch, count=16, seed=args.seed)
    results: list[tuple[str, str, RunResult]] = []
    for path in args.paths:
        requests = build_request_set(path, model, rows)
        check = check_path(requests, endpoint, model.infer_path, args.request_timeout)
        if not check.ok:
            print(f"skip {path}: {check.detail}", file=sys.stderr)
            continue
        target = measure.Target(requests, endpoint, model.infer_path, check.response_bytes)
        for level in args.rate or args.concurrency:
            runs = []
            for rep in range(args.repeats):
                load = f"{level:g}/s" if args.rate else f"c={level}"
                label = f"[{rep + 1}/{args.repeats}] {path} {load}"
                runs.append(_load_point(args, target, level, label))
            results.append((endpoint.http_base.split("//", 1)[-1], path, median_result(runs)))
    print(report.runs_table(results))
    for line in report.run_notes(results):
        print(line)
    if args.json is not None:
        points = [{"model": m, "path": p, **r.to_json()} for m, p, r in results]
        report.write_json(args.json, {"points": points})
        print(f"wrote {args.json}")
    return 1 if not results or any(r.errors for _, _, r in results) else 0


def _load_model_spec(args: argparse.Namespace, endpoint: Endpoint) -> ModelSpec:
    if args.model_file is not None:
        return ModelSpec.from_onnx(args.model_file, args.model, args.model_version)
    route = f"/v2/models/{args.model}"
    if args.model_version:
        route += f"/versions/{args.model_version}"
    with urllib.request.urlopen(endpoint.url(route), timeout=args.request_timeout) as resp:
        metadata = json.loads(resp.read())
    return ModelSpec.from_v2_metadata({**metadata, "name": args.model}, args.model_version)


def _load_point(
    args: argparse.Namespace, target: measure.Target, level: float, label: str
) -> RunResult:
    if args.rate:
        return pydriver.run_python(
            target.requests,
            target.endpoint,
            target.infer_path,
            concurrency=OPEN_LOOP_WARMUP_CONCURRENCY,
            rate=level,
            duration_s=args.duration,
            max_in_flight=args.max_in_flight,
            timeout_s=args.request_timeout,
            label=label,
        )
    return measure.measure(
        target,
        concurrency=int(level),
        duration_s=args.duration,
        mode=args.client,
        client_cores=list(args.client_cores) if args.client_cores else None,
        timeout_s=args.request_timeout,
        label=label,
    )


def _report(args: argparse.Namespace) -> int:
    result = report.compare_from_json(json.loads(args.json_file.read_text()))
    print(report.compare_text(result))
    png = args.png or args.json_file.with_suffix(".png")
    report.plot_compare(result, png)
    print(f"\nwrote {png}")
    return 0


def _direct(args: argparse.Namespace) -> int:
    result = direct.measure_direct(
        args.model_file, duration_s=args.duration, seed=args.seed, label=args.label
    )
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(report.runs_table([("direct", "onnxruntime", result)]))
    return 0
