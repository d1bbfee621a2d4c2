"""`modelgate admin`: the deployments, versions and traffic of a running gateway.

A client of the gateway's HTTP admin API. Each subcommand makes one call of gateway/admin.py's
CALLS, whose HTTP method and path it takes from there, so the CLI and the server cannot drift
apart. Answers are printed as plain-text tables, or as the server's JSON with --json.

Exit status: 0 done; 2 refused (a 4xx answer: bad input, unknown deployment or version, no or
a wrong token, not allowed), or bad arguments; 1 the server failed or cannot be reached.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.admin import CALLS, CALLS_BY_RPC, DEPLOYMENT
from gateway.config import ServerConfig

URL_ENV = "MODELGATE_URL"
TOKEN_ENV = "MODELGATE_TOKEN"
DEFAULT_URL = f"http://127.0.0.1:{ServerConfig().http_port}"
# a load answers once the version is warmed up and validated, which a big model takes a while for
REQUEST_TIMEOUT_S = 600.0
REFUSED = 2  # exit status of a 4xx answer or bad arguments (argparse's own status)
FAILED = 1  # exit status of a 5xx answer or an unreachable server

# an operator's verbs on a running rollout: `canary VERB` makes the call at .../canary/VERB
_STEERING = {
    call.http_path.rpartition("/canary/")[2]: call.rpc
    for call in CALLS
    if "/canary/" in call.http_path
}


class AdminError(Exception):
    """A call that did not succeed: `message` for the operator, `status` the exit status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Request:
    """One admin call: `rpc` names it in CALLS, `params` fill its path. `body` is the JSON
    document; with `upload` (an ONNX file, sent as it is) its fields go in the query instead."""

    rpc: str
    params: Mapping[str, str]
    body: Mapping[str, Any] | None = None
    upload: bytes | None = None


@dataclass(frozen=True)
class Client:
    url: str  # the gateway's HTTP address, e.g. http://127.0.0.1:8000
    token: str

    def send(self, request: Request) -> Any:
        """The JSON answer. Raises AdminError: REFUSED for a 4xx, FAILED otherwise."""
        call = CALLS_BY_RPC[request.rpc]
        params = {k: urllib.parse.quote(v, safe="") for k, v in request.params.items()}
        url = f"{self.url.rstrip('/')}/admin{call.http_path.format_map(params)}"
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if request.upload is not None or call.http_method == "GET":
            # the fields go in the query: the body is the file, or there is none
            data = request.upload
            headers["Content-Type"] = "application/octet-stream"
            if request.body:
                url += "?" + urllib.parse.urlencode(request.body)
        elif request.body is not None:
            data = orjson.dumps(request.body)
            headers["Content-Type"] = "application/json"
        try:
            outgoing = urllib.request.Request(url, data, headers, method=call.http_method)
            with urllib.request.urlopen(outgoing, timeout=REQUEST_TIMEOUT_S) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                message = _error_text(error.read()) or error.reason
            status = REFUSED if 400 <= error.code < 500 else FAILED
            raise AdminError(f"{message} (HTTP {error.code})", status) from None
        except urllib.error.URLError as error:
            raise AdminError(f"cannot reach {self.url}: {error.reason}", FAILED) from None
        except http.client.HTTPException as error:  # e.g. the gRPC port: no HTTP/1.1 answer
            message = f"{self.url} does not answer HTTP ({type(error).__name__})"
            raise AdminError(message, FAILED) from None
        except (OSError, ValueError) as error:  # a reset, a timeout; ValueError: not JSON
            raise AdminError(f"{self.url}: {error}", FAILED) from None


