"""The request path's hand-off of prediction records: one journal call per event-loop pass,
back-pressure through `append` when the queue has no room, durable records awaited, and what
happens to a pass's records when the journal stops before the pass ends."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.config import ModelConfig
from gateway.governance import records
from gateway.governance.access import PRINCIPAL
from gateway.governance.journal import Appended, Journal, JournalClosed, JournalFull, JournalOptions
from gateway.governance.ledger import PREDICTIONS
from gateway.governance.predictions import DEFER_MAX_BYTES, PredictionPayloads
from gateway.governance.rbac import Principal, Role
from gateway.governance.recorder import PredictionRecorder
from gateway.protocol.types import InferInput, InferOutput, InferRequest, InferResponse


class _Version:
    """What the recorder reads of a loaded version: its payload template and its config."""

    def __init__(self, durable: bool = False) -> None:
        self.payloads = PredictionPayloads("m", "1", "c" * 64, "p", "digest", 0.0)
        self.config = ModelConfig(record_durable=durable)


def _answer(i: int, columns: int = 3) -> tuple[InferRequest, InferResponse]:
    rows = np.full((1, columns), i, dtype=np.float32)
    request = InferRequest([InferInput("x", "FP32", rows)], id=f"r-{i}")
    response = InferResponse("m", "1", [InferOutput("y", "FP32", rows)], id=f"r-{i}")
    return request, response


def _record(recorder: PredictionRecorder, version: Any, i: int, columns: int = 3) -> Any:
    request, response = _answer(i, columns)
    return recorder.record(version, request, response, 0, "weight")


class _Gate:
    """on_append that holds the writer inside its first commit until released; keeps keys."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.keys: list[str] = []

    def __call__(self, appended: Appended) -> None:
        self.keys.extend(appended.keys)
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(10)


async def _next_pass() -> None:
    await asyncio.sleep(0)  # a yield to the loop: the pass's call_soon callbacks run


def _payloads(root: Path) -> list[dict[str, Any]]:
    with Journal.open(root) as journal:
        return [r.payload for r in journal.read(PREDICTIONS)]


async def test_a_pass_hands_its_records_over_at_its_end_with_one_time(tmp_path: Path) -> None:
    gate = _Gate()
    gate.release.set()
    journal = Journal.open(tmp_path, on_append=gate)
    recorder = PredictionRecorder(journal)
    version = _Version()
    assert all(_record(recorder, version, i) is None for i in range(3))
    assert journal.stats().queued == 0  # still the request's pass
    await _next_pass()
    assert journal.stats().queued + journal.stats().in_flight + journal.stats().records == 3
    await journal.aclose()
    with Journal.open(tmp_path) as reopened:
        records = list(reopened.read(PREDICTIONS))
    assert [r.payload["request_id"] for r in records] == ["r-0", "r-1", "r-2"]
    assert len({r.time_ns for r in records}) == 1
    assert gate.keys == ["r-0", "r-1", "r-2"]  # the index needs no payload decoded
    assert all(len(r.payload["input_digest"]) == 64 for r in records)


async def test_large_inputs_are_encoded_in_the_request_not_held_in_the_queue(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path)
    recorder = PredictionRecorder(journal)
    assert _record(recorder, _Version(), 0, columns=DEFER_MAX_BYTES) is None
    (_, payload, _) = recorder._pending[0]
    assert isinstance(payload, bytes)  # made now: the queue keeps bytes, not the tensors
    small = _record(recorder, _Version(), 1)
    assert small is None and callable(recorder._pending[1][1])
    # digest capture reads no outputs: a record does not keep them alive (nor counts them)
    request, response = _answer(2)
    response.outputs[0].data = np.zeros((1, DEFER_MAX_BYTES), dtype=np.float32)
    assert recorder.record(_Version(), request, response, 0, "weight") is None
    deferred = recorder._pending[2][1]
    assert callable(deferred) and deferred.args[:2] == (request.inputs, ())
    await _next_pass()
    await journal.aclose()
    assert [p["request_id"] for p in _payloads(tmp_path)] == ["r-0", "r-1", "r-2"]


