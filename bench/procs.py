"""Process plumbing: CPU pinning, free ports, running a load tool with a progress line."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .progress import ProgressLine

# How long past its nominal duration a load tool may run before we call it hung.
TOOL_GRACE_S = 30.0
POLL_INTERVAL_S = 0.25


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pin_command(command: Sequence[str], cores: Sequence[int] | None) -> list[str]:
    """Prefix `command` with `taskset -c CORES`; unchanged when `cores` is None or empty.

    Raises FileNotFoundError when pinning is asked for and taskset is missing: an unpinned
    comparison would silently measure something else.
    """
    if not cores:
        return list(command)
    taskset = shutil.which("taskset")
    if taskset is None:
        raise FileNotFoundError("taskset not found (util-linux); pass --no-pin to run unpinned")
    return [taskset, "-c", ",".join(str(c) for c in cores), *command]


@contextlib.contextmanager
def pinned(cores: Sequence[int] | None) -> Iterator[None]:
    """Pin the calling thread (and the threads it starts meanwhile) to `cores` for the duration;
    restore after. Nothing when `cores` is None or empty."""
    if not cores:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the usual bind-to-0 race is accepted for a bench)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ToolOutput:
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float


def run_tool(command: Sequence[str], *, duration_s: float, progress: ProgressLine) -> ToolOutput:
    """Run a load tool to completion, updating `progress` with elapsed time while it runs.

    Raises subprocess.TimeoutExpired (after killing it) if it runs TOOL_GRACE_S past `duration_s`.
    """
    start = time.monotonic()
    with subprocess.Popen(
        list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = start + duration_s + TOOL_GRACE_S
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=POLL_INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if now > deadline:
                    proc.kill()
                    proc.communicate()
                    raise
                progress.update(now - start)
    return ToolOutput(proc.returncode, stdout, stderr, time.monotonic() - start)