def _error_text(body: bytes) -> str | None:
    """The message of the gateway's `{"error": "..."}` body, if that is what came back."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = document.get("error") if isinstance(document, dict) else None
    return error if isinstance(error, str) else None


# ---- arguments -------------------------------------------------------------------------------

Build = Callable[[argparse.Namespace], Request]
Render = Callable[[Any], str]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `admin` and its subcommands to the `modelgate` parser."""
    admin = commands.add_parser(
        "admin",
        help="deployments, versions and traffic of a running gateway (its HTTP admin API)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    admin.add_argument(
        "--url", help=f"the gateway's HTTP address (default: ${URL_ENV}, else {DEFAULT_URL})"
    )
    token = admin.add_mutually_exclusive_group()
    token.add_argument("--token", help=f"an API token (default: ${TOKEN_ENV})")
    token.add_argument("--token-file", type=Path, metavar="PATH", help="a file with the API token")
    admin.add_argument("--json", action="store_true", help="print the server's JSON answer")
    actions = admin.add_subparsers(dest="action", required=True, metavar="COMMAND")

    def add(name: str, text: str, build: Build, render: Render = _render_deployment) -> Any:
        action = actions.add_parser(name, help=text, description=text)
        action.set_defaults(build=build, render=render)
        return action

    add("deployments", "list the deployments", _list, _render_list)
    _target(add("show", "a deployment: its versions, policy and rollout", _get))
    _target(add("history", "a deployment's policies, oldest first", _history, _render_history))
    _target(add("breakers", "the versions' circuit breakers", _get, _render_breakers))

    load = _target(add("load", "load, warm up and check a version (no traffic yet)", _load), True)
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--repository", metavar="MODEL/VERSION", help="a model repository version")
    source.add_argument("--file", type=Path, metavar="PATH", help="an ONNX file to upload")
    source.add_argument("--remote", metavar="URL", help="a V2 server's gRPC endpoint (host:port)")
    load.add_argument("--remote-model", metavar="MODEL", help="the model on the remote server")
    load.add_argument("--remote-version", metavar="V", default="", help="default: the latest")
    load.add_argument("--timeout", type=float, metavar="S", help="seconds per remote request")
    load.add_argument("--golden", type=Path, metavar="PATH", help="JSON: inputs and their outputs")
    load.add_argument(
        "--profile", type=Path, metavar="PATH", help="its training-data profile (drift)"
    )
    _reason(load)

    _reason(_target(add("unload", "drain a version and take it out of service", _unload), True))
    _target(add("warmup", "run a version's warm-up and checks again", _warm, _render_warm), True)

    traffic = _target(add("traffic", "set a deployment's traffic policy", _traffic))
    traffic.add_argument("weights", nargs="+", type=_weight, metavar="VERSION=WEIGHT")
    traffic.add_argument("--sticky", action="store_true", help="route by the caller's routing key")
    traffic.add_argument("--shadow", action="append", default=[], metavar="V", help="gets copies")
    traffic.add_argument("--fallback", action="append", default=[], metavar="V", help="takes over")
    _reason(traffic)

    shadow = _target(add("shadow", "send a version copies of the traffic, or stop", _shadow), True)
    shadow.add_argument("state", choices=("on", "off"))
    _reason(shadow)

    _reason(_target(add("rollback", "restore the policy before the current one", _rollback)))

    for name, text, build, render in (
        ("health", "service health of the versions", _health, _render_health),
        ("drift", "drift of the versions' traffic from their training data", _drift, render_drift),
        ("accuracy", "accuracy against the actuals received", _accuracy, _render_accuracy),
    ):
        report = _target(add(name, text, build, render))
        report.add_argument("--window", default="5m", help="e.g. 300, 5m, 1h (default 5m)")
        report.add_argument("--version", default="", help="one version only")
    actuals = _target(
        add("actuals", "send actuals for earlier predictions", _actuals, _render_joined)
    )
    actuals.add_argument("file", type=Path, help='JSON: [{"id": request id, "actual": value}, ...]')

    importance = _target(add("importance", "set a deployment's importance", _importance))
    importance.add_argument("level", choices=("low", "moderate", "high", "critical"))
    _reason(importance)

    export = add(
        "export-journal",
        "export a journal stream's new records on the server (retention may then delete them)",
        _export_journal,
        _render_export,
    )
    export.add_argument("--stream", default="predictions", choices=("predictions", "admin"))
    export.add_argument("--until", default="", help="ISO 8601 time (exclusive); default: all")

    add("changes", "the change requests (four-eyes approvals)", _changes, _render_changes)
    for verb in ("approve", "reject"):
        decide = add(verb, f"{verb} a pending change request", _decide, _render_change)
        decide.add_argument("id", help="the change request's id")
        _reason(decide)

    canary = actions.add_parser("canary", help="canary rollouts").add_subparsers(
        dest="canary_action", required=True, metavar="ACTION"
    )
    start = _target(canary.add_parser("start", help="give a version its first step"), True)
    start.set_defaults(build=_start_canary, render=_render_deployment)
    start.add_argument("--steps", type=_steps, metavar="PERCENTS", help="e.g. 5,25,50,100")
    start.add_argument("--dwell", type=float, metavar="S", help="least seconds at each step")
    start.add_argument("--interval", type=float, metavar="S", help="seconds between checks")
    start.add_argument("--failure-limit", type=int, metavar="N", help="failed checks to roll back")
    for guard, (kind, metavar, text) in _GUARDS.items():
        flag = "--" + guard.replace("_", "-")
        start.add_argument(flag, type=kind, dest=guard, metavar=metavar, help=text)
    _reason(start)
    for verb in _STEERING:
        steer = _target(canary.add_parser(verb, help=f"{verb} the running rollout"))
        steer.set_defaults(build=_steer_canary, render=_render_deployment)
        _reason(steer)


