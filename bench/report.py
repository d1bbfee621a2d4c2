"""Reports: text tables for stdout, a JSON document, a PNG of latency against throughput."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .compare import (
    FLOOR,
    REFERENCES,
    CompareResult,
    Point,
    SummaryRow,
    reference_servers,
    summarize_rows,
)
from .journal import OFF, AppendPoint, CostRow, JournalBenchResult
from .monitoring import MonitoringResult
from .routing import SHADOW, RoutingResult
from .stats import PERCENTILES, RunResult, percentile_key


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns right-aligned except the first two (names), widths fitted to the content."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def runs_table(rows: Sequence[tuple[str, str, RunResult]]) -> str:
    """One line per point: (name, path, result) -> load, req/s, percentiles, errors, tool."""
    headers = [
        "server",
        "path",
        "load",
        "req/s",
        *(f"{percentile_key(q)} ms" for q in PERCENTILES),
        "errors",
        "tool",
    ]
    body = []
    for name, path, result in rows:
        load = f"{result.rate:g}/s" if result.rate else f"c={result.concurrency}"
        lat = result.latency_ms
        body.append(
            [
                name,
                path,
                load,
                f"{result.throughput_rps:.0f}",
                *(_num(lat.get(percentile_key(q)), ".3f") for q in PERCENTILES),
                str(result.errors),
                result.tool,
            ]
        )
    return table(headers, body)


def points_table(points: Sequence[Point]) -> str:
    return runs_table([(p.server, p.path, p.median) for p in points if p.runs])


def summary_table(rows: Sequence[SummaryRow], low: int, high: int) -> str:
    """One line per server and path; a ratio column (req/s, p99) per reference measured."""
    labels = [label for label in REFERENCES if any(label in row.vs for row in rows)]
    headers = [
        "server",
        "path",
        f"req/s @{high}",
        f"p50 @{low} ms",
        f"p99 @{high} ms",
        "+p50 vs ORT us",
        "req/s vs ORT",
        "p50 vs ORT",
        *(f"vs {label}: req/s, p99" for label in labels),
        "errors",
    ]
    body = []
    for row in rows:
        ratios = []
        for label in labels:
            vs = row.vs.get(label)
            if vs is None:
                ratios.append("-")
                continue
            # the counterpart path, where it is not the row's own (MLServer has no binary path)
            against = f" ({vs.path})" if vs.path != row.path else ""
            ratios.append(f"{_ratio(vs.throughput)}, {_ratio(vs.p99)}{against}")
        body.append(
            [
                row.server,
                row.path,
                _num(row.throughput_rps, ".0f"),
                _num(row.p50_ms, ".3f"),
                _num(row.p99_ms, ".3f"),
                _num(row.added_latency_us, ".0f"),
                _ratio(row.throughput_vs_floor),
                _ratio(row.p50_vs_floor),
                *ratios,
                str(row.errors),
            ]
        )
    return table(headers, body)


def compare_text(result: CompareResult) -> str:
    """The full stdout report of a comparison."""
    meta = result.meta
    low, high = meta["low_concurrency"], meta["high_concurrency"]
    parts = [
        f"model {meta['model']} v{meta['model_version']}, batch 1, "
        f"{meta['repeats']} x {meta['duration_s']:g} s per point (medians), "
        f"server cores {meta['server_cores']}, client cores {meta['client_cores']}, "
        f"tools {meta['tools']}",
        "",
        "Per point (median of repeats):",
        points_table(result.points),
        "",
        f"Summary (req/s and p99 at {high} in flight, p50 and added latency at {low}; "
        f"the {FLOOR} floor is one ONNX Runtime call at a time, in-process):",
        summary_table(result.rows, low, high),
    ]
    held = {vs.server for row in result.rows for vs in row.vs.values()}
    references = reference_servers(held)
    if references:
        parts.append(
            "ratios: row / "
            + ", ".join(f"{server} for {label}" for label, server in references.items())
            + " (the same path, else the first of the same transport)"
        )
    for server, notes in meta.get("server_notes", {}).items():
        parts.append(f"{server}: " + "; ".join(notes))
    parts.extend(skipped_lines(result.skipped))
    parts.extend(run_notes((p.server, p.path, p.median) for p in result.points if p.runs))
    return "\n".join(parts)


def skipped_lines(skipped: Iterable[dict[str, str]]) -> list[str]:
    """ "skipped server path (kind): first line of the reason" for each thing not measured."""
    lines = []
    for skip in skipped:
        reason = skip["reason"].splitlines()[0] if skip["reason"] else ""
        lines.append(f"skipped {skip['server']} {skip['path']} ({skip.get('kind')}): {reason}")
    return lines


def load_line(meta: dict[str, Any]) -> list[str]:
    """The machine's load average before the run, where recorded (a shared box is noisy)."""
    load = meta.get("load_average_start")
    if not load:
        return []
    return [
        f"load average before the run (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} (this run adds up to about 2)"
    ]


