"""The alert pipeline of one server: every ``evaluate_interval_s``, collect the metric samples,
evaluate the rules and hand the notifications to the dispatcher.

``collect`` is called on the event loop and must be quick (it reads in-memory statistics); a
collector that raises skips that evaluation, logged, and the next one runs as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from gateway.monitoring.alert_config import AlertsConfig
from gateway.monitoring.alerts import Alert, AlertEngine, Sample
from gateway.monitoring.dispatch import Dispatcher, Journal

logger = logging.getLogger(__name__)


class Alerting:
    """Owns the engine, the dispatcher and the evaluation task; `start`, then `close`."""

    def __init__(
        self,
        config: AlertsConfig,
        collect: Callable[[], Iterable[Sample]],
        journal: Journal | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = AlertEngine(config.rules, config.cooldown_s, clock)
        self.dispatcher = Dispatcher(
            [channel.build() for channel in config.channels],
            journal,
            config.retry,
            config.queue_size,
        )
        self._collect = collect
        self._interval_s = config.evaluate_interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.dispatcher.start()
        self._task = asyncio.create_task(self._run())

    def evaluate(self) -> list[Alert]:
        """One evaluation now: the notifications it submitted."""
        alerts = self.engine.evaluate(self._collect())
        self.dispatcher.submit(alerts)
        return alerts

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Stop evaluating, then let the dispatcher drain (see `Dispatcher.close`)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self.dispatcher.close(drain_timeout_s)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                self.evaluate()
            except Exception:  # a broken collector or rule must not end alerting
                logger.exception("alert evaluation failed")
            # a fixed cadence; ticks missed while the loop was busy are skipped, not bunched
            next_at = max(next_at + self._interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
