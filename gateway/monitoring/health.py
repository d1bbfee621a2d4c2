"""Service health per version: how many requests, how many failed and whose fault, how fast.

Counters only count up (event loop only: plain integers, O(1) per request). A `HealthHistory`
keeps snapshots of every version's counters at a fixed period, so the health over the last N
seconds is the difference between now and the snapshot N seconds ago — windows that add, as
the drift sketches' do, with nothing reset on the request path.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from gateway.errors import ErrorKind, InvalidInput
from gateway.lifecycle.outcomes import Outcomes, OutcomeSnapshot

# who is at fault, by error kind: the client (4xx) or the service (5xx)
CLIENT_KINDS = frozenset(
    {
        ErrorKind.NOT_FOUND,
        ErrorKind.INVALID_INPUT,
        ErrorKind.TOO_LARGE,
        ErrorKind.UNAUTHENTICATED,
        ErrorKind.FORBIDDEN,
    }
)
# rejected inputs: the data did not fit the model
DATA_KINDS = frozenset({ErrorKind.INVALID_INPUT, ErrorKind.TOO_LARGE})


@dataclass(slots=True)
class HealthCounts:
    """Cumulative; subtracting two copies gives a window."""

    requests: int = 0
    client_errors: int = 0
    server_errors: int = 0
    data_errors: int = 0
    slow: int = 0  # answered, but slower than the bound
    rows: int = 0
    batch_rows: int = 0  # sum over requests of the rows of the run each was part of
    queue_ns: int = 0

    def minus(self, earlier: HealthCounts) -> HealthCounts:
        return HealthCounts(
            *(getattr(self, f.name) - getattr(earlier, f.name) for f in fields(self))
        )


class Health:
    """One version's counters and latency histogram."""

    __slots__ = ("counts", "latency", "slow_ns")

    def __init__(self, slow_ms: float) -> None:
        self.counts = HealthCounts()
        self.latency = Outcomes()
        self.slow_ns = int(slow_ms * 1e6)

    def answered(self, latency_ns: int, rows: int, batch_rows: int, queue_ns: int) -> None:
        counts = self.counts
        counts.requests += 1
        counts.rows += rows
        counts.batch_rows += batch_rows
        counts.queue_ns += queue_ns
        if latency_ns > self.slow_ns:
            counts.slow += 1
        self.latency.record(True, latency_ns)

    def failed(self, kind: ErrorKind, latency_ns: int) -> None:
        counts = self.counts
        counts.requests += 1
        if kind in CLIENT_KINDS:
            counts.client_errors += 1
            if kind in DATA_KINDS:
                counts.data_errors += 1
        else:
            counts.server_errors += 1
        self.latency.record(False, latency_ns)

    def snapshot(self) -> HealthSnapshot:
        counts = self.counts
        return HealthSnapshot(HealthCounts(*(getattr(counts, f.name) for f in fields(counts))),
                              self.latency.snapshot())  # fmt: skip


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    counts: HealthCounts
    latency: OutcomeSnapshot

    def since(self, earlier: HealthSnapshot, seconds: float) -> dict[str, Any]:
        """The window between `earlier` and this snapshot, `seconds` long, as the API shows it."""
        counts = self.counts.minus(earlier.counts)
        latency = self.latency.since(earlier.latency)
        requests = counts.requests
        answered = requests - counts.client_errors - counts.server_errors

        def share(part: int) -> float:
            return part / requests if requests else 0.0

        return {
            "window_s": round(seconds, 3),
            "requests": requests,
            "rate_per_s": requests / seconds if seconds > 0 else 0.0,
            "client_error_rate": share(counts.client_errors),
            "server_error_rate": share(counts.server_errors),
            "data_error_rate": share(counts.data_errors),
            "errors": {
                "client": counts.client_errors,
                "server": counts.server_errors,
                "data": counts.data_errors,
            },
            "latency_ms": {"p50": latency.p50_ms, "p95": latency.p95_ms, "p99": latency.p99_ms},
            "slow": counts.slow,
            "rows": counts.rows,
            "batch_size_mean": counts.batch_rows / answered if answered else 0.0,
            "queue_ms_mean": counts.queue_ns / answered / 1e6 if answered else 0.0,
        }


Key = tuple[str, str]  # (deployment, version)


class HealthHistory:
    """Snapshots of every version's health every `period_s`, `horizon` of them kept."""

    def __init__(
        self,
        source: Callable[[], Iterable[tuple[Key, Health]]],
        period_s: float = 10.0,
        horizon: int = 360,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self.period_s = period_s
        self._clock = clock
        self._snapshots: deque[tuple[float, dict[Key, HealthSnapshot]]] = deque(maxlen=horizon)
        self.take()

    def take(self) -> None:
        """Record every version's counters now (the server calls this every `period_s`)."""
        now = self._clock()
        self._snapshots.append((now, {key: h.snapshot() for key, h in self._source()}))

    def window(self, key: Key, health: Health, last_s: float) -> dict[str, Any]:
        """The version's health over (about) the last `last_s` seconds: from the newest
        snapshot at least that old (the oldest kept, when none is), to now."""
        now = self._clock()
        start, earlier = self._snapshots[0]
        for taken, snapshots in self._snapshots:
            if taken > now - last_s:
                break
            start, earlier = taken, snapshots
        current = health.snapshot()
        base = earlier.get(key) or _empty(health)
        return current.since(base, now - start)


def _empty(health: Health) -> HealthSnapshot:
    """The snapshot of a version that appeared after the window began: nothing counted."""
    return Health(health.slow_ns / 1e6).snapshot()


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DEFAULT_WINDOW = "5m"


def parse_window(text: str) -> float:
    """`?window=` of the monitoring endpoints: seconds, or a number with s, m, h or d
    (`300`, `5m`, `1h`). Raises InvalidInput."""
    value = text.strip().lower()
    factor = _UNITS.get(value[-1:])
    number = value[:-1] if factor is not None else value
    try:
        seconds = float(number) * (factor or 1.0)
    except ValueError:
        raise InvalidInput(
            f"window must be seconds or a number with s, m, h or d: {text!r}"
        ) from None
    if not 0 < seconds < float("inf"):
        raise InvalidInput(f"window must be a positive duration: {text!r}")
    return seconds