def points_json(points: Iterable[Point], key: str) -> list[dict[str, Any]]:
    """Each measured point with its median and every run; the server's name under `key`."""
    return [
        {
            key: p.server,
            "path": p.path,
            "concurrency": p.concurrency,
            "median": p.median.to_json(),
            "runs": [r.to_json() for r in p.runs],
        }
        for p in points
        if p.runs
    ]


def run_notes(rows: Iterable[tuple[str, str, RunResult]]) -> list[str]:
    """ "note (server path load): text" lines for every note a point's runs left."""
    lines = []
    for name, path, result in rows:
        load = f"{result.rate:g}/s" if result.rate else f"c={result.concurrency}"
        lines.extend(f"note ({name} {path} {load}): {note}" for note in result.notes)
    return lines


def compare_json(result: CompareResult) -> dict[str, Any]:
    return {
        "meta": result.meta,
        "summary": [dataclasses.asdict(row) for row in result.rows],
        "points": points_json(result.points, "server"),
        "skipped": result.skipped,
    }


def compare_from_json(document: dict[str, Any]) -> CompareResult:
    """Rebuild a CompareResult from `compare_json` output (for re-rendering a saved run);
    raises KeyError/TypeError/ValueError on a malformed document."""
    points = [
        Point(
            p["server"],
            p["path"],
            int(p["concurrency"]),
            [RunResult.from_json(r) for r in p["runs"]],
        )
        for p in document["points"]
    ]
    meta = document["meta"]
    rows = summarize_rows(points, meta["low_concurrency"], meta["high_concurrency"])
    return CompareResult(meta, points, rows, list(document.get("skipped", [])))


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def plot_compare(result: CompareResult, png_path: Path) -> None:
    """Two panels, p50 and p99 (ms, log scale) against throughput, one line per server/path
    through its concurrency levels (each marker labelled with its level); the floor is a star."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a bench box
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str], list[Point]] = {}
    for p in result.points:
        if p.runs:
            series.setdefault((p.server, p.path), []).append(p)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharex=True)
    # 20 colours: Modelgate's 4 paths, MLServer's 3 and 2 each for the Triton entries, at least
    colors: Callable[[int], Any] = plt.get_cmap("tab20")
    for ax, key in zip(axes, ("p50", "p99"), strict=True):
        for i, ((server, route), pts) in enumerate(series.items()):
            pts = sorted(pts, key=lambda p: p.concurrency)
            xs = [p.median.throughput_rps for p in pts]
            ys = [p.median.latency_ms.get(key, float("nan")) for p in pts]
            if server == FLOOR:
                ax.plot(xs, ys, "*", markersize=14, color="black", label=f"{server} (floor)")
                continue
            style = "-" if server == "modelgate" else "--"
            ax.plot(xs, ys, style, marker="o", color=colors(i), label=f"{server} {route}")
            for p, x, y in zip(pts, xs, ys, strict=True):
                ax.annotate(
                    f"{p.concurrency}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
        # Log-log: the floor sits an order of magnitude or more right of and below the servers.
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (req/s)")
        ax.set_ylabel(f"{key} latency (ms)")
        ax.set_title(f"{key} latency vs throughput (labels: requests in flight)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    meta = result.meta
    fig.suptitle(
        f"{meta['model']} v{meta['model_version']}, batch 1, server on cores "
        f"{meta['server_cores']}, load on {meta['client_cores']}, "
        f"median of {meta['repeats']} x {meta['duration_s']:g} s"
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


# --- `journal` ----------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def _delta_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def appends_table(points: Sequence[AppendPoint]) -> str:
    headers = [
        "mode",
        "fsync",
        "callers",
        "records/s",
        "groups/s",
        "fsyncs/s",
        "records/group",
        "largest group",
        "MB/s",
        "append p50 ms",
        "append p99 ms",
    ]
    body = []
    for point in points:
        if not point.runs:
            continue
        m = point.median
        body.append(
            [
                point.case.mode,
                point.case.fsync,
                str(point.case.callers),
                f"{m.records_per_s:.0f}",
                f"{m.groups_per_s:.0f}",
                f"{m.fsyncs_per_s:.0f}",
                f"{m.mean_group:.1f}",
                str(m.largest_group),
                f"{m.mb_per_s:.2f}",
                _num(m.append_ms.get("p50"), ".3f"),
                _num(m.append_ms.get("p99"), ".3f"),
            ]
        )
    return table(headers, body)


def _cost_cells(row: CostRow) -> list[str]:
    """path, variant, c, req/s, p50 and p99: how a CostRow's line starts."""
    return [
        row.path,
        row.variant,
        str(row.concurrency),
        f"{row.throughput_rps:.0f}",
        _num(row.p50_ms, ".3f"),
        _num(row.p99_ms, ".3f"),
    ]


