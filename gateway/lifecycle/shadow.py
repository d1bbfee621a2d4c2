"""Shadow traffic: a copy of a request to a version that does not answer the client.

Copies run as their own tasks after the client's answer is encoded, so a shadow never delays or
fails a request. Each shadow version has a bound on copies in flight; past it, copies are
dropped and counted. A copy's outputs are compared with the primary's: classification outputs
(integers, booleans, strings: labels) must be equal, regression outputs (floats) equal within
a tolerance.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.lifecycle.outcomes import Outcomes
from gateway.protocol.validation import CheckedRequest

if TYPE_CHECKING:
    from gateway.lifecycle.registry import VersionEntry

logger = logging.getLogger("modelgate")

PENDING_LIMIT = 64  # copies in flight per shadow version
TOLERANCE = 1e-3  # relative and absolute, for float outputs


@dataclass(slots=True)
class ShadowStats:
    copies: int = 0  # sent
    dropped: int = 0  # not sent: PENDING_LIMIT copies were in flight
    failed: int = 0
    agreed: int = 0
    disagreed: int = 0
    pending: int = 0
    outcomes: Outcomes = field(default_factory=Outcomes)

    def as_dict(self) -> dict[str, Any]:
        compared = self.agreed + self.disagreed
        window = self.outcomes.totals()
        return {
            "copies": self.copies,
            "dropped": self.dropped,
            "failed": self.failed,
            "agreed": self.agreed,
            "disagreed": self.disagreed,
            "agreement": self.agreed / compared if compared else None,
            "pending": self.pending,
            "p50_ms": window.p50_ms,
            "p99_ms": window.p99_ms,
        }


def agree(primary: Sequence[np.ndarray], shadow: Sequence[np.ndarray]) -> bool:
    """Whether a shadow's outputs agree with the primary's (same order, same signature)."""
    labels = [i for i, output in enumerate(primary) if output.dtype.kind not in "fc"]
    if labels:
        return all(np.array_equal(primary[i], shadow[i]) for i in labels)
    return all(
        a.shape == b.shape and np.allclose(a, b, rtol=TOLERANCE, atol=TOLERANCE)
        for a, b in zip(primary, shadow, strict=True)
    )


class ShadowSender:
    """Owns the copies' tasks (a task nobody references may be collected mid-flight)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def send(
        self, shadow: VersionEntry, checked: CheckedRequest, primary: Sequence[np.ndarray]
    ) -> None:
        stats = shadow.shadow
        if stats.pending >= PENDING_LIMIT:
            stats.dropped += 1
            return
        stats.pending += 1
        stats.copies += 1
        shadow.begin()  # now, not in the task: an unload that follows waits for this copy
        task = asyncio.get_running_loop().create_task(self._copy(shadow, checked, primary))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _copy(
        shadow: VersionEntry, checked: CheckedRequest, primary: Sequence[np.ndarray]
    ) -> None:
        stats = shadow.shadow
        started = perf_counter_ns()
        try:
            loaded = shadow.loaded
            assert loaded is not None
            feeds = loaded.backend.adapt(checked.feeds)
            outputs, _ = await loaded.runner.submit(feeds, checked.rows, checked.batch_key)
        except Exception as error:  # a shadow's failure is its own statistic, never the client's
            stats.failed += 1
            stats.outcomes.record(False, perf_counter_ns() - started)
            logger.debug("shadow copy to version %s failed: %s", shadow.version, error)
            return
        finally:
            stats.pending -= 1
            shadow.end()
        stats.outcomes.record(True, perf_counter_ns() - started)
        if agree(primary, outputs):
            stats.agreed += 1
        else:
            stats.disagreed += 1

    async def close(self) -> None:
        """Wait for the copies in flight (at shutdown, after the servers stopped)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
