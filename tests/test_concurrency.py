"""Many concurrent requests against a gateway that batches (max_queue_delay_us > 0): every answer
must equal its rows computed alone by a direct onnxruntime session, and the statistics extension
must show that batches really formed (fewer executions than requests).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
import tritonclient.http.aio as httpclient
from conftest import (
    Server,
    copy_credit_risk,
    credit_risk_rows,
    http_request,
    run_direct,
    start_server,
)

REQUESTS = 240
IN_FLIGHT = 48
MAX_ROWS = 8
DELAY_US = 2000
TIMEOUT_S = 60.0
MODEL_CONFIG = f"""
max_batch_size = 64
max_queue_delay_us = {DELAY_US}
instances = 1
warmup_file = "warmup.json"
"""


@pytest.fixture(scope="module")
def batching_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("batching")
    copy_credit_risk(root / "models", config=MODEL_CONFIG)
    with start_server(root / "models", config_dir=root) as server:
        yield server


def _stats(server: Server) -> dict:
    answer = http_request("GET", f"{server.http_url}/v2/models/credit_risk/versions/2/stats")
    assert answer.status == 200, answer.body
    (entry,) = answer.json()["model_stats"]
    return entry


def _payloads(seed: int) -> list[np.ndarray]:
    """REQUESTS requests of 1..MAX_ROWS rows, every row distinct."""
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in rng.integers(1, MAX_ROWS + 1, size=REQUESTS)]
    rows = credit_risk_rows(rng, sum(sizes))
    assert len(np.unique(rows, axis=0)) == len(rows)
    bounds = np.cumsum([0, *sizes])
    return [rows[a:b] for a, b in itertools.pairwise(bounds)]


def _oracle_row_by_row(model: Path, features: np.ndarray) -> dict[str, np.ndarray]:
    """Each row computed alone, as if no other request existed."""
    alone = [run_direct(model, {"features": row[np.newaxis, :]}) for row in features]
    return {name: np.concatenate([a[name] for a in alone]) for name in alone[0]}


async def _run_all(
    payloads: list[np.ndarray],
    infer: Callable[[int, np.ndarray], Awaitable[tuple[np.ndarray, np.ndarray]]],
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """All requests at once, at most IN_FLIGHT outstanding; returns the answers in order and the
    largest number that were in flight together."""
    gate = asyncio.Semaphore(IN_FLIGHT)
    in_flight = peak = 0

    async def one(index: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nonlocal in_flight, peak
        async with gate:
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await infer(index, features)
            finally:
                in_flight -= 1

    answers = await asyncio.wait_for(
        asyncio.gather(*(one(i, p) for i, p in enumerate(payloads))), TIMEOUT_S
    )
    return answers, peak


def _check(server: Server, payloads, answers, peak: int, before: dict, after: dict) -> None:
    assert peak >= 32
    model = server.repository / "credit_risk" / "2" / "model.onnx"
    for features, (label, probabilities) in zip(payloads, answers, strict=True):
        expected = _oracle_row_by_row(model, features)
        np.testing.assert_array_equal(label, expected["label"])
        np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-6, atol=1e-6)
    successes = (
        after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    )
    executions = after["execution_count"] - before["execution_count"]
    assert successes == len(payloads)
    assert after["inference_count"] - before["inference_count"] == sum(len(p) for p in payloads)
    assert 1 <= executions < len(payloads), (executions, len(payloads))
    assert any(b["batch_size"] > MAX_ROWS for b in after["batch_stats"])


async def test_concurrent_grpc(batching_server: Server):
    payloads = _payloads(seed=5000)
    before = _stats(batching_server)
    async with grpcclient.InferenceServerClient(url=batching_server.grpc_address) as client:

        async def infer(index: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            infer_input = grpcclient.InferInput("features", list(features.shape), "FP32")
            infer_input.set_data_from_numpy(features)
            result = await client.infer(
                "credit_risk", [infer_input], request_id=str(index), client_timeout=TIMEOUT_S
            )
            assert result.get_response().id == str(index)
            return result.as_numpy("label"), result.as_numpy("probabilities")

        answers, peak = await _run_all(payloads, infer)
    _check(batching_server, payloads, answers, peak, before, _stats(batching_server))


async def test_concurrent_http(batching_server: Server):
    payloads = _payloads(seed=5001)
    binary = np.random.default_rng(5002).random(len(payloads)) < 0.5
    before = _stats(batching_server)
    async with httpclient.InferenceServerClient(
        url=batching_server.http_address, conn_limit=IN_FLIGHT
    ) as client:

        async def infer(index: int, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            infer_input = httpclient.InferInput("features", list(features.shape), "FP32")
            infer_input.set_data_from_numpy(features, binary_data=bool(binary[index]))
            outputs = [
                httpclient.InferRequestedOutput(name, binary_data=bool(binary[index]))
                for name in ("label", "probabilities")
            ]
            result = await client.infer(
                "credit_risk", [infer_input], outputs=outputs, request_id=str(index)
            )
            assert result.get_response()["id"] == str(index)
            return result.as_numpy("label"), result.as_numpy("probabilities")

        answers, peak = await _run_all(payloads, infer)
    _check(batching_server, payloads, answers, peak, before, _stats(batching_server))
