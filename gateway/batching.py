"""Dynamic batching: concurrent requests to one model version merged into one backend run.

Requests with equal batch keys (same input names, dtypes and non-batch dimensions, same parameters)
are concatenated along the batch dimension, run once, and the outputs are sliced back by rows, in
order. With `max_queue_delay_ns` = 0 a batch holds whatever queued while the previous run was busy,
so a lone request never waits; a positive delay lets the head of the queue wait up to that long
for others, in one of two ways:

* fixed (Triton's dynamic batcher): the head waits the whole delay unless the batch fills.
* adaptive (`adaptive_wait`, `_AdaptiveWait`): the head waits only while requests keep coming:
  the batch goes once some event-loop passes in a row bring no new request (or at the delay, or
  when full). How many quiet passes end a wait adapts: QUIET_PASSES_BASE at first, doubled (up
  to QUIET_PASSES_MAX) after a wait that gained a request, halved (down to the base) after one
  that did not; once FRUITLESS_WAITS waits in a row at the base gained nothing, requests stop
  waiting, but for a probe every PROBE_EVERY dispatches that finds out whether waiting pays
  again. A lone request thus goes at once, while under load requests merge even when the
  transport hands them over one per loop pass (grpc.aio does): every run saved is a thread hop
  and a model call less per request.

Threads: the queue, the timers and every future belong to the event loop; `instances` worker
threads take whole batches from a SimpleQueue, run `_execute` (which touches nothing but the
batch handed to it) and hand the results back with one call_soon_threadsafe per batch. That is
about 10 µs cheaper per batch than run_in_executor's pair of chained futures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from time import perf_counter_ns

import numpy as np

logger = logging.getLogger("modelgate")

RunFn = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]
Observer = Callable[[Mapping[str, np.ndarray], list[np.ndarray]], None]
Results = list[tuple[list[np.ndarray], "Timing"]]
QUIET_PASSES_BASE = 8
QUIET_PASSES_MAX = 32
PROBE_EVERY = 8
FRUITLESS_WAITS = 4


class _AdaptiveWait:
    """When the head of the queue stops waiting, in adaptive mode (module doc). Event loop."""

    def __init__(self) -> None:
        self.arrivals = 0  # requests submitted so far (the batcher counts them)
        self._waiting = False
        self._began = 0  # arrivals when the current wait began
        self._seen = 0  # arrivals at the last look
        self._quiet = 0  # passes in a row without an arrival
        self._limit = QUIET_PASSES_BASE  # quiet passes that end a wait; 0: no waiting
        self._fruitless = 0  # waits in a row at the base that gained nothing
        self._unprobed = 0  # dispatches without a wait since the last probe

    def keep_waiting(self) -> bool:
        """Once per loop pass while the head may still wait: whether to wait one more pass.
        The first False ends the wait."""
        if not self._waiting:
            if not self._limit:
                self._unprobed += 1
                if self._unprobed < PROBE_EVERY:
                    return False
                self._unprobed = 0
            self._waiting = True
            self._began = self._seen = self.arrivals
            self._quiet = 0
            return True
        if self.arrivals != self._seen:
            self._seen = self.arrivals
            self._quiet = 0
            return True
        allowed = self._limit or QUIET_PASSES_BASE  # a probe waits the base number
        self._quiet += 1
        if self._quiet < allowed:
            return True
        self._waiting = False
        if self.arrivals > self._began:  # the wait gained someone: worth more
            self._limit = min(2 * allowed, QUIET_PASSES_MAX)
            self._fruitless = 0
        elif allowed > QUIET_PASSES_BASE:
            self._limit = allowed // 2
        else:
            self._fruitless += 1
            if self._fruitless >= FRUITLESS_WAITS:
                self._limit = 0
        return False

    def cut_short(self) -> None:
        """The batch went for another reason (full, the delay ran out)."""
        self._waiting = False


class BatchError(Exception):
    """The backend run failed; every request of the batch receives it."""


@dataclass(slots=True)
class Timing:
    """Nanosecond durations of one request's trip through the batcher."""

    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    batch_size: int = 0  # rows in the run this request was part of


@dataclass(slots=True)
class _Pending:
    feeds: Mapping[str, np.ndarray]
    rows: int
    key: Hashable
    future: asyncio.Future[tuple[list[np.ndarray], Timing]]
    enqueued_ns: int
    deadline: float  # loop time after which it must be dispatched


