"""gateway.batching.DynamicBatcher with a fake, pure-numpy run function.

The oracle is the run function itself applied to each request alone: batching must be invisible
in the answers. Scheduling is driven by the event loop (requests submitted in one loop pass, or
a few passes apart) and by threading events inside the fake run, never by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

import numpy as np
import pytest

from gateway.batching import (
    FRUITLESS_WAITS,
    PROBE_EVERY,
    QUIET_PASSES_BASE,
    BatchError,
    DynamicBatcher,
    Timing,
)

WIDTH = 5
WAIT_S = 10.0  # bound on any wait for a worker thread; never reached when the code is right


class FakeModel:
    """Row-wise transform of two inputs, recording every run it is given.

    `x` [rows, WIDTH] FP32 and `tag` [rows] INT64 -> (x * 3 + row sum, tag), so every output row
    depends on its input row only. Runs whose `x` holds `poison` raise."""

    def __init__(self, poison: float | None = None) -> None:
        self.poison = poison
        self.runs: list[dict[str, np.ndarray]] = []  # appended from the worker threads
        self.lock = threading.Lock()
        self.gate: threading.Event | None = None  # when set, runs wait for it
        self.started = threading.Event()

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self.runs.append({k: np.array(v) for k, v in feeds.items()})
        self.started.set()
        if self.gate is not None and not self.gate.wait(WAIT_S):
            raise RuntimeError("the test never opened the gate")
        x = feeds["x"]
        if self.poison is not None and np.any(x == self.poison):
            raise ValueError("poisoned row")
        return [x * 3 + x.sum(axis=1, keepdims=True), feeds["tag"].copy()]

    @staticmethod
    def alone(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The oracle: the same transform on one request."""
        x = feeds["x"]
        return [x * 3 + x.sum(axis=1, keepdims=True), feeds["tag"].copy()]

    @property
    def batch_rows(self) -> list[int]:
        return [len(run["x"]) for run in self.runs]


def make_batcher(model: FakeModel, **options) -> tuple[DynamicBatcher, list[Timing]]:
    batches: list[Timing] = []
    settings = {
        "max_batch_size": 8,
        "max_queue_delay_ns": 0,
        "adaptive_wait": False,
        "instances": 1,
        **options,
    }
    batcher = DynamicBatcher(model, name="test", on_batch=batches.append, **settings)
    return batcher, batches


def request(rng: np.random.Generator, rows: int, tag: int = 0) -> dict[str, np.ndarray]:
    return {
        "x": rng.standard_normal((rows, WIDTH)).astype(np.float32),
        "tag": np.full(rows, tag, dtype=np.int64),
    }


async def loop_passes(count: int) -> None:
    """Let the event loop run `count` passes of ready callbacks (no time passes)."""
    loop = asyncio.get_running_loop()
    for _ in range(count):
        turned = loop.create_future()
        loop.call_soon(turned.set_result, None)
        await turned


def assert_outputs(got: list[np.ndarray], feeds: Mapping[str, np.ndarray]) -> None:
    expected = FakeModel.alone(feeds)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_batch_size", [1, 4, 16])
@pytest.mark.parametrize("delay_ns", [0, 200_000])
@pytest.mark.parametrize("adaptive", [False, True])
async def test_batched_equals_unbatched(seed, max_batch_size, delay_ns, adaptive):
    rng = np.random.default_rng(seed * 100 + max_batch_size)
    model = FakeModel()
    batcher, batches = make_batcher(
        model, max_batch_size=max_batch_size, max_queue_delay_ns=delay_ns, adaptive_wait=adaptive
    )
    payloads = [
        request(rng, int(rng.integers(1, max_batch_size + 1)), tag=i)
        for i in range(int(rng.integers(5, 40)))
    ]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, len(p["x"]), "key") for p in payloads)), WAIT_S
        )
    finally:
        await batcher.close()
    for payload, (outputs, timing) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)
        assert timing.batch_size >= len(payload["x"])
        assert timing.queue_ns >= 0
    assert sum(model.batch_rows) == sum(len(p["x"]) for p in payloads)
    assert all(rows <= max_batch_size for rows in model.batch_rows)
    assert len(batches) == len(model.runs)
    assert sorted(t.batch_size for t in batches) == sorted(model.batch_rows)
    if max_batch_size > 1:
        # submitted in one loop pass, so requests share runs
        assert len(model.runs) < len(payloads)