def cost_table(rows: Sequence[CostRow], variant_header: str) -> str:
    """Each variant against the base: req/s cost (median, per repeat), added latency, and the
    server's journal group commits from /metrics."""
    headers = [
        "path",
        variant_header,
        "c",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s cost",
        "cost per repeat",
        "p50 +ms",
        "p99 +ms",
        "groups/s",
        "records/group",
        "errors",
        "tool",
    ]
    body = []
    for row in rows:
        server = row.server_journal or {}
        body.append(
            [
                *_cost_cells(row),
                _pct(row.cost_pct),
                " ".join(f"{c:+.1f}" for c in row.paired_cost_pct) or "-",
                _delta_ms(row.p50_delta_ms),
                _delta_ms(row.p99_delta_ms),
                _num(server.get("groups_per_s"), ".0f"),
                _num(server.get("mean_group"), ".1f"),
                str(row.errors),
                row.tool,
            ]
        )
    return table(headers, body)


def target_line(rows: Sequence[CostRow], target: dict[str, Any], what: str) -> str:
    """Where the variants other than "off" stand against the issue's target for `what`
    (reported, not enforced)."""
    pct, path, c = float(target["pct"]), target["path"], int(target["concurrency"])
    head = f"target: {what} costs <= {pct:g} % of req/s at c={c} on {path}:"
    found = [r for r in rows if r.path == path and r.concurrency == c and r.variant != OFF]
    if not found:
        return f"{head} not measured"
    parts = []
    for row in found:
        if row.cost_pct is None:
            parts.append(f"{row.variant} -")
            continue
        verdict = "within" if row.cost_pct <= pct else "over"
        spread = (
            f", per repeat {min(row.paired_cost_pct):+.1f}..{max(row.paired_cost_pct):+.1f} %"
            if row.paired_cost_pct
            else ""
        )
        parts.append(f"{row.variant} {row.cost_pct:+.1f} % ({verdict}{spread})")
    return f"{head} " + "; ".join(parts)


def journal_text(result: JournalBenchResult) -> str:
    """The full stdout report of a `journal` run."""
    meta = result.meta
    fs = meta.get("journal_filesystem", {})
    per_point = f"median of {meta['repeats']} x {meta['duration_s']:g} s"
    parts = []
    if result.appends:
        parts += [
            f"Journal alone: appends of prediction payloads (capture {meta['payload_capture']}, "
            f"{meta['payload_bytes_mean']:.0f} B of JSON each) into a fresh journal under "
            f"{fs.get('path')} ({fs.get('type')} on {fs.get('mount')}), on uvloop, in one "
            f"process pinned to cores {meta['server_cores']}, {per_point}:",
            appends_table(result.appends),
            "",
        ]
    if result.costs:
        parts += [
            f"Gateway: {meta['model']} v{meta['model_version']}, batch 1, servers on cores "
            f"{meta['server_cores']}, load on {meta['client_cores']}, journal fsync "
            f"{meta['gateway_fsync']}, capture {meta['record_capture']}; {per_point}, the "
            "three configurations interleaved (order rotated each repeat). Cost: req/s lost "
            "vs journal off (+ = slower); groups/s and records/group from the server's /metrics:",
            cost_table(result.costs, "journal"),
            "",
            target_line(result.costs, meta["target"], "journaling"),
        ]
    if meta.get("git"):
        at_servers = meta.get("git_at_server_start")
        moved = (
            f" (servers started on {at_servers})" if at_servers not in (None, meta["git"]) else ""
        )
        parts.append(f"code: {meta['git']}{moved}")
    parts.extend(load_line(meta))
    for variant, counts in result.journalled.items():
        if counts["records"] or counts["ok_replies"]:
            parts.append(
                f"journal {variant}: {counts['records']} prediction records for "
                f"{counts['ok_replies']} OK replies measured (plus warm-ups and checks)"
            )
    parts.extend(skipped_lines(result.skipped))
    parts.extend(
        run_notes(
            (f"journal {p.server}", p.path, p.median) for p in result.points.values() if p.runs
        )
    )
    return "\n".join(parts).strip("\n")


def journal_json(result: JournalBenchResult) -> dict[str, Any]:
    return {
        "meta": result.meta,
        "appends": [
            {
                "mode": p.case.mode,
                "fsync": p.case.fsync,
                "callers": p.case.callers,
                "median": p.median.to_json(),
                "runs": [r.to_json() for r in p.runs],
            }
            for p in result.appends
            if p.runs
        ],
        "gateway": [
            {**row.__dict__, "paired_cost_pct": list(row.paired_cost_pct)} for row in result.costs
        ],
        "gateway_runs": points_json(result.points.values(), "variant"),
        "journalled": result.journalled,
        "skipped": result.skipped,
    }