@pytest.mark.parametrize("when_full", ["wait", "fail"])
async def test_no_room_goes_through_append_as_when_full_says(
    tmp_path: Path, when_full: str
) -> None:
    gate = _Gate()
    options = JournalOptions(queue_limit=2, async_window_ms=0, when_full=when_full)
    journal = Journal.open(tmp_path, options, on_append=gate)
    recorder = PredictionRecorder(journal)
    version = _Version()
    assert _record(recorder, version, 0) is None
    await _next_pass()
    assert await asyncio.to_thread(gate.entered.wait, 10)  # the writer holds r-0
    assert _record(recorder, version, 1) is None
    assert _record(recorder, version, 2) is None  # the limit, counting this pass's records
    third = _record(recorder, version, 3)
    assert third is not None  # no room: the request must append itself
    await _next_pass()
    assert journal.stats().queued == 2
    if when_full == "fail":
        with pytest.raises(JournalFull):
            await third
        expected = ["r-0", "r-1", "r-2"]
    else:
        waiting = asyncio.ensure_future(third)
        await _next_pass()
        assert not waiting.done() and journal.stats().waiting == 1
        overtaking = _record(recorder, version, 4)
        assert overtaking is not None  # nobody overtakes a waiting request
        overtaking.close()  # its request is not awaited here: no record
        gate.release.set()
        await waiting
        expected = ["r-0", "r-1", "r-2", "r-3"]
    gate.release.set()
    await journal.aclose()
    assert [p["request_id"] for p in _payloads(tmp_path)] == expected


async def test_durable_records_are_awaited_until_committed(tmp_path: Path) -> None:
    gate = _Gate()
    gate.release.set()
    journal = Journal.open(tmp_path, on_append=gate)
    recorder = PredictionRecorder(journal)
    appending = _record(recorder, _Version(durable=True), 7)
    assert appending is not None and recorder._pending == []
    record = await appending
    assert record.seq == 1 and record.payload["request_id"] == "r-7"
    assert gate.keys == ["r-7"]  # keyed like the records of a pass
    await journal.aclose()


async def test_records_of_a_pass_the_journal_did_not_outlive_are_logged_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal.open(tmp_path)
    recorder = PredictionRecorder(journal)
    version = _Version()
    assert _record(recorder, version, 0) is None and _record(recorder, version, 1) is None
    journal.close()  # in the same pass, before the hand-over
    with caplog.at_level(logging.ERROR, logger="gateway.governance.recorder"):
        await _next_pass()
    assert "2 prediction records of answered requests lost" in caplog.text
    with pytest.raises(JournalClosed):  # a closed journal refuses the next request's record
        await _record(recorder, version, 2)


async def test_an_actor_the_journal_cannot_take_fails_its_request_only(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    recorder = PredictionRecorder(journal)
    version = _Version()
    token = PRINCIPAL.set(Principal("x" * 2000, Role.PREDICTOR, kind="ldap"))
    try:
        with pytest.raises(ValueError, match="over 1024"):
            _record(recorder, version, 0)
    finally:
        PRINCIPAL.reset(token)
    assert _record(recorder, version, 1) is None
    await _next_pass()
    await journal.aclose()
    assert [p["request_id"] for p in _payloads(tmp_path)] == ["r-1"]


async def test_a_payload_made_in_the_request_that_cannot_be_journalled_is_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As on the writer thread: an answered request is not failed by its record's payload (full
    capture of large tensors over the size limit); the record says what went wrong."""
    monkeypatch.setattr(records, "MAX_PAYLOAD_BYTES", DEFER_MAX_BYTES)
    journal = Journal.open(tmp_path)
    recorder = PredictionRecorder(journal)
    version = _Version()
    version.payloads = PredictionPayloads("m", "1", "c" * 64, "p", "full", 0.0)
    with caplog.at_level(logging.ERROR, logger="gateway.governance.journal"):
        assert _record(recorder, version, 0, columns=DEFER_MAX_BYTES) is None  # made now
    await _next_pass()
    await journal.aclose()
    (payload,) = _payloads(tmp_path)
    assert payload["payload_error"].startswith("ValueError: the payload encodes to")
    assert "failed; journalled as the error" in caplog.text
