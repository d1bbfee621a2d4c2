"""Runs one load point with the Python load generator (the fallback when wrk / h2load are missing,
and the only generator for open-loop runs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from .clients import Endpoint, GrpcSender, HttpSender
from .loadgen import LATE_THRESHOLD_S, MonotonicClock, Samples, closed_loop, open_loop
from .payloads import RequestSet
from .progress import ProgressLine, summary_line
from .stats import RunResult, summarize

TOOL = "python"


def _run(coro: Coroutine[Any, Any, Samples]) -> Samples:
    # uvloop roughly halves the client's per-request cost; plain asyncio still works without it.
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro)


def run_python(
    requests: RequestSet,
    endpoint: Endpoint,
    infer_path: str,
    *,
    concurrency: int,
    duration_s: float,
    rate: float | None = None,
    max_in_flight: int = 1024,
    timeout_s: float = 10.0,
    warmup_s: float = 1.0,
    label: str = "",
) -> RunResult:
    """Closed loop at `concurrency`, or open loop at `rate` req/s when `rate` is given.

    First runs an unrecorded closed loop for `warmup_s` on the same connections: the first
    requests of a fresh client pay for lazy imports, connects and allocator growth (hundreds of
    ms), which an open-loop schedule would otherwise charge to every request queued behind them.
    """
    progress = ProgressLine(label or requests.path, duration_s)
    clock = MonotonicClock()

    sender: HttpSender | GrpcSender
    if requests.transport == "http":
        sender = HttpSender(requests, endpoint.url(infer_path), timeout_s=timeout_s)
    else:
        sender = GrpcSender(requests, endpoint.grpc_target, timeout_s=timeout_s)

    async def go() -> Samples:
        async with sender:
            if warmup_s > 0:
                await closed_loop(
                    sender, concurrency=max(1, concurrency), duration_s=warmup_s, clock=clock
                )
                sender.error_kinds.clear()
            if rate is not None:
                return await open_loop(
                    sender,
                    rate=rate,
                    duration_s=duration_s,
                    clock=clock,
                    max_in_flight=max_in_flight,
                    progress=progress.update,
                )
            return await closed_loop(
                sender,
                concurrency=concurrency,
                duration_s=duration_s,
                clock=clock,
                progress=progress.update,
            )

    samples = _run(go())
    result = summarize(
        samples.latencies_s,
        errors=samples.errors,
        elapsed_s=samples.elapsed_s,
        concurrency=0 if rate is not None else concurrency,
        rate=rate,
        tool=TOOL,
    )
    if sender.error_kinds:
        kinds = ", ".join(f"{kind} x{n}" for kind, n in sender.error_kinds.most_common())
        result.notes.append(f"{requests.path} errors: {kinds}")
    total = samples.latencies_s.size + samples.errors
    if rate is not None and total and samples.late_sends > total // 100:
        # Over 1% late sends: the generator could not keep the schedule; latencies still count
        # from intended times, but the offered load was partly the generator's own queueing.
        result.notes.append(
            f"{samples.late_sends}/{total} sends left > {LATE_THRESHOLD_S * 1e3:g} ms late"
        )
    progress.close(summary_line(result))
    return result