# --- `routing` ----------------------------------------------------------------------------------


def routing_table(rows: Sequence[CostRow], shadow: dict[tuple[str, int], dict[str, int]]) -> str:
    headers = [
        "path",
        "scenario",
        "c",
        "req/s",
        "p50 ms",
        "p99 ms",
        "req/s vs single",
        "per repeat",
        "p99 vs single",
        "shadow copies",
        "dropped",
        "errors",
        "tool",
    ]
    body = []
    for row in rows:
        copies = shadow.get((row.path, row.concurrency)) if row.variant == SHADOW else None
        body.append(
            [
                *_cost_cells(row),
                _ratio(row.throughput_ratio),
                " ".join(f"{1 - c / 100:.2f}" for c in row.paired_cost_pct) or "-",
                _ratio(row.p99_ratio),
                str(copies["copies"]) if copies else "-",
                str(copies["dropped"]) if copies else "-",
                str(row.errors),
                row.tool,
            ]
        )
    return table(headers, body)


def routing_text(result: RoutingResult) -> str:
    """The full stdout report of a `routing` run."""
    meta = result.meta
    versions = meta["versions"]
    parts = [
        f"Routing: {meta['model']} v{versions['old']} and v{versions['new']}, batch 1, requests "
        f"name no version (every one routed); one Modelgate on cores {meta['server_cores']}, "
        f"load on {meta['client_cores']}; median of {meta['repeats']} x {meta['duration_s']:g} "
        "s, the scenarios interleaved (order rotated each repeat), the policy set through the "
        "admin API before each point. Against single: req/s and p99 ratios (median, and req/s "
        "per repeat); shadow copies and drops summed over the measured runs:",
        routing_table(result.rows, result.shadow),
        "",
        "scenarios: " + "; ".join(f"{name} = {text}" for name, text in meta["scenarios"].items()),
        "modelgate: " + "; ".join(meta.get("server_notes", [])),
    ]
    if meta.get("git"):
        parts.append(f"code: {meta['git']}")
    parts.extend(load_line(meta))
    parts.extend(skipped_lines(result.skipped))
    parts.extend(run_notes((p.server, p.path, p.median) for p in result.points.values() if p.runs))
    return "\n".join(parts)


def routing_json(result: RoutingResult) -> dict[str, Any]:
    return {
        "meta": result.meta,
        "rows": [
            {
                **dataclasses.asdict(row),
                "throughput_ratio": row.throughput_ratio,
                "p99_ratio": row.p99_ratio,
            }
            for row in result.rows
        ],
        "shadow": [
            {"path": path, "concurrency": c, **counts}
            for (path, c), counts in result.shadow.items()
        ],
        "runs": points_json(result.points.values(), "scenario"),
        "skipped": result.skipped,
    }


# --- `monitoring` -------------------------------------------------------------------------------


def monitoring_text(result: MonitoringResult) -> str:
    """The full stdout report of a `monitoring` run."""
    meta = result.meta
    parts = [
        f"Monitoring: {meta['model']}, batch 1, requests name no version (every one routed), "
        f"{meta['journal']} in every variant; servers on cores {meta['server_cores']}, load on "
        f"{meta['client_cores']}; median of {meta['repeats']} x {meta['duration_s']:g} s, the "
        f"{len(meta['variants'])} configurations interleaved (order rotated each repeat). Cost: "
        "req/s lost vs off (+ = slower); groups/s and records/group from the servers' /metrics:",
        cost_table(result.rows, "monitoring"),
        "",
        target_line(result.rows, meta["target"], "monitoring"),
        "variants: " + "; ".join(f"{name} = {text}" for name, text in meta["variants"].items()),
    ]
    parts.extend(f"check {name}: {check.describe()}" for name, check in result.checks.items())
    if meta.get("git"):
        parts.append(f"code: {meta['git']}")
    parts.extend(load_line(meta))
    parts.extend(skipped_lines(result.skipped))
    parts.extend(
        run_notes(
            (f"monitoring {p.server}", p.path, p.median) for p in result.points.values() if p.runs
        )
    )
    return "\n".join(parts)


def monitoring_json(result: MonitoringResult) -> dict[str, Any]:
    return {
        "meta": result.meta,
        "rows": [dataclasses.asdict(row) for row in result.rows],
        "checks": {
            name: {
                "sketched_rows": check.sketched,
                "predictions_kept": check.kept,
                "ok_replies": check.ok_replies,
                "ok": check.ok,
            }
            for name, check in result.checks.items()
        },
        "runs": points_json(result.points.values(), "variant"),
        "skipped": result.skipped,
    }
