"""Drives `h2load` (nghttp2's C HTTP/2 load tool) for the gRPC paths: closed loop, one stream
per connection, one thread, a pre-serialized gRPC frame POSTed to
`/inference.GRPCInferenceService/ModelInfer` with `content-type: application/grpc` and
`te: trailers`.

h2load knows HTTP, not gRPC: a gRPC error is still HTTP 200, with the status in trailers h2load
does not read. Two guards make up for that: the caller checks the path with one real gRPC call
first (`clients.check_path`), and after the run every OK reply must account for one full reply
message in the DATA bytes h2load counted (an error reply has no message), so
`ok replies = min(2xx, data_bytes // bytes_per_reply)`. Latency percentiles come from h2load's
per-request log (`--log-file`), through `stats.percentiles`.
h2load's own warm-up (`--warm-up-time`) is not used: its DATA byte count includes warm-up
traffic, which would break the check above; the bench warms up with a separate run instead.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .payloads import GRPC_INFER_METHOD, RequestSet, grpc_frame
from .procs import pin_command, run_tool
from .progress import ProgressLine, summary_line
from .stats import RunResult, summarize

TOOL = "h2load"

_FINISHED = re.compile(r"^finished in ([\d.]+)(us|ms|s),", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_TRAFFIC_DATA = re.compile(r"^traffic: .*?\((\d+)\) data", re.MULTILINE)
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class H2loadReport:
    """h2load's summary. `status_2xx` replies are HTTP-successful; `failed`, `errored` and
    `timeout` are h2load's own counts of requests that did not get a 2xx. `started` can exceed
    `total`: requests still unanswered when the duration ended."""

    duration_s: float
    total: int
    started: int
    status_2xx: int
    failed: int
    errored: int
    timeout: int
    data_bytes: int


def parse_h2load_output(stdout: str) -> H2loadReport:
    """Parse h2load's stdout summary; raises ValueError if a line is missing."""
    finished = _FINISHED.search(stdout)
    requests = _REQUESTS.search(stdout)
    status = _STATUS.search(stdout)
    data = _TRAFFIC_DATA.search(stdout)
    if not (finished and requests and status and data):
        raise ValueError(f"unrecognised h2load output:\n{stdout[-2000:]}")
    return H2loadReport(
        duration_s=float(finished.group(1)) * _UNIT_S[finished.group(2)],
        total=int(requests.group(1)),
        started=int(requests.group(2)),
        status_2xx=int(status.group(1)),
        failed=int(requests.group(5)),
        errored=int(requests.group(6)),
        timeout=int(requests.group(7)),
        data_bytes=int(data.group(1)),
    )


def parse_h2load_log(text: str) -> np.ndarray:
    """Latencies (seconds) of the 2xx requests in an h2load `--log-file`: tab-separated lines of
    start time (us since epoch), HTTP status, elapsed us. Other columns, if a later h2load adds
    them, are ignored; a status of -1 (no reply) is skipped."""
    latencies = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        if 200 <= int(fields[1]) < 300:
            latencies.append(int(fields[2]) * 1e-6)
    return np.asarray(latencies, dtype=np.float64)


def to_result(
    report: H2loadReport, latencies_s: np.ndarray, *, concurrency: int, bytes_per_reply: int
) -> RunResult:
    """Combine summary and log; replies without a full message count as gRPC errors."""
    ok = report.status_2xx
    notes = []
    if bytes_per_reply > 0:
        ok = min(ok, report.data_bytes // bytes_per_reply)
        if ok < report.status_2xx:
            notes.append(
                f"{report.status_2xx - ok} HTTP 2xx replies carried no message (gRPC errors)"
            )
    errors = report.total - ok
    if ok == 0:
        # Requests still unanswered at the end are normally just the last ones in flight; with
        # no good reply at all they are what a stuck server looks like, so count them.
        errors += report.started - report.total
        notes.append(f"no successful reply in {report.duration_s:g} s ({report.started} started)")
    # The log has one line per 2xx reply; if some were gRPC errors we cannot tell which, so the
    # percentiles keep them all (and the note says so).
    result = summarize(
        latencies_s, errors=0, elapsed_s=report.duration_s, concurrency=concurrency, tool=TOOL
    )
    return RunResult(
        concurrency=concurrency,
        duration_s=report.duration_s,
        requests=report.total,
        errors=errors,
        throughput_rps=ok / report.duration_s if report.duration_s > 0 else 0.0,
        latency_ms=result.latency_ms,
        tool=TOOL,
        notes=notes,
    )


def available() -> bool:
    return shutil.which("h2load") is not None


def run_h2load(
    requests: RequestSet,
    base_url: str,
    *,
    concurrency: int,
    duration_s: float,
    bytes_per_reply: int,
    cores: list[int] | None,
    timeout_s: float = 10.0,
    label: str = "",
) -> RunResult:
    """One closed-loop point with h2load; raises RuntimeError if it fails or prints no summary.

    h2load sends one body for every request (it cannot rotate), so the first body is used.
    `bytes_per_reply` is the DATA size of one OK reply, frame header included (from the check).
    """
    seconds = max(1, math.ceil(duration_s))
    progress = ProgressLine(label or requests.path, seconds)
    with tempfile.TemporaryDirectory(prefix="modelgate-h2load-") as tmp:
        frame_file = Path(tmp) / "request.grpc"
        frame_file.write_bytes(grpc_frame(requests.bodies[0]))
        log_file = Path(tmp) / "requests.log"
        command = pin_command(
            [
                "h2load",
                "-t1",
                f"-c{concurrency}",
                "-m1",
                f"-D{seconds}",
                f"-N{max(1, math.ceil(timeout_s))}",
                "-d",
                str(frame_file),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                f"--log-file={log_file}",
                base_url + GRPC_INFER_METHOD,
            ],
            cores,
        )
        out = run_tool(command, duration_s=seconds, progress=progress)
        if out.returncode != 0:
            raise RuntimeError(f"h2load exited {out.returncode}: {out.stderr.strip()[-1000:]}")
        report = parse_h2load_output(out.stdout)
        latencies = parse_h2load_log(log_file.read_text() if log_file.exists() else "")
    result = to_result(report, latencies, concurrency=concurrency, bytes_per_reply=bytes_per_reply)
    progress.close(summary_line(result))
    return result