async def test_requests_with_different_keys_are_never_mixed():
    rng = np.random.default_rng(7)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=64)
    payloads = [
        request(rng, int(rng.integers(1, 4)), tag=int(rng.integers(0, 3))) for _ in range(60)
    ]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, len(p["x"]), int(p["tag"][0])) for p in payloads)),
            WAIT_S,
        )
    finally:
        await batcher.close()
    for run in model.runs:
        assert len(set(run["tag"].tolist())) == 1, run["tag"]
    assert len(model.runs) < len(payloads)
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)


async def test_other_keys_keep_their_order():
    """A request whose key differs waits without losing its place among its own kind."""
    rng = np.random.default_rng(8)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=2)
    payloads = [request(rng, 1, tag=i) for i in range(8)]
    keys = ["a", "b", "a", "a", "b", "a", "b", "b"]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, 1, k) for p, k in zip(payloads, keys, strict=True))),
            WAIT_S,
        )
    finally:
        await batcher.close()
    for key in "ab":
        ran = [int(t) for run in model.runs for t in run["tag"] if keys[int(t)] == key]
        assert ran == [i for i, k in enumerate(keys) if k == key]


async def test_max_batch_size_is_respected():
    rng = np.random.default_rng(9)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=5)
    sizes = [int(n) for n in rng.integers(1, 6, size=50)]
    payloads = [request(rng, n, tag=i) for i, n in enumerate(sizes)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, len(p["x"]), 0) for p in payloads)), WAIT_S
        )
    finally:
        await batcher.close()
    assert max(model.batch_rows) <= 5
    assert sum(model.batch_rows) == sum(sizes)
    assert max(model.batch_rows) > 1


async def test_no_batching_when_max_batch_size_is_zero():
    rng = np.random.default_rng(10)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=0, max_queue_delay_ns=10**9)
    payloads = [request(rng, 2, tag=i) for i in range(6)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, 2, 0) for p in payloads)), WAIT_S
        )
    finally:
        await batcher.close()
    assert model.batch_rows == [2] * len(payloads)
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)


async def test_a_failing_run_fails_only_its_batch():
    rng = np.random.default_rng(11)
    model = FakeModel(poison=1234.0)
    batcher, _ = make_batcher(model, max_batch_size=2)
    payloads = [request(rng, 1, tag=i) for i in range(6)]
    payloads[2]["x"][0, 0] = 1234.0  # batches: [0, 1], [2, 3], [4, 5]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, 1, 0) for p in payloads), return_exceptions=True),
            WAIT_S,
        )
        for index in (2, 3):
            assert isinstance(results[index], BatchError)
            assert "poisoned row" in str(results[index])
        for index in (0, 1, 4, 5):
            assert_outputs(results[index][0], payloads[index])
        # and the batcher keeps working
        later = request(rng, 3, tag=9)
        outputs, _ = await asyncio.wait_for(batcher.submit(later, 3, 0), WAIT_S)
        assert_outputs(outputs, later)
    finally:
        await batcher.close()


async def test_outputs_that_cannot_be_split_fail_the_batch():
    def summed(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return [feeds["x"].sum(keepdims=True)]  # one row whatever the batch: unsplittable

    rng = np.random.default_rng(12)
    batcher, _ = make_batcher(summed, max_batch_size=8)
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.submit(request(rng, 2), 2, 0) for _ in range(3)),
                return_exceptions=True,
            ),
            WAIT_S,
        )
    finally:
        await batcher.close()
    assert all(isinstance(r, BatchError) for r in results), results


async def test_cancelled_requests_are_skipped():
    rng = np.random.default_rng(13)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=16)
    payloads = [request(rng, 1, tag=i) for i in range(5)]
    try:
        futures = [batcher.submit(p, 1, 0) for p in payloads]
        futures[1].cancel()
        futures[3].cancel()
        kept = [futures[i] for i in (0, 2, 4)]
        results = await asyncio.wait_for(asyncio.gather(*kept), WAIT_S)
    finally:
        await batcher.close()
    ran = sorted(int(t) for run in model.runs for t in run["tag"])
    assert ran == [0, 2, 4]
    for index, (outputs, _) in zip((0, 2, 4), results, strict=True):
        assert_outputs(outputs, payloads[index])


