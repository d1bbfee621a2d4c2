"""The one-line progress display of a running load point (stderr, so stdout stays the report)."""

from __future__ import annotations

import sys
from typing import TextIO

from .stats import RunResult


class ProgressLine:
    """Rewrites one line in place on a terminal; elsewhere (CI logs, pipes) stays quiet until
    `close`, which always prints the final line, so logs get one line per point, not hundreds."""

    def __init__(self, label: str, duration_s: float, stream: TextIO | None = None) -> None:
        self._label = label
        self._duration_s = duration_s
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._width = 0

    def update(
        self, elapsed_s: float, completed: int | None = None, errors: int | None = None
    ) -> None:
        if not self._live:
            return
        text = f"{self._label}  {min(elapsed_s, self._duration_s):5.1f}/{self._duration_s:g} s"
        if completed is not None and elapsed_s > 0:
            text += f"  {completed} ok  {completed / elapsed_s:8.0f} req/s"
        if errors:
            text += f"  {errors} errors"
        self._write(text)

    def close(self, summary: str) -> None:
        self._write(f"{self._label}  {summary}")
        self._stream.write("\n")
        self._stream.flush()
        self._width = 0

    def _write(self, text: str) -> None:
        pad = max(0, self._width - len(text))
        prefix = "\r" if self._live else ""
        self._stream.write(prefix + text + " " * pad)
        self._stream.flush()
        self._width = len(text)


def summary_line(result: RunResult) -> str:
    """Throughput, p50, p99 and errors of a finished point, for its final progress line."""
    text = f"{result.throughput_rps:8.0f} req/s"
    if result.latency_ms:
        text += f"  p50 {result.latency_ms['p50']:.3f} ms  p99 {result.latency_ms['p99']:.3f} ms"
    if result.errors:
        text += f"  {result.errors} errors"
    return text
