"""The request path's hand-off of prediction records to the journal.

A request answered in async mode leaves its record here without waiting: what the payload needs
(the version's payload template, the tensors, the request id, latency and routing), its actor
and its request id. The records left during one event-loop pass go to the journal at the end of
that pass (one `call_soon`, then one `extend_nowait`: one lock, one clock reading, one wake-up
at most), instead of each taking the journal's lock and building its entry between the steps
of its request. The payload is made by the journal's writer thread when its tensors are small
(`deferrable`), else here, so that the queue never holds large tensors.

Back-pressure, as the journal's `when_full` says: a record is left for the pass only while the
journal has room for it and for those already left (`Journal.room`). Otherwise, and in durable
mode, the request appends through `Journal.append` and waits (for room, or for its record to
be on disk) or is refused with JournalFull. A record left for the pass is written unless the
journal stops before the pass ends (closed, or its writer failed): such records, whose
requests were answered, are logged as lost, as async mode loses what a crash finds queued.

Threads: event loop only (the pending list is the loop's own).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from time import perf_counter_ns
from typing import Any

from gateway.governance.access import PRINCIPAL
from gateway.governance.journal import Deferred, Journal, JournalClosed, made_payload
from gateway.governance.ledger import PREDICTIONS
from gateway.governance.predictions import deferrable
from gateway.governance.records import check_name
from gateway.loading import LoadedVersion
from gateway.protocol.types import InferRequest, InferResponse

logger = logging.getLogger(__name__)

KIND = "prediction"


@functools.lru_cache(maxsize=4096)  # actors are principals: few, but not bounded by the code
def _checked_actor(actor: str) -> str:
    """`actor`, once the journal would take it (raises ValueError otherwise): checked in the
    request, so that one bad name cannot make the journal refuse a whole pass."""
    check_name("actor", actor)
    return actor


class PredictionRecorder:
    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._pending: list[tuple[str, bytes | Deferred, str]] = []  # (actor, payload, key)

    def record(
        self,
        target: LoadedVersion,
        request: InferRequest,
        response: InferResponse,
        started_ns: int,
        routing: str,
    ) -> Coroutine[Any, Any, object] | None:
        """Record the answer `response` (its id is the request id) that `target` gave.

        None when the record was left for this pass; otherwise the append the request must
        await before it answers (durable mode, or no room in the journal's queue), which
        raises JournalFull or JournalClosed when the request may not be answered. Raises
        ValueError for an actor the journal cannot take."""
        payloads = target.payloads
        inputs = request.inputs if payloads.reads_inputs else ()
        outputs = response.outputs if payloads.reads_outputs else ()
        latency_us = (perf_counter_ns() - started_ns) // 1000
        payload: bytes | Deferred = functools.partial(
            payloads.encode, inputs, outputs, response.id, latency_us, routing
        )
        if not deferrable((*inputs, *outputs)):
            payload = made_payload(payload, PREDICTIONS, KIND)
        actor = _checked_actor(PRINCIPAL.get().actor)
        pending = self._pending
        journal = self._journal
        durable = target.config.record_durable
        key = response.id
        if durable or not journal.room(len(pending) + 1):
            return journal.append(PREDICTIONS, KIND, actor, payload, durable=durable, key=key)
        if not pending:
            asyncio.get_running_loop().call_soon(self._hand_over)
        pending.append((actor, payload, key))
        return None

    def _hand_over(self) -> None:
        """End of the pass: queue its records."""
        pending, self._pending = self._pending, []
        try:
            self._journal.extend_nowait(PREDICTIONS, KIND, pending)
        except JournalClosed as error:
            logger.error("%d prediction records of answered requests lost: %s", len(pending), error)