async def test_cancelled_head_does_not_hold_the_queue():
    """With a delay, a cancelled request at the head of the queue must not keep the others
    waiting for its deadline."""
    rng = np.random.default_rng(14)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=2, max_queue_delay_ns=60 * 10**9)
    try:
        head = batcher.submit(request(rng, 1, tag=0), 1, 0)
        await loop_passes(3)
        head.cancel()
        payloads = [request(rng, 1, tag=i) for i in (1, 2)]
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, 1, 0) for p in payloads)), WAIT_S
        )
    finally:
        await batcher.close()
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)
    assert model.batch_rows == [2]


async def test_without_delay_a_lone_request_runs_at_once():
    rng = np.random.default_rng(15)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=3, max_queue_delay_ns=0)
    payloads = [request(rng, 1, tag=i) for i in range(3)]
    try:
        first = batcher.submit(payloads[0], 1, 0)
        await loop_passes(3)
        rest = [batcher.submit(p, 1, 0) for p in payloads[1:]]
        await asyncio.wait_for(asyncio.gather(first, *rest), WAIT_S)
    finally:
        await batcher.close()
    assert model.batch_rows[0] == 1  # the first ran before the others came


async def test_a_queue_delay_merges_requests_submitted_within_it():
    """Fixed wait: the head waits (here up to a minute) for others, however quiet the loop; the
    batch goes as soon as it is full."""
    rng = np.random.default_rng(16)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=3, max_queue_delay_ns=60 * 10**9)
    payloads = [request(rng, 1, tag=i) for i in range(3)]
    try:
        futures = [batcher.submit(payloads[0], 1, 0)]
        await loop_passes(3)
        assert not model.started.is_set()  # still waiting for company
        futures.append(batcher.submit(payloads[1], 1, 0))
        await loop_passes(3)
        futures.append(batcher.submit(payloads[2], 1, 0))
        results = await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    finally:
        await batcher.close()
    assert model.batch_rows == [3]
    for payload, (outputs, timing) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)
        assert timing.batch_size == 3


@pytest.mark.parametrize(
    ("adaptive", "delay_ns"),
    [(False, 1_000_000), (True, 60 * 10**9)],
    ids=["fixed-1ms", "adaptive-1min"],
)
async def test_a_lone_request_goes_alone(adaptive, delay_ns):
    """Fixed: a request alone in the queue goes when its delay (1 ms) runs out. Adaptive: with
    a minute of allowed delay, it goes once a few loop passes brought no one (within WAIT_S)."""
    rng = np.random.default_rng(17)
    model = FakeModel()
    batcher, _ = make_batcher(
        model, max_batch_size=64, max_queue_delay_ns=delay_ns, adaptive_wait=adaptive
    )
    payload = request(rng, 2)
    try:
        outputs, timing = await asyncio.wait_for(batcher.submit(payload, 2, 0), WAIT_S)
    finally:
        await batcher.close()
    assert_outputs(outputs, payload)
    assert model.batch_rows == [2]
    assert timing.batch_size == 2


async def submit_spaced(
    batcher: DynamicBatcher, payloads: list[dict[str, np.ndarray]], passes: int
) -> list[asyncio.Future]:
    """Submit `payloads` one by one, `passes` loop passes apart (each sleep(0) is one)."""
    futures = []
    for index, payload in enumerate(payloads):
        for _ in range(passes if index else 0):
            await asyncio.sleep(0)
        futures.append(batcher.submit(payload, 1, 0))
    return futures


async def test_adaptive_wait_holds_while_requests_keep_coming():
    """Requests arriving a loop pass apart (as grpc.aio hands calls over) share one run, for
    longer than the quiet passes that end a wait."""
    rng = np.random.default_rng(31)
    model = FakeModel()
    batcher, _ = make_batcher(
        model, max_batch_size=64, max_queue_delay_ns=60 * 10**9, adaptive_wait=True
    )
    payloads = [request(rng, 1, tag=i) for i in range(3 * QUIET_PASSES_BASE)]
    try:
        futures = await submit_spaced(batcher, payloads, 1)
        results = await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    finally:
        await batcher.close()
    assert model.batch_rows == [len(payloads)]
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)


