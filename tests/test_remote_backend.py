"""RemoteBackend against real V2 servers on 127.0.0.1: tritonserver and MLServer (the bench's
peers, each in a venv of its own; Triton's test models in tests/triton_server.py), with a direct
onnxruntime session on the same .onnx as the oracle.

The answers of a remote are decoded by `decode_outputs`, whose typed-contents and malformed-answer
branches no real server here takes; they are checked on hand-built responses at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REMOTE_CREDIT_RISK,
    SLEEPING_S,
    assert_same,
    credit_risk_rows,
    identity_values,
    run_direct,
)
from gateway.bench.peers import RunningServer
from gateway.bench.procs import free_port
from gateway.bench.triton import TritonInstall, TritonServer, add_onnx_model
from tritonclient.grpc import service_pb2

from gateway.backends.onnx import OnnxBackend
from gateway.backends.remote import (
    RECONNECT_BACKOFF_MAX_MS,
    BackendUnavailable,
    RemoteBackend,
    RemoteSpec,
    decode_outputs,
    signature_from_metadata,
)
from gateway.batching import BatchError
from gateway.config import ConfigError, ModelConfig
from gateway.errors import InvalidInput
from gateway.protocol.types import ModelSignature
from gateway.repository import scan

# A dead remote must be noticed at once, not after the deadline: the refused connection is the
# signal. Generous against a loaded CI machine, far below the 5 s default deadline.
PROMPT_S = 1.0


@pytest.fixture(scope="module")
def local_signature() -> ModelSignature:
    """The signature the gateway's own ONNX backend gives the same model file."""
    source = next(
        s
        for s in scan(REMOTE_CREDIT_RISK.parent.parent.parent, ModelConfig())
        if s.model == "credit_risk" and s.model_file == REMOTE_CREDIT_RISK
    )
    backend = OnnxBackend(source.model_file, source.config)
    try:
        return backend.signature
    finally:
        backend.close()


def oracle(features: np.ndarray) -> list[np.ndarray]:
    direct = run_direct(REMOTE_CREDIT_RISK, {"features": features})
    return [direct["label"], direct["probabilities"]]


@pytest.fixture
def killable_triton(triton_install: TritonInstall, tmp_path: Path) -> Iterator[TritonServer]:
    """A tritonserver of the test's own, with credit_risk only, for tests that stop or kill it."""
    root = tmp_path / "repository"
    add_onnx_model(root, "credit_risk", REMOTE_CREDIT_RISK, max_batch_size=0)
    with TritonServer(triton_install, root) as server:
        yield server


# ---- tritonserver ------------------------------------------------------------------------------


async def test_signature_equals_the_local_onnx_backend(
    triton: TritonServer, local_signature: ModelSignature
) -> None:
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk"))
    try:
        assert backend.signature.inputs == local_signature.inputs
        assert backend.signature.outputs == local_signature.outputs
        assert backend.signature.platform == "python"  # the remote's, not ours
        assert backend.max_batch_size == 0
        assert backend.content_id == f"grpc://{triton.grpc_url}/credit_risk/default"
        assert await backend.health()
    finally:
        await backend.close()


async def test_batched_model_reports_its_max_batch_size(
    triton: TritonServer, local_signature: ModelSignature
) -> None:
    spec = RemoteSpec(f"grpc://{triton.grpc_url}", "credit_risk_batched", version="1")
    backend = await RemoteBackend.open(spec)
    try:
        assert backend.max_batch_size == 64
        assert backend.content_id == f"grpc://{triton.grpc_url}/credit_risk_batched/1"
        # Triton cannot declare a batched rank-1 tensor: the label becomes [-1, 1]
        label, probabilities = backend.signature.outputs
        assert label.shape == (-1, 1)
        assert probabilities == local_signature.outputs[1]
        assert backend.signature.inputs == local_signature.inputs
    finally:
        await backend.close()


@pytest.mark.parametrize("rows", [1, 7, 64])
async def test_outputs_equal_local_onnxruntime(triton: TritonServer, rows: int) -> None:
    features = credit_risk_rows(np.random.default_rng(rows), rows)
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk"))
    try:
        feeds = backend.adapt({"features": features})
        outputs, timing = await backend.submit(feeds, rows, key=None)
    finally:
        await backend.close()
    label, probabilities = oracle(features)
    np.testing.assert_array_equal(outputs[0], label)
    assert outputs[0].dtype == label.dtype
    np.testing.assert_allclose(outputs[1], probabilities, rtol=1e-6, atol=1e-7)
    assert timing.batch_size == rows
    assert timing.compute_infer_ns > 0


