"""Alert delivery off the request path: routing by severity, retries with back-off, the journal.

`Dispatcher.submit` never blocks and never raises for delivery problems. Each channel has a
lane: a bounded FIFO queue and one worker task, so a channel that is down (and retrying) never
delays another, and one channel's notifications keep their order (a PagerDuty resolve never
overtakes its trigger). A full lane drops the notification, counts it and journals it.

The journal hook, ``async (kind, payload) -> None``, has a lane of its own and receives:

- ``alert.firing`` / ``alert.resolved``: every submitted notification once, whichever
  channels take it; the payload is `Alert.to_dict`.
- ``alert.delivery_failed``: a channel gave up on a notification (attempts spent, a final
  error, a full lane, or shutdown): ``{"channel", "type", "rule", "state", "severity",
  "dedup_key", "labels", "attempts", "error", "retryable"}``.

All state here is owned by the event loop; nothing crosses into a thread except an
EmailChannel's send (see channels.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import ConfigError
from gateway.monitoring.alerts import Alert
from gateway.monitoring.channels import Channel, DeliveryError

logger = logging.getLogger(__name__)

Journal = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """``[alerts.retry]``: how often and how patiently one notification is attempted."""

    attempts: int = 5  # attempts in all, the first included
    base_s: float = 0.5  # the delay before the first retry; doubled for each one after
    max_s: float = 30.0  # the longest delay

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError("attempts must be >= 1")
        if not 0 < self.base_s <= self.max_s:
            raise ConfigError("retry delays must satisfy 0 < base_s <= max_s")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry` (1 for the first). "Equal jitter": half
        of the capped exponential delay is fixed, half random, so the retries of alerts that
        failed together spread out, yet none comes back at once."""
        ceiling = min(self.max_s, self.base_s * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class ChannelStats:
    """Counters of one channel, for Prometheus (each only grows)."""

    sent: int = 0  # notifications delivered
    failed: int = 0  # notifications given up on after their attempts or on a final error
    retried: int = 0  # attempts after the first
    dropped: int = 0  # notifications never attempted: the lane was full, or shut down


@dataclass
class JournalStats:
    """Counters of the journal lane (each only grows)."""

    written: int = 0  # records the hook accepted
    failed: int = 0  # records the hook raised for
    dropped: int = 0  # records never handed to the hook: the lane was full, or shut down


@dataclass
class _Lane:
    channel: Channel
    queue: asyncio.Queue[Alert]
    stats: ChannelStats


class Dispatcher:
    """Delivers alerts to channels; see the module doc. `start` before the first delivery,
    `close` at shutdown. Raises ValueError for duplicate channel names or a bad queue size."""

    def __init__(
        self,
        channels: Sequence[Channel],
        journal: Journal | None = None,
        retry: RetryPolicy | None = None,
        queue_size: int = 1000,
        rng: random.Random | None = None,
    ) -> None:
        names = [channel.name for channel in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        # Fixed at construction: the lanes, the policy, the hook.
        self._lanes = [_Lane(c, asyncio.Queue(queue_size), ChannelStats()) for c in channels]
        self._journal = journal
        self._retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        # a notification makes one record, plus one per channel that gives up on it
        records = queue_size * (len(channels) + 1)
        self._records: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(records)
        self.journal_stats = JournalStats()
        # Lifetime: the workers between start and close.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False  # close has begun: no new alerts
        self._closed = False  # close has ended: no worker left, not even the journal's

    @property
    def stats(self) -> Mapping[str, ChannelStats]:
        """Live counters by channel name."""
        return {lane.channel.name: lane.stats for lane in self._lanes}

    async def start(self) -> None:
        """Start one worker per channel and one for the journal."""
        workers = [self._deliver_lane(lane) for lane in self._lanes]
        if self._journal is not None:
            workers.append(self._journal_lane(self._journal))
        for worker in workers:
            task = asyncio.create_task(worker)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def submit(self, alerts: Iterable[Alert]) -> None:
        """Queue `alerts` for the journal and for every channel whose min_severity they reach.
        Never blocks: what a full lane (or a closing dispatcher) cannot take is dropped."""
        for alert in alerts:
            self._record(f"alert.{alert.state}", alert.to_dict())
            for lane in self._lanes:
                if alert.severity < lane.channel.min_severity:
                    continue
                if self._closing or lane.queue.full():
                    lane.stats.dropped += 1
                    reason = "shutting down" if self._closing else "queue full"
                    self._failed(lane, alert, 0, reason, retryable=False)
                else:
                    lane.queue.put_nowait(alert)

    async def join(self) -> None:
        """Wait until what was submitted so far is delivered or given up on, and journaled."""
        await asyncio.gather(*(lane.queue.join() for lane in self._lanes))
        await self._records.join()

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Stop taking alerts, let the lanes drain for up to `drain_timeout_s` (retries
        included), then cancel the workers and close the channels. What is still queued or
        in flight then is counted as dropped (and logged, not journaled)."""
        self._closing = True
        try:
            await asyncio.wait_for(self.join(), drain_timeout_s)
        except TimeoutError:
            logger.warning(
                "alert delivery: not drained in %.1f s, dropping the rest", drain_timeout_s
            )
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes:
            lane.stats.dropped += lane.queue.qsize()
            await lane.channel.close()
        self.journal_stats.dropped += self._records.qsize()
        self._closed = True

    # --- workers -------------------------------------------------------------------------

    async def _deliver_lane(self, lane: _Lane) -> None:
        while True:
            alert = await lane.queue.get()
            try:
                await self._deliver(lane, alert)
            except asyncio.CancelledError:  # close gave up on it
                lane.stats.dropped += 1
                raise
            finally:
                lane.queue.task_done()

    async def _deliver(self, lane: _Lane, alert: Alert) -> None:
        channel = lane.channel
        for attempt in range(1, self._retry.attempts + 1):
            try:
                await channel.send(alert)
            except DeliveryError as error:
                if not error.retryable or attempt == self._retry.attempts:
                    lane.stats.failed += 1
                    self._failed(lane, alert, attempt, error.reason, error.retryable)
                    return
                logger.info("alert channel %s: attempt %d failed: %s", channel.name, attempt, error)
                lane.stats.retried += 1
                await asyncio.sleep(self._retry.delay(attempt, self._rng))
            except Exception as error:  # a bug in a channel must not stop its lane
                logger.exception("alert channel %s failed unexpectedly", channel.name)
                lane.stats.failed += 1
                self._failed(lane, alert, attempt, repr(error), retryable=False)
                return
            else:
                lane.stats.sent += 1
                return

    def _failed(
        self, lane: _Lane, alert: Alert, attempts: int, error: str, retryable: bool
    ) -> None:
        channel = lane.channel
        logger.warning(
            "alert channel %s: gave up on %s %s after %d attempts: %s",
            channel.name,
            alert.state,
            alert.rule.name,
            attempts,
            error,
        )
        payload = {
            "channel": channel.name,
            "type": type(channel).__name__,
            "rule": alert.rule.name,
            "state": alert.state,
            "severity": alert.severity.label,
            "dedup_key": alert.dedup_key,
            "labels": dict(sorted(alert.labels.items())),
            "attempts": attempts,
            "error": error,
            "retryable": retryable,
        }
        self._record("alert.delivery_failed", payload)

    def _record(self, kind: str, payload: dict[str, Any]) -> None:
        if self._journal is None:
            return
        if self._closed or self._records.full():
            self.journal_stats.dropped += 1
            logger.warning("alert journal: %s dropped (%s)", kind, payload.get("dedup_key"))
        else:
            self._records.put_nowait((kind, payload))

    async def _journal_lane(self, journal: Journal) -> None:
        while True:
            kind, payload = await self._records.get()
            try:
                await journal(kind, payload)
                self.journal_stats.written += 1
            except Exception:  # a journal outage must not stop alerting
                logger.exception("alert journal hook failed for %s", kind)
                self.journal_stats.failed += 1
            finally:
                self._records.task_done()