async def test_adaptive_wait_learns_how_long_waiting_pays():
    """A wait that gained a request doubles the quiet passes the next one allows (8 -> 16), so
    requests twelve passes apart then merge; waits that gain nothing halve it, down to the base
    (8); FRUITLESS_WAITS of them in a row at the base stop waiting, but for a probe every
    PROBE_EVERY dispatches, which finds requests a pass apart again. Each phase starts with no
    run in progress."""
    rng = np.random.default_rng(32)
    model = FakeModel()
    batcher, _ = make_batcher(
        model, max_batch_size=8, max_queue_delay_ns=60 * 10**9, adaptive_wait=True
    )

    async def phase(count: int, passes: int) -> list[int]:
        runs = len(model.runs)
        futures = await submit_spaced(batcher, [request(rng, 1) for _ in range(count)], passes)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
        return model.batch_rows[runs:]

    try:
        assert await phase(3, 1) == [3]  # a pass apart: one run, and the wait gained: 8 -> 16
        assert await phase(2, 12) == [2]  # merged by the longer wait: 16 -> 32
        for _ in range(2):  # lone waits: 32 -> 16 -> 8
            assert await phase(1, 0) == [1]
        assert await phase(2, 12) == [1, 1]  # at the base: apart, two fruitless waits
        assert await phase(2, 1) == [2]  # a gain: 8 -> 16, and the fruitless count restarts
        for _ in range(FRUITLESS_WAITS):  # 16 -> 8, then one short of stopping
            assert await phase(1, 0) == [1]
        assert await phase(2, 1) == [2]  # still waiting: 8 -> 16
        for _ in range(1 + FRUITLESS_WAITS):  # 16 -> 8, then enough to stop
            assert await phase(1, 0) == [1]
        # no more waiting: a lone request, then pairs a pass apart; the probe falls on the
        # fourth pair's first request (each request is one dispatch)
        assert await phase(1, 0) == [1]
        pairs = [await phase(2, 1) for _ in range(PROBE_EVERY // 2)]
    finally:
        await batcher.close()
    assert pairs == [[1, 1]] * (PROBE_EVERY // 2 - 1) + [[2]]


async def test_adaptive_wait_cut_short_by_a_full_batch_gains_nothing_later():
    """A wait that ends because the batch filled is over: the lone requests after it do not
    count as its gains, so FRUITLESS_WAITS of them stop waiting."""
    rng = np.random.default_rng(34)
    model = FakeModel()
    batcher, _ = make_batcher(
        model, max_batch_size=2, max_queue_delay_ns=60 * 10**9, adaptive_wait=True
    )
    try:
        futures = await submit_spaced(batcher, [request(rng, 1) for _ in range(2)], 1)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
        for _ in range(FRUITLESS_WAITS):
            await asyncio.wait_for(batcher.submit(request(rng, 1), 1, 0), WAIT_S)
        futures = await submit_spaced(batcher, [request(rng, 1) for _ in range(2)], 1)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    finally:
        await batcher.close()
    assert model.batch_rows == [2] + [1] * FRUITLESS_WAITS + [1, 1]


async def test_adaptive_wait_ends_at_the_delay():
    """Requests that never stop coming (one every loop pass for 200 ms) hold the head no longer
    than the delay (1 ms): they make several runs, not one."""
    rng = np.random.default_rng(33)
    model = FakeModel()
    batcher, _ = make_batcher(
        model, max_batch_size=10**6, max_queue_delay_ns=1_000_000, adaptive_wait=True
    )
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.2
    futures = []
    try:
        while loop.time() < end:
            futures.append(batcher.submit(request(rng, 1), 1, 0))
            await loop_passes(1)
        await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
    finally:
        await batcher.close()
    assert len(model.batch_rows) >= 2
    assert sum(model.batch_rows) == len(futures)


async def test_requests_queue_behind_a_busy_instance_and_then_batch():
    rng = np.random.default_rng(18)
    model = FakeModel()
    model.gate = threading.Event()
    batcher, _ = make_batcher(model, max_batch_size=8, instances=1)
    payloads = [request(rng, 1, tag=i) for i in range(5)]
    try:
        first = batcher.submit(payloads[0], 1, 0)
        assert await asyncio.to_thread(model.started.wait, WAIT_S)
        rest = [batcher.submit(p, 1, 0) for p in payloads[1:]]
        model.gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *rest), WAIT_S)
    finally:
        model.gate.set()
        await batcher.close()
    assert model.batch_rows == [1, 4]
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)


