"""Picks the load generator for a path and runs one closed-loop point with it.

C generators first (wrk for HTTP, h2load for gRPC) so the client is not the bottleneck; the
Python generator where they are missing, or when asked for.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Literal

from . import h2load, pydriver, wrk
from .clients import Endpoint
from .payloads import RequestSet
from .stats import RunResult

ClientMode = Literal["auto", "native", "python"]
CLIENT_MODES: tuple[ClientMode, ...] = ("auto", "native", "python")
PYTHON_WARMUP_S = 0.5


@dataclass(frozen=True)
class Target:
    """Everything a point needs about where it goes: a checked path on one server."""

    requests: RequestSet
    endpoint: Endpoint
    infer_path: str
    bytes_per_reply: int  # DATA bytes of one OK gRPC reply, from the check (h2load's guard)


def tool_for(transport: str, mode: ClientMode) -> str:
    """The generator `measure` will use; raises FileNotFoundError if mode is "native" and the C
    tool is not installed."""
    native, found = (
        ("wrk", wrk.available()) if transport == "http" else ("h2load", h2load.available())
    )
    if mode == "python" or (mode == "auto" and not found):
        return pydriver.TOOL
    if not found:
        raise FileNotFoundError(f"{native} not found (apt-get install wrk nghttp2-client)")
    return native


def measure(
    target: Target,
    *,
    concurrency: int,
    duration_s: float,
    mode: ClientMode,
    client_cores: list[int] | None,
    timeout_s: float,
    label: str,
) -> RunResult:
    """One closed-loop point. The C tools are pinned to `client_cores` themselves; the Python
    generator runs in this process, which the caller has pinned there."""
    tool = tool_for(target.requests.transport, mode)
    if tool == wrk.TOOL:
        return wrk.run_wrk(
            target.requests,
            target.endpoint.http_base,
            target.infer_path,
            concurrency=concurrency,
            duration_s=duration_s,
            cores=client_cores,
            timeout_s=timeout_s,
            label=label,
        )
    if tool == h2load.TOOL:
        return h2load.run_h2load(
            target.requests,
            f"http://{target.endpoint.grpc_target}",
            concurrency=concurrency,
            duration_s=duration_s,
            bytes_per_reply=target.bytes_per_reply,
            cores=client_cores,
            timeout_s=timeout_s,
            label=label,
        )
    return pydriver.run_python(
        target.requests,
        target.endpoint,
        target.infer_path,
        concurrency=concurrency,
        duration_s=duration_s,
        timeout_s=timeout_s,
        # Each Python run starts a fresh client (event loop, connections): warm it, unrecorded.
        warmup_s=PYTHON_WARMUP_S,
        label=label,
    )


def measure_point(
    target: Target,
    *,
    concurrency: int,
    duration_s: float,
    mode: ClientMode,
    client_cores: list[int] | None,
    timeout_s: float,
    label: str,
) -> tuple[RunResult | None, str]:
    """`measure`, with a failed point (tool crash, unparsable output) returned as its reason
    instead of raised: one broken point must not void the others of a comparison."""
    try:
        result = measure(
            target,
            concurrency=concurrency,
            duration_s=duration_s,
            mode=mode,
            client_cores=client_cores,
            timeout_s=timeout_s,
            label=label,
        )
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    return result, ""