async def test_concurrent_requests_batched_remotely_equal_the_oracle(
    triton: TritonServer,
) -> None:
    rng = np.random.default_rng(21)
    requests = [credit_risk_rows(rng, int(rng.integers(1, 9))) for _ in range(24)]
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk_batched"))
    try:
        answers = await asyncio.gather(
            *(backend.submit({"features": f}, len(f), key=None) for f in requests)
        )
    finally:
        await backend.close()
    for features, (outputs, _) in zip(requests, answers, strict=True):
        label, probabilities = oracle(features)
        np.testing.assert_array_equal(outputs[0], label.reshape(-1, 1))
        np.testing.assert_allclose(outputs[1], probabilities, rtol=1e-6, atol=1e-7)


async def test_bytes_round_trip(triton: TritonServer) -> None:
    values = identity_values(np.random.default_rng(5), "BYTES", 4)
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "identity_bytes"))
    try:
        outputs, _ = await backend.submit({"INPUT": values}, 4, key=None)
    finally:
        await backend.close()
    assert_same("BYTES", outputs[0], values)
    assert all(isinstance(v, bytes) for v in outputs[0].reshape(-1))


async def test_failing_model_is_a_batch_error(triton: TritonServer) -> None:
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "failing"))
    try:
        with pytest.raises(BatchError, match="this model fails on purpose"):
            await backend.submit({"INPUT": np.ones(3, np.float32)}, 3, key=None)
        assert await backend.health()  # a failed request leaves the model up
    finally:
        await backend.close()


async def test_wrong_input_shape_is_a_batch_error(triton: TritonServer) -> None:
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk"))
    try:
        features = credit_risk_rows(np.random.default_rng(3), 2)[:, :19]
        with pytest.raises(BatchError, match=r"unexpected shape.*Expected \[-1,20\], got \[2,19\]"):
            await backend.submit({"features": features}, 2, key=None)
    finally:
        await backend.close()


async def test_wrong_input_dtype_is_a_batch_error(triton: TritonServer) -> None:
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk"))
    try:
        features = credit_risk_rows(np.random.default_rng(3), 2).astype(np.float64)
        with pytest.raises(BatchError, match="FP64"):
            await backend.submit({"features": features}, 2, key=None)
    finally:
        await backend.close()


async def test_deadline_is_backend_unavailable(triton: TritonServer) -> None:
    timeout_s = SLEEPING_S / 5
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "sleeping", timeout_s=timeout_s))
    try:
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="DEADLINE_EXCEEDED"):
            await backend.submit({"INPUT": np.ones(2, np.float32)}, 2, key=None)
        assert timeout_s * 0.9 <= time.monotonic() - began < SLEEPING_S
    finally:
        await backend.close()


async def test_close_lets_the_call_in_flight_finish(triton: TritonServer) -> None:
    backend = await RemoteBackend.open(RemoteSpec(triton.grpc_url, "sleeping"))
    values = np.arange(3, dtype=np.float32)
    in_flight = asyncio.create_task(backend.submit({"INPUT": values}, 3, key=None))
    await asyncio.sleep(SLEEPING_S / 5)  # let the call leave
    assert not in_flight.done()
    await backend.close()
    assert in_flight.done()
    outputs, _ = in_flight.result()
    np.testing.assert_array_equal(outputs[0], values)
    with pytest.raises(BackendUnavailable, match="closed"):
        await backend.submit({"INPUT": values}, 3, key=None)
    assert not await backend.health()
    await backend.close()  # idempotent


async def test_killed_server_is_unavailable_at_once(
    killable_triton: TritonServer,
) -> None:
    features = credit_risk_rows(np.random.default_rng(8), 3)
    backend = await RemoteBackend.open(RemoteSpec(killable_triton.grpc_url, "credit_risk"))
    try:
        await backend.submit({"features": features}, 3, key=None)  # the channel is connected
        killable_triton.kill()
        began = time.monotonic()
        with pytest.raises(BackendUnavailable, match="UNAVAILABLE"):
            await backend.submit({"features": features}, 3, key=None)
        assert time.monotonic() - began < PROMPT_S
        began = time.monotonic()
        assert not await backend.health()
        assert time.monotonic() - began < PROMPT_S
    finally:
        await backend.close()


async def test_health_comes_back_with_the_server(
    killable_triton: TritonServer,
) -> None:
    """A server back on the same address is found again by the same backend. (That the
    reconnect backoff is capped would take an outage of some 10 s to show: gRPC's own backoff
    is still near 1 s after a short one.)"""
    backend = await RemoteBackend.open(RemoteSpec(killable_triton.grpc_url, "credit_risk"))
    try:
        killable_triton.kill()
        assert not await backend.health()
        await asyncio.to_thread(killable_triton.start, keep_ports=True)
        began = time.monotonic()
        while not await backend.health():
            assert time.monotonic() - began < RECONNECT_BACKOFF_MAX_MS / 1000 + PROMPT_S
            await asyncio.sleep(0.05)
        features = credit_risk_rows(np.random.default_rng(10), 2)
        outputs, _ = await backend.submit({"features": features}, 2, key=None)
        np.testing.assert_array_equal(outputs[0], oracle(features)[0])
    finally:
        await backend.close()