async def test_instances_run_in_parallel():
    """Two instances: two runs of different keys must be inside the model at the same time
    (the barrier breaks, failing both, if they are not)."""
    rng = np.random.default_rng(19)
    barrier = threading.Barrier(2, timeout=WAIT_S)

    def meet(feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        barrier.wait()
        return FakeModel.alone(feeds)

    batcher, _ = make_batcher(meet, max_batch_size=8, instances=2)
    payloads = [request(rng, 2, tag=0), request(rng, 2, tag=1)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit(p, 2, i) for i, p in enumerate(payloads))),
            2 * WAIT_S,
        )
    finally:
        await batcher.close()
    for payload, (outputs, _) in zip(payloads, results, strict=True):
        assert_outputs(outputs, payload)


async def test_close_fails_what_waits_in_the_queue():
    rng = np.random.default_rng(20)
    model = FakeModel()
    batcher, _ = make_batcher(model, max_batch_size=64, max_queue_delay_ns=60 * 10**9)
    futures = [batcher.submit(request(rng, 1), 1, 0) for _ in range(3)]
    await loop_passes(3)
    await asyncio.wait_for(batcher.close(), WAIT_S)
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT_S)
    assert all(isinstance(r, BatchError) for r in results), results
    assert model.runs == []


async def test_close_drains_a_running_batch():
    """close() lets the running batch finish; nothing submitted before it is left pending."""
    rng = np.random.default_rng(21)
    model = FakeModel()
    model.gate = threading.Event()
    batcher, _ = make_batcher(model, max_batch_size=8)
    running_payload = request(rng, 2, tag=0)
    running = batcher.submit(running_payload, 2, 0)
    assert await asyncio.to_thread(model.started.wait, WAIT_S)
    queued = [batcher.submit(request(rng, 1, tag=i), 1, 0) for i in (1, 2)]
    closing = asyncio.ensure_future(batcher.close())
    await loop_passes(3)
    assert not closing.done()  # waiting for the running batch
    model.gate.set()
    await asyncio.wait_for(closing, WAIT_S)
    outputs, _ = await asyncio.wait_for(running, WAIT_S)
    assert_outputs(outputs, running_payload)
    results = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), WAIT_S)
    for result in results:  # each either ran or was refused, never left hanging
        assert isinstance(result, BatchError | tuple)


async def test_an_observer_sees_every_run_and_cannot_fail_one() -> None:
    model = FakeModel(poison=99.0)
    batcher, _ = make_batcher(model)
    seen: list[tuple[dict[str, np.ndarray], list[np.ndarray]]] = []
    observed = threading.Event()

    def observer(feeds: Mapping[str, np.ndarray], outputs: list[np.ndarray]) -> None:
        seen.append(({k: np.array(v) for k, v in feeds.items()}, [np.array(o) for o in outputs]))
        observed.set()
        raise RuntimeError("a broken observer")

    rng = np.random.default_rng(7)
    first = request(rng, 2)
    await batcher.submit(first, 2, "k")  # before observe: not seen
    batcher.observe(observer)
    second = request(rng, 3)
    await batcher.submit(second, 3, "k")
    assert await asyncio.to_thread(observed.wait, WAIT_S)
    poisoned = request(rng, 1)
    poisoned["x"][0, 0] = 99.0
    with pytest.raises(BatchError):
        await batcher.submit(poisoned, 1, "k")  # a failed run is not observed
    third = request(rng, 1)
    assert len((await batcher.submit(third, 1, "k"))[0]) == 2  # the worker still runs
    await batcher.close()
    assert len(seen) == 2
    np.testing.assert_array_equal(seen[0][0]["x"], second["x"])
    for got, expected in zip(seen[0][1], FakeModel.alone(second), strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(seen[1][0]["x"], third["x"])
