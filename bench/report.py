"""Reports: text tables for stdout, a JSON document, a PNG of latency against throughput."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .compare import FLOOR, CompareResult, Point, SummaryRow, summarize_rows
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
    headers = [
        "server",
        "path",
        f"req/s @{high}",
        f"p50 @{low} ms",
        f"p99 @{high} ms",
        "+p50 vs ORT us",
        "req/s vs ORT",
        "p50 vs ORT",
        "req/s vs MLServer",
        "p99 vs MLServer",
        "errors",
    ]
    body = [
        [
            row.server,
            row.path,
            _num(row.throughput_rps, ".0f"),
            _num(row.p50_ms, ".3f"),
            _num(row.p99_ms, ".3f"),
            _num(row.added_latency_us, ".0f"),
            _ratio(row.throughput_vs_floor),
            _ratio(row.p50_vs_floor),
            _ratio(row.throughput_vs_mlserver)
            + (
                f" ({row.mlserver_counterpart})"
                if row.mlserver_counterpart not in (None, row.path)
                else ""
            ),
            _ratio(row.p99_vs_mlserver),
            str(row.errors),
        ]
        for row in rows
    ]
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
    for server, notes in meta.get("server_notes", {}).items():
        parts.append(f"{server}: " + "; ".join(notes))
    for skip in result.skipped:
        reason = skip["reason"].splitlines()[0] if skip["reason"] else ""
        parts.append(f"skipped {skip['server']} {skip['path']} ({skip.get('kind')}): {reason}")
    parts.extend(run_notes((p.server, p.path, p.median) for p in result.points if p.runs))
    return "\n".join(parts)


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
        "summary": [row.__dict__ for row in result.rows],
        "points": [
            {
                "server": p.server,
                "path": p.path,
                "concurrency": p.concurrency,
                "median": p.median.to_json(),
                "runs": [r.to_json() for r in p.runs],
            }
            for p in result.points
            if p.runs
        ],
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
    colors: Callable[[int], Any] = plt.get_cmap("tab10")
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