async def test_stopping_server_is_unavailable(
    killable_triton: TritonServer,
) -> None:
    """Triton unloads its models first as it stops: new requests find none (NOT_FOUND)."""
    features = credit_risk_rows(np.random.default_rng(9), 3)
    backend = await RemoteBackend.open(RemoteSpec(killable_triton.grpc_url, "credit_risk"))
    try:
        await asyncio.to_thread(killable_triton.stop)
        with pytest.raises(BackendUnavailable):
            await backend.submit({"features": features}, 3, key=None)
        assert not await backend.health()
    finally:
        await backend.close()


async def test_unreachable_url_at_open() -> None:
    spec = RemoteSpec(f"127.0.0.1:{free_port()}", "credit_risk")
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="UNAVAILABLE"):
        await RemoteBackend.open(spec)
    assert time.monotonic() - began < PROMPT_S


async def test_unknown_model_at_open(triton: TritonServer) -> None:
    with pytest.raises(BackendUnavailable, match="no_such_model"):
        await RemoteBackend.open(RemoteSpec(triton.grpc_url, "no_such_model"))
    with pytest.raises(BackendUnavailable):
        await RemoteBackend.open(RemoteSpec(triton.grpc_url, "credit_risk", version="7"))


# ---- MLServer ----------------------------------------------------------------------------------


async def test_mlserver_serves_like_local_onnxruntime(
    mlserver: RunningServer, local_signature: ModelSignature
) -> None:
    backend = await RemoteBackend.open(
        RemoteSpec(mlserver.spec.endpoint.grpc_target, "credit_risk")
    )
    try:
        assert backend.signature.inputs == local_signature.inputs
        assert backend.signature.outputs == local_signature.outputs
        assert backend.max_batch_size == 0  # MLServer has no model-config RPC
        assert await backend.health()
        features = credit_risk_rows(np.random.default_rng(13), 6)
        outputs, timing = await backend.submit({"features": features}, 6, key=None)
    finally:
        await backend.close()
    label, probabilities = oracle(features)
    # MLServer's NumpyCodec answers a [N] tensor as [N, 1], whatever its metadata says: the
    # backend gives it back as declared
    assert outputs[0].shape == (6,)
    np.testing.assert_array_equal(outputs[0], label)
    np.testing.assert_allclose(outputs[1], probabilities, rtol=1e-6, atol=1e-7)
    assert timing.batch_size == 6


# ---- the parts that need no server -------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8001", "127.0.0.1", "", "grpcs://a:1"])
def test_spec_refuses_urls_it_cannot_dial(url: str) -> None:
    with pytest.raises(ConfigError, match="url"):
        RemoteSpec(url, "m")


def test_spec_checks_model_and_timeout() -> None:
    assert RemoteSpec("grpc://h:1", "m").address == "h:1"
    with pytest.raises(ConfigError, match="model"):
        RemoteSpec("h:1", "")
    with pytest.raises(ConfigError, match="timeout_s"):
        RemoteSpec("h:1", "m", timeout_s=0)


def test_unknown_datatype_in_metadata_is_invalid_input() -> None:
    metadata = service_pb2.ModelMetadataResponse(name="m", platform="p")
    metadata.inputs.add(name="x", datatype="FP8", shape=[-1])
    with pytest.raises(InvalidInput, match="FP8"):
        signature_from_metadata(metadata)


def test_typed_contents_are_decoded() -> None:
    response = service_pb2.ModelInferResponse()
    label = response.outputs.add(name="label", datatype="INT64", shape=[2])
    label.contents.int64_contents.extend([0, 1])
    words = response.outputs.add(name="words", datatype="BYTES", shape=[1, 2])
    words.contents.bytes_contents.extend([b"a", b"\xff"])
    label_out, words_out = decode_outputs(response, ["label", "words"], ["INT64", "BYTES"])
    assert_same("INT64", label_out, np.array([0, 1], dtype=np.int64))
    assert words_out.tolist() == [[b"a", b"\xff"]]


@pytest.mark.parametrize(
    ("datatype", "raw", "message"),
    [
        ("FP32", [b"\x00" * 8], "lacks output 'y'"),
        ("INT32", [b"\x00" * 8], "as INT32, its metadata says FP32"),
        ("FP32", [b"\x00" * 7], "malformed"),
        ("FP32", [], "malformed"),  # no raw, no typed values: 0 elements for shape [2]
    ],
)
def test_malformed_answers_are_batch_errors(datatype: str, raw: list[bytes], message: str) -> None:
    response = service_pb2.ModelInferResponse(raw_output_contents=raw)
    response.outputs.add(name="x", datatype=datatype, shape=[2])
    names = ["x", "y"] if "lacks" in message else ["x"]
    with pytest.raises(BatchError, match=message):
        decode_outputs(response, names, ["FP32"] * len(names))
