"""The Python load generator: closed loop (N requests in flight) and open loop (fixed rate).

Open loop measures each request from its *intended* send time `start + i / rate`, not from when
it actually went out, so a stalled server or a stalled generator shows up as latency instead of
silently lowering the offered rate (no coordinated omission). Sends never wait for replies, except
at `max_in_flight`, and a request held back by that cap is still timed from its intended time.

Time comes from a `Clock`, so tests drive both loops with a fake clock and fake senders.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# A sender performs one request and says whether it succeeded; it must not raise for
# transport-level failures (those are errors to count, not bugs).
Send = Callable[[], Awaitable[bool]]
# Called about once per `PROGRESS_INTERVAL_S` with (elapsed seconds, completed, errors).
Progress = Callable[[float, int, int], None]

PROGRESS_INTERVAL_S = 1.0
# An open-loop send that leaves later than this after its intended time counts as late: a
# generator that is often late is itself the bottleneck, and the report says so.
LATE_THRESHOLD_S = 0.001


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now() >= deadline`, or at once if it already is."""
        ...


class MonotonicClock:
    """The real clock: `time.perf_counter` and the event loop's timers.

    Event-loop timers have millisecond granularity (libuv's and epoll's timeouts) and fire up to
    1 ms late; in open loop that lateness would be charged to the server as latency. So
    `sleep_until` sleeps on a timer until `spin_s` before the deadline and then yields to the loop
    (replies keep being processed) until the deadline passes. That busy-waits the client's core,
    which is the load generator's own.
    """

    def __init__(self, spin_s: float = 0.0015) -> None:
        self._spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.perf_counter()
        if delay > self._spin_s:
            await asyncio.sleep(delay - self._spin_s)
        # Deliberately a spin, not an Event: nothing signals a deadline but the clock itself.
        while time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0)


@dataclass(frozen=True)
class Samples:
    """Raw outcome of one run: latencies (seconds) of the successful requests, in completion
    order; failed requests are only counted. `late_sends` is for open loop only."""

    latencies_s: np.ndarray
    errors: int
    elapsed_s: float
    late_sends: int = 0


class _Recorder:
    """Collects outcomes; lives on one event loop, so it needs no lock."""

    def __init__(self, clock: Clock, start: float, progress: Progress | None) -> None:
        self._clock = clock
        self._start = start
        self._progress = progress
        self._next_tick = start + PROGRESS_INTERVAL_S
        self.latencies: list[float] = []
        self.errors = 0

    def record(self, ok: bool, latency_s: float, now: float) -> None:
        if ok:
            self.latencies.append(latency_s)
        else:
            self.errors += 1
        if self._progress is not None and now >= self._next_tick:
            self._next_tick = now + PROGRESS_INTERVAL_S
            self._progress(now - self._start, len(self.latencies), self.errors)

    def samples(self, end: float, late_sends: int = 0) -> Samples:
        return Samples(
            np.asarray(self.latencies, dtype=np.float64),
            self.errors,
            end - self._start,
            late_sends,
        )


async def closed_loop(
    send: Send,
    *,
    concurrency: int,
    duration_s: float,
    clock: Clock,
    progress: Progress | None = None,
) -> Samples:
    """Keep `concurrency` requests in flight for `duration_s`; each worker sends its next request
    as soon as its previous one completes. Latency is send-to-reply. Requests in flight at the
    deadline are waited for and counted, so `elapsed_s` slightly exceeds `duration_s`."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    start = clock.now()
    deadline = start + duration_s
    recorder = _Recorder(clock, start, progress)

    async def worker() -> None:
        while (sent := clock.now()) < deadline:
            ok = await send()
            done = clock.now()
            recorder.record(ok, done - sent, done)

    # gather holds the references to every worker task until all are done.
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return recorder.samples(clock.now())


def open_loop_schedule(rate: float, duration_s: float) -> np.ndarray:
    """Intended send offsets (seconds from the start) of an open-loop run: i / rate, for the
    floor(rate * duration_s) requests that fit in the duration."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    return np.arange(int(rate * duration_s), dtype=np.float64) / rate


async def open_loop(
    send: Send,
    *,
    rate: float,
    duration_s: float,
    clock: Clock,
    max_in_flight: int,
    progress: Progress | None = None,
) -> Samples:
    """Send at `rate` requests/s for `duration_s`, each timed from its intended send time.

    At most `max_in_flight` requests are outstanding (a bound on client memory, not a throttle to
    hide behind: time spent waiting for a slot counts as latency). Waits for all to complete.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
    offsets = open_loop_schedule(rate, duration_s)
    start = clock.now()
    recorder = _Recorder(clock, start, progress)
    slots = asyncio.Semaphore(max_in_flight)
    # Every in-flight request's task, so none is garbage-collected mid-flight.
    in_flight: set[asyncio.Task[None]] = set()
    late = 0

    async def one(intended: float) -> None:
        try:
            ok = await send()
        finally:
            slots.release()
        done = clock.now()
        recorder.record(ok, done - intended, done)

    for offset in offsets:
        intended = start + float(offset)
        await clock.sleep_until(intended)
        await slots.acquire()
        if clock.now() - intended > LATE_THRESHOLD_S:
            late += 1
        task = asyncio.create_task(one(intended))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.gather(*in_flight)
    return recorder.samples(clock.now(), late)