def _target(parser: argparse.ArgumentParser, version: bool = False) -> argparse.ArgumentParser:
    parser.add_argument("deployment")
    if version:
        parser.add_argument("version")
    return parser


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default="", help="why, for the journal and the history")


def _weight(text: str) -> tuple[str, int]:
    version, _, weight = text.partition("=")
    try:
        if version:
            return version, int(weight)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not VERSION=WEIGHT")


def _steps(text: str) -> list[int]:
    try:
        return [int(step) for step in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of percents") from None


# the rollout plan's guards (lifecycle/rollout.py Guards): type, metavar, help
_GUARDS: dict[str, tuple[Callable[[str], object], str, str]] = {
    "min_success_rate": (float, "R", "least share of canary requests that succeed (0..1)"),
    "max_p99_ratio": (float, "X", "most canary p99 as a multiple of the champion's"),
    "max_p99_ms": (float, "MS", "a canary p99 always good enough"),
    "min_requests": (int, "N", "fewest canary requests for a conclusive check"),
    "max_drift": (str, "STATUS", "fail a check at this canary drift or worse: warn or alert"),
}


# ---- requests --------------------------------------------------------------------------------


def _of(args: argparse.Namespace) -> dict[str, str]:
    """The path's parameters: the deployment, and the version where the command has one (a
    path without `{version}` leaves it out)."""
    params = {DEPLOYMENT: args.deployment}
    if "version" in args:
        params["version"] = args.version
    return params


def _list(args: argparse.Namespace) -> Request:
    return Request("ListDeployments", {})


def _get(args: argparse.Namespace) -> Request:
    return Request("GetDeployment", _of(args))


def _history(args: argparse.Namespace) -> Request:
    return Request("GetHistory", _of(args))


def _load(args: argparse.Namespace) -> Request:
    body: dict[str, Any] = {"version": args.version, "reason": args.reason}
    for key, path in (("golden", args.golden), ("profile", args.profile)):
        if path is not None:
            try:
                body[key] = orjson.loads(_read(path))
            except orjson.JSONDecodeError as error:
                raise AdminError(f"{path} is not JSON: {error}", REFUSED) from None
    if args.file is not None:
        model = _read(args.file)
        if "golden" not in body and "profile" not in body:
            # sent raw: no base64, so a model up to the server's body limit fits
            return Request("LoadVersion", _of(args), body, upload=model)
        body["model"] = base64.b64encode(model).decode()  # only JSON carries the documents
    elif args.repository is not None:
        model_name, _, version = args.repository.rpartition("/")
        if not model_name or not version:
            raise AdminError(f"--repository takes MODEL/VERSION, not {args.repository!r}", REFUSED)
        body["source"] = {"kind": "repository", "model": model_name, "version": version}
    else:
        if not args.remote_model:
            raise AdminError("--remote needs --remote-model", REFUSED)
        body["source"] = {
            "kind": "remote",
            "url": args.remote,
            "model": args.remote_model,
            "version": args.remote_version,
            **({"timeout_s": args.timeout} if args.timeout is not None else {}),
        }
    return Request("LoadVersion", _of(args), body)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise AdminError(f"cannot read {path}: {error.strerror}", REFUSED) from None


def _unload(args: argparse.Namespace) -> Request:
    return Request("UnloadVersion", _of(args), {"reason": args.reason})


def _warm(args: argparse.Namespace) -> Request:
    return Request("WarmUpVersion", _of(args), {})


def _traffic(args: argparse.Namespace) -> Request:
    body = {
        "weights": dict(args.weights),
        "sticky": args.sticky,
        "shadows": args.shadow,
        "fallback": args.fallback,
        "reason": args.reason,
    }
    return Request("SetTraffic", _of(args), body)


def _shadow(args: argparse.Namespace) -> Request:
    body = {"version": args.version, "enabled": args.state == "on", "reason": args.reason}
    return Request("SetShadow", _of(args), body)


def _rollback(args: argparse.Namespace) -> Request:
    return Request("Rollback", _of(args), {"reason": args.reason})


def _health(args: argparse.Namespace) -> Request:
    return Request("GetHealth", _of(args), _window(args))


def _drift(args: argparse.Namespace) -> Request:
    return Request("GetDrift", _of(args), _window(args))


def _accuracy(args: argparse.Namespace) -> Request:
    return Request("GetAccuracy", _of(args), _window(args))


def _window(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in (("window", args.window), ("version", args.version)) if v}


def _actuals(args: argparse.Namespace) -> Request:
    try:
        entries = orjson.loads(_read(args.file))
    except orjson.JSONDecodeError as error:
        raise AdminError(f"{args.file} is not JSON: {error}", REFUSED) from None
    return Request("SendActuals", _of(args), {"actuals": entries})


def _importance(args: argparse.Namespace) -> Request:
    body = {"importance": args.level, "reason": args.reason}
    return Request("SetImportance", _of(args), body)


def _export_journal(args: argparse.Namespace) -> Request:
    return Request("ExportJournal", {}, {"stream": args.stream, "until": args.until})


def _changes(args: argparse.Namespace) -> Request:
    return Request("ListChanges", {})


def _decide(args: argparse.Namespace) -> Request:
    rpc = "ApproveChange" if args.action == "approve" else "RejectChange"
    return Request(rpc, {"id": args.id}, {"reason": args.reason})


def _start_canary(args: argparse.Namespace) -> Request:
    plan = _given(
        steps=args.steps,
        dwell_s=args.dwell,
        check_interval_s=args.interval,
        failure_limit=args.failure_limit,
    )
    guards = _given(**{guard: getattr(args, guard) for guard in _GUARDS})
    if guards:
        plan["guards"] = guards
    body = {"version": args.version, "plan": plan, "reason": args.reason}
    return Request("StartCanary", _of(args), body)


def _given(**values: Any) -> dict[str, Any]:
    """The options that were given: the server takes its defaults for the others."""
    return {key: value for key, value in values.items() if value is not None}


def _steer_canary(args: argparse.Namespace) -> Request:
    return Request(_STEERING[args.canary_action], _of(args), {"reason": args.reason})


# ---- output ----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart; None shows as '-'."""
    cells = [list(header), *([_cell(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.3g} %"


def _policy(policy: Mapping[str, Any] | None) -> str:
    """`1=90 2=10, sticky, shadows 3, fallback 2` (`-` without a policy)."""
    if not policy:
        return "-"
    parts = [" ".join(f"{v}={w}" for v, w in policy["weights"].items())]
    if policy.get("sticky"):
        parts.append("sticky")
    for key in ("shadows", "fallback"):
        if policy.get(key):
            parts.append(f"{key} {' '.join(policy[key])}")
    return ", ".join(parts)


def _source(source: Mapping[str, Any]) -> str:
    kind = source.get("kind")
    if kind == "repository":
        return f"repository {source['model']}/{source['version']}"
    if kind == "upload":
        return f"upload sha256:{source['sha256'][:12]}"
    if kind == "remote":
        version = f"/{source['version']}" if source.get("version") else ""
        return f"remote {source['url']} {source['model']}{version}"
    return str(kind)


def _rollout(rollout: Mapping[str, Any]) -> str:
    steps = rollout["plan"]["steps"]
    text = (
        f"canary {rollout['canary']} against {rollout['champion']}: {rollout['phase']}, "
        f"step {rollout['step'] + 1} of {len(steps)} ({rollout['canary_percent']} %), "
        f"failed checks {rollout['failed_checks']} of {rollout['plan']['failure_limit']}"
    )
    return f"{text}; {rollout['reason']}" if rollout.get("reason") else text


def _render_list(answer: Mapping[str, Any]) -> str:
    rows = (
        (
            d["name"],
            d["production"],
            _policy(d["policy"]),
            " ".join(f"{v['version']}:{v['state']}" for v in d["versions"]),
        )
        for d in answer["deployments"]
    )
    return _table(("DEPLOYMENT", "PRODUCTION", "POLICY", "VERSIONS"), rows)


def _render_deployment(deployment: Mapping[str, Any]) -> str:
    policy = deployment["policy"] or {"weights": {}}
    total = sum(policy["weights"].values())
    lines = [
        _table(
            ("deployment", deployment["name"]),
            (
                ("production", deployment["production"]),
                ("policy", _policy(deployment["policy"])),
                ("rollout", _rollout(deployment["rollout"]) if deployment["rollout"] else None),
            ),
        ),
        "",
    ]
    rows = []
    for version in deployment["versions"]:
        weight = policy["weights"].get(version["version"])
        agreement = version["shadow"]["agreement"]
        rows.append(
            (
                version["version"],
                version["state"],
                _percent(weight / total) if weight is not None else None,
                version["breaker"]["state"],
                _percent(agreement) if agreement is not None else None,
                version["inflight"],
                _source(version["source"]),
            )
        )
    header = ("VERSION", "STATE", "SHARE", "BREAKER", "SHADOW AGREEMENT", "INFLIGHT", "SOURCE")
    lines.append(_table(header, rows))
    lines += (
        f"version {v['version']}: {v['reason']}" for v in deployment["versions"] if v["reason"]
    )
    pending = deployment.get("pending_change")
    if pending:  # an important deployment: the deployment shown is as it was, before the change
        change = f"change {pending['id']} ({pending['operation']})"
        lines.insert(0, f"pending approval: {change}, not applied until approved\n")
    return "\n".join(lines)


def _render_health(answer: Mapping[str, Any]) -> str:
    rows = (
        (
            v["version"],
            v["state"],
            v["requests"],
            f"{v['rate_per_s']:.1f}",
            _percent(v["client_error_rate"]),
            _percent(v["server_error_rate"]),
            _percent(v["data_error_rate"]),
            " / ".join(f"{v['latency_ms'][p]:.2f}" for p in ("p50", "p95", "p99")),
            v["slow"],
            f"{v['batch_size_mean']:.1f}",
            f"{v['queue_ms_mean']:.2f}",
        )
        for v in answer["versions"]
    )
    header = (
        "VERSION", "STATE", "REQUESTS", "REQ/S", "4XX", "5XX", "DATA ERR",
        "P50 / P95 / P99 MS", "SLOW", "BATCH", "QUEUE MS",
    )  # fmt: skip
    return _table(header, rows)


def render_drift(answer: Mapping[str, Any]) -> str:
    """Per version: the window, the overall verdict, then a row per feature and output."""
    blocks = []
    for version in answer["versions"]:
        if "error" in version:
            blocks.append(f"version {version['version']}: {version['error']}")
            continue
        window, overall = version["window"], version["overall"]
        head = (
            f"version {version['version']} ({version['state']}), profile {version['profile_id']}:"
            f" {window['rows']} rows in {window['windows']} windows; overall"
            f" {_number(overall['score'])} {overall['status']},"
            f" {_percent(overall['drifted_share'] or 0.0)} of features drifted"
        )
        rows = (
            (
                f"{'output ' if kind == 'out' else ''}{s['name']}",
                *(_number(s[m]) for m in ("psi", "js", "wasserstein", "ks")),
                _percent(s.get("out_of_range", s.get("new_level", 0.0)) or 0.0),
                s["status"],
            )
            for kind, segments in (("in", version["features"]), ("out", version["outputs"]))
            for s in segments
        )
        header = ("FEATURE", "PSI", "JS", "WASSERSTEIN", "KS", "OUT/NEW", "STATUS")
        blocks.append(head + "\n" + _table(header, rows))
    return "\n\n".join(blocks)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _render_accuracy(answer: Mapping[str, Any]) -> str:
    report = answer["report"]
    metrics = ("accuracy", "precision", "recall", "auc", "log_loss", "rmse", "mae")
    rows = (
        (
            v["version"],
            v["kind"],
            v["count"],
            *(_number(v.get(m)) for m in metrics),
            _percent(v["join"]["join_rate"] or 0.0),
        )
        for v in report["versions"]
    )
    header = ("VERSION", "TASK", "ROWS", *(m.upper() for m in metrics), "JOINED")
    return _table(header, rows)


def _render_joined(answer: Mapping[str, Any]) -> str:
    report = answer["report"]
    lines = [f"joined {report['joined']} ({report['rows']} rows)"]
    for key in ("unknown_ids", "duplicate_ids"):
        if report[key]:
            lines.append(f"{key.replace('_', ' ')}: {', '.join(report[key])}")
    return "\n".join(lines)


def _render_changes(answer: Mapping[str, Any]) -> str:
    rows = (
        (
            c["id"],
            c["state"],
            c["deployment"],
            c["operation"],
            c["requester"],
            c["decided_by"],
            c["error"] or c["reason"],
        )
        for c in answer["changes"]
    )
    header = ("ID", "STATE", "DEPLOYMENT", "OPERATION", "REQUESTER", "DECIDED BY", "NOTE")
    return _table(header, rows)


def _render_export(answer: Mapping[str, Any]) -> str:
    stream, through = answer["stream"], answer["exported_through"]
    if not answer["records"]:
        return f"{stream}: nothing new to export (exported through seq {through})"
    return (
        f"{stream}: {answer['records']} records (seq {answer['first_seq']}..{answer['last_seq']})"
        f" written to {answer['path']} on the server; exported through seq {through}"
    )


def _render_change(change: Mapping[str, Any]) -> str:
    return _render_changes({"changes": [change]})


def _render_history(answer: Mapping[str, Any]) -> str:
    rows = (
        (c["time"], c["actor"], c["operation"], _policy(c["policy"]), c["reason"])
        for c in answer["changes"]
    )
    return _table(("TIME", "ACTOR", "OPERATION", "POLICY", "REASON"), rows)


def _render_breakers(deployment: Mapping[str, Any]) -> str:
    rows = []
    for version in deployment["versions"]:
        breaker = version["breaker"]
        rows.append(
            (
                version["version"],
                breaker["state"],
                breaker["consecutive_failures"],
                f"{breaker['window_failures']}/{breaker['window_requests']}",
                breaker["ejections"],
                f"{breaker['open_until_s']:.1f}",
                f"{breaker['ejection_s']:.1f}",
            )
        )
    header = (
        "VERSION",
        "STATE",
        "CONSECUTIVE FAILURES",
        "WINDOW FAILED/REQUESTS",
        "EJECTIONS",
        "OPEN FOR S",
        "EJECTION S",
    )
    return _table(header, rows)


def _render_warm(answer: Mapping[str, Any]) -> str:
    return (
        f"{answer['deployment']} version {answer['version']}: {answer['runs']} warm-up runs passed"
    )


# ---- running ---------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise AdminError(f"the gateway's address is http://HOST:PORT, not {url!r}", REFUSED)
    if args.token_file is not None:
        token = _read(args.token_file).decode(errors="replace").strip()
    else:
        token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        raise AdminError(f"no API token: pass --token or --token-file, or set {TOKEN_ENV}", REFUSED)
    return Client(url, token)


def main(args: argparse.Namespace) -> int:
    """Run `modelgate admin ...` as parsed by `add_parser`; the exit status."""
    try:
        request = args.build(args)
        answer = _client(args).send(request)
    except AdminError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return error.status
    if args.json:
        sys.stdout.write(orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(args.render(answer))
    return 0