class DynamicBatcher:
    def __init__(
        self,
        run: RunFn,
        *,
        name: str,
        max_batch_size: int,
        max_queue_delay_ns: int,
        adaptive_wait: bool,
        instances: int,
        on_batch: Callable[[Timing], None],
    ) -> None:
        # set at construction, read-only afterwards
        self._run = run
        self._name = name
        self._observer: Observer | None = None
        self._max_rows = max_batch_size  # 0: one request per run
        self._delay_s = max_queue_delay_ns / 1e9
        # adaptive waits need a delay to spend; without one a lone request never waits anyway
        self._wait = _AdaptiveWait() if adaptive_wait and max_queue_delay_ns else None
        self._instances = instances
        self._on_batch = on_batch
        # crosses threads: batches to the workers (None stops one)
        self._work: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Pending]] | None]
        self._work = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"{name}-{i}", daemon=True)
            for i in range(instances)
        ]
        for worker in self._workers:
            worker.start()
        # event-loop state
        self._queue: deque[_Pending] = deque()
        self._busy = 0  # batches handed to the workers and not finished
        self._drained: asyncio.Future[None] | None = None  # set by close() while batches run
        self._dispatch_scheduled = False
        self._timer: asyncio.TimerHandle | None = None

    def submit(
        self, feeds: Mapping[str, np.ndarray], rows: int, key: Hashable
    ) -> asyncio.Future[tuple[list[np.ndarray], Timing]]:
        """Queue one request; the future gives its outputs (in backend order) and timing, or
        raises BatchError. Cancelling the future drops the request if it has not run yet."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[list[np.ndarray], Timing]] = loop.create_future()
        now = loop.time()
        self._queue.append(
            _Pending(feeds, rows, key, future, perf_counter_ns(), now + self._delay_s)
        )
        if self._wait is not None:
            self._wait.arrivals += 1
        if not self._dispatch_scheduled and self._busy < self._instances:
            # call_soon, not a direct call: requests decoded in this loop pass may join the batch
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        loop = asyncio.get_running_loop()
        while self._queue and self._busy < self._instances:
            head = self._queue[0]
            if head.future.done():  # cancelled by a client that went away
                self._queue.popleft()
                continue
            if self._delay_s and loop.time() < head.deadline and not self._full(head.key):
                if self._wait is None:
                    if self._timer is None:
                        self._timer = loop.call_at(head.deadline, self._on_timer)
                    return
                if self._wait.keep_waiting():
                    self._dispatch_scheduled = True
                    loop.call_soon(self._dispatch)  # look again after the next pass
                    return
            elif self._wait is not None:
                self._wait.cut_short()
            self._busy += 1
            self._work.put((loop, self._take(head.key)))

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _full(self, key: Hashable) -> bool:
        if not self._max_rows:
            return True
        rows = 0
        for pending in self._queue:
            if pending.key == key and not pending.future.done():
                rows += pending.rows
                if rows >= self._max_rows:
                    return True
        return False

    def _take(self, key: Hashable) -> list[_Pending]:
        """Remove and return the oldest queued requests with `key` that fit one batch; requests
        with other keys keep their places."""
        batch: list[_Pending] = []
        kept: deque[_Pending] = deque()
        rows = 0
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():
                continue
            fits = not batch or (self._max_rows and rows + pending.rows <= self._max_rows)
            if pending.key != key or not fits:
                kept.append(pending)
                continue
            batch.append(pending)
            rows += pending.rows
            if not self._max_rows or rows >= self._max_rows:
                break
        kept.extend(self._queue)
        self._queue = kept
        return batch

    def _work_loop(self) -> None:
        """Worker thread body."""
        while (item := self._work.get()) is not None:
            loop, batch = item
            ran: tuple[Mapping[str, np.ndarray], list[np.ndarray]] | None = None
            try:
                results, ran, error = *self._execute(batch), None
            except Exception as failure:  # fails this batch, never the worker
                results = []
                error = failure if isinstance(failure, BatchError) else BatchError(str(failure))
            observer = self._observer  # read before the answers go back: whoever set it sees it
            loop.call_soon_threadsafe(self._finish, batch, results, error)
            if observer is not None and ran is not None:
                # after the answers were handed back: the clients do not wait for it
                try:
                    observer(*ran)
                except Exception:  # an observer's failure is its own, never the batch's
                    logger.exception("the batch observer of %s failed", self._name)

    def observe(self, observer: Observer | None) -> None:
        """Hand every successful run's feeds and outputs to `observer`, in the worker thread
        (e.g. the drift sketches). Set after warm-up, so warm-up samples are not observed."""
        self._observer = observer

    def _execute(
        self, batch: list[_Pending]
    ) -> tuple[Results, tuple[Mapping[str, np.ndarray], list[np.ndarray]]]:
        """Worker thread: concatenate, run, slice back; the results, and the run's feeds and
        outputs. Touches only `batch`."""
        begin = perf_counter_ns()
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {
                name: np.concatenate([p.feeds[name] for p in batch]) for name in batch[0].feeds
            }
        ran = perf_counter_ns()
        outputs = self._run(feeds)
        finished = perf_counter_ns()
        rows = sum(p.rows for p in batch)
        results: Results = []
        if len(batch) == 1:
            parts = [outputs]
        else:
            for output in outputs:
                if output.ndim == 0 or output.shape[0] != rows:
                    raise BatchError(
                        f"an output of shape {list(output.shape)} cannot be split into {rows} rows"
                    )
            offsets = np.cumsum([0] + [p.rows for p in batch])
            parts = [[o[a:b] for o in outputs] for a, b in itertools.pairwise(offsets)]
        sliced = perf_counter_ns()
        for pending, part in zip(batch, parts, strict=True):
            timing = Timing(
                queue_ns=begin - pending.enqueued_ns,
                compute_input_ns=ran - begin,
                compute_infer_ns=finished - ran,
                compute_output_ns=sliced - finished,
                batch_size=rows,
            )
            results.append((part, timing))
        return results, (feeds, outputs)

    def _finish(self, batch: list[_Pending], results: Results, error: BatchError | None) -> None:
        self._busy -= 1
        if error is None:
            self._on_batch(results[0][1])
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)
        else:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
        if self._drained is not None and self._busy == 0:
            self._drained.set_result(None)
        elif self._queue and not self._dispatch_scheduled:  # else a wait looks next pass
            self._dispatch()

    async def close(self) -> None:
        """Let running batches finish, fail what is still queued, and stop the workers."""
        if self._timer is not None:
            self._timer.cancel()
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(BatchError("the model is being unloaded"))
        if self._busy:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            await asyncio.to_thread(worker.join)
