"""V2 gRPC against a real gateway on 127.0.0.1: tritonclient.grpc (sync and aio) as clients, and
our generated messages over a raw channel for what tritonclient never sends (typed contents).

tritonclient's messages and ours are different classes for one wire format; a test never mixes
them, it only shares the wire. Every inference answer is compared with a direct onnxruntime
session on the same .onnx file.
"""

from __future__ import annotations

from importlib.metadata import version as package_version

import grpc
import numpy as np
import onnx_models
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
from conftest import (
    assert_same,
    credit_risk_rows,
    identity_values,
    model_file,
    ort_session,
    run_direct,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway._proto import inference_pb2 as pb
from gateway._proto import inference_pb2_grpc as pb_grpc

SERVICE = "inference.GRPCInferenceService"
TIMEOUT_S = 30.0

# The spec's typed-contents field per datatype (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
TYPED_DATATYPES = list(CONTENTS_FIELD)


@pytest.fixture(scope="module")
def client(grpc_address: str):
    client = grpcclient.InferenceServerClient(url=grpc_address)
    yield client
    client.close()


@pytest.fixture(scope="module")
def channel(grpc_address: str):
    with grpc.insecure_channel(grpc_address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(channel)


def typed_input(
    message: pb.ModelInferRequest, name: str, datatype: str, values: np.ndarray
) -> None:
    tensor = message.inputs.add(name=name, datatype=datatype, shape=list(values.shape))
    flat = values.reshape(-1)
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(
        flat.tolist() if datatype != "BYTES" else [bytes(v) for v in flat]
    )


def typed_output(tensor, dtype: np.dtype) -> np.ndarray:
    values = list(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]))
    if tensor.datatype == "BYTES":
        array = np.empty(len(values), dtype=object)
        array[:] = values
    else:
        array = np.array(values, dtype=dtype)
    return array.reshape(list(tensor.shape))


def raw_output(response: pb.ModelInferResponse, name: str, dtype: np.dtype) -> np.ndarray:
    for index, tensor in enumerate(response.outputs):
        if tensor.name == name:
            raw = response.raw_output_contents[index]
            return np.frombuffer(raw, dtype=dtype).reshape(list(tensor.shape))
    raise AssertionError(f"no output {name}")


def _credit_risk_oracle(repository, features: np.ndarray, version: str = "2") -> dict:
    return run_direct(model_file(repository, "credit_risk", version), {"features": features})


def _credit_risk_input(features: np.ndarray) -> grpcclient.InferInput:
    infer_input = grpcclient.InferInput("features", list(features.shape), "FP32")
    infer_input.set_data_from_numpy(features)
    return infer_input


def _assert_credit_risk(label: np.ndarray, probabilities: np.ndarray, expected: dict) -> None:
    np.testing.assert_array_equal(label, expected["label"])
    assert label.dtype == np.int64
    np.testing.assert_allclose(probabilities, expected["probabilities"], rtol=1e-6)


# ---- health and metadata -----------------------------------------------------------------


def test_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()


def test_model_ready(client, stub):
    assert client.is_model_ready("credit_risk")
    assert client.is_model_ready("credit_risk", model_version="1")
    assert not client.is_model_ready("broken")
    assert stub.ModelReady(pb.ModelReadyRequest(name="credit_risk", version="2")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="bad_config")).ready


def test_server_metadata(client):
    metadata = client.get_server_metadata()
    assert metadata.name == "modelgate"
    assert metadata.version == package_version("modelgate")
    assert {"binary_tensor_data", "parameters", "statistics"} <= set(metadata.extensions)


def test_model_metadata(client, repository):
    metadata = client.get_model_metadata("credit_risk")
    assert metadata.name == "credit_risk"
    assert list(metadata.versions) == ["1", "2"]
    assert metadata.platform == "onnxruntime_onnx"
    session_inputs = ort_session(model_file(repository, "credit_risk", "2")).get_inputs()
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (arg.name, "FP32", [-1 if not isinstance(d, int) else d for d in arg.shape])
        for arg in session_inputs
    ]
    assert {(t.name, t.datatype) for t in metadata.outputs} == {
        ("label", "INT64"),
        ("probabilities", "FP32"),
    }
    versioned = client.get_model_metadata("credit_risk", model_version="1")
    assert list(versioned.versions) == ["1"]


# ---- infer: raw (tritonclient) -------------------------------------------------------------


def test_infer_raw_answers_raw(client, repository):
    rng = np.random.default_rng(1100)
    features = credit_risk_rows(rng, 7)
    result = client.infer("credit_risk", [_credit_risk_input(features)])
    response = result.get_response()
    assert response.model_name == "credit_risk"
    assert response.model_version == "2"
    assert len(response.raw_output_contents) == len(response.outputs) == 2
    _assert_credit_risk(
        result.as_numpy("label"),
        result.as_numpy("probabilities"),
        _credit_risk_oracle(repository, features),
    )


@pytest.mark.parametrize("datatype", list(onnx_models.IDENTITY_TYPES))
def test_datatype_round_trip_raw(client, repository, datatype):
    rng = np.random.default_rng(1200 + list(onnx_models.IDENTITY_TYPES).index(datatype))
    values = identity_values(rng, datatype, rows=int(rng.integers(1, 5)))
    model = onnx_models.identity_name(datatype)
    infer_input = grpcclient.InferInput("INPUT", list(values.shape), datatype)
    infer_input.set_data_from_numpy(values)
    result = client.infer(model, [infer_input])
    got = result.as_numpy("OUTPUT")
    feed = values
    if datatype == "BYTES":
        feed = np.vectorize(lambda b: b.decode(), otypes=[object])(values)
    expected = run_direct(model_file(repository, model), {"INPUT": feed})["OUTPUT"]
    assert_same(datatype, got, expected)
    assert_same(datatype, got, values)


def test_requested_outputs_id_and_parameters(client, repository):
    rng = np.random.default_rng(1300)
    features = credit_risk_rows(rng, 4)
    result = client.infer(
        "credit_risk",
        [_credit_risk_input(features)],
        outputs=[grpcclient.InferRequestedOutput("probabilities")],
        request_id="grpc-id-1300",
        parameters={"note": "text", "level": 2, "flag": False},
    )
    response = result.get_response()
    assert response.id == "grpc-id-1300"
    assert [o.name for o in response.outputs] == ["probabilities"]
    expected = _credit_risk_oracle(repository, features)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_versioned_infer(client, repository, version):
    rng = np.random.default_rng(1400 + int(version))
    features = credit_risk_rows(rng, 16)
    result = client.infer("credit_risk", [_credit_risk_input(features)], model_version=version)
    assert result.get_response().model_version == version
    _assert_credit_risk(
        result.as_numpy("label"),
        result.as_numpy("probabilities"),
        _credit_risk_oracle(repository, features, version),
    )


# ---- infer: typed contents (our messages over a raw channel) --------------------------------


def test_infer_typed_answers_typed(stub, repository):
    rng = np.random.default_rng(1500)
    features = credit_risk_rows(rng, 5)
    request = pb.ModelInferRequest(model_name="credit_risk", id="typed-1500")
    typed_input(request, "features", "FP32", features)
    response = stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert response.id == "typed-1500"
    assert response.model_version == "2"
    assert len(response.raw_output_contents) == 0
    outputs = {t.name: t for t in response.outputs}
    label = typed_output(outputs["label"], np.dtype(np.int64))
    probabilities = typed_output(outputs["probabilities"], np.dtype(np.float32))
    _assert_credit_risk(label, probabilities, _credit_risk_oracle(repository, features))


@pytest.mark.parametrize("datatype", TYPED_DATATYPES)
def test_datatype_round_trip_typed(stub, repository, datatype):
    rng = np.random.default_rng(1600 + TYPED_DATATYPES.index(datatype))
    values = identity_values(rng, datatype, rows=int(rng.integers(1, 5)))
    model = onnx_models.identity_name(datatype)
    request = pb.ModelInferRequest(model_name=model)
    typed_input(request, "INPUT", datatype, values)
    response = stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert len(response.raw_output_contents) == 0
    (tensor,) = response.outputs
    assert tensor.datatype == datatype
    got = typed_output(tensor, values.dtype)
    feed = values
    if datatype == "BYTES":
        feed = np.vectorize(lambda b: b.decode(), otypes=[object])(values)
    expected = run_direct(model_file(repository, model), {"INPUT": feed})["OUTPUT"]
    assert_same(datatype, got, expected)
    assert_same(datatype, got, values)


def test_typed_request_with_fp16_output_answers_raw(stub):
    """FP16 has no typed field, so the answer goes raw (all outputs, as the spec requires)."""
    values = identity_values(np.random.default_rng(1700), "FP16", rows=2)
    request = pb.ModelInferRequest(model_name="identity_fp16")
    request.inputs.add(name="INPUT", datatype="FP16", shape=list(values.shape))
    request.raw_input_contents.append(values.tobytes())
    response = stub.ModelInfer(request, timeout=TIMEOUT_S)
    np.testing.assert_array_equal(raw_output(response, "OUTPUT", np.dtype("<f2")), values)


def test_typed_requested_output_selection(stub, repository):
    rng = np.random.default_rng(1800)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32)
    request = pb.ModelInferRequest(model_name="add_sub")
    typed_input(request, "a", "FP32", a)
    typed_input(request, "b", "FP32", b)
    request.outputs.add(name="difference")
    response = stub.ModelInfer(request, timeout=TIMEOUT_S)
    assert [t.name for t in response.outputs] == ["difference"]
    expected = run_direct(model_file(repository, "add_sub"), {"a": a, "b": b})
    got = typed_output(response.outputs[0], np.dtype(np.float32))
    np.testing.assert_array_equal(got, expected["difference"])


def test_raw_request_with_two_inputs(stub, repository):
    rng = np.random.default_rng(1900)
    a, b = rng.standard_normal((2, 2, 4)).astype(np.float32)
    request = pb.ModelInferRequest(model_name="add_sub", model_version="1")
    for name, values in (("a", a), ("b", b)):
        request.inputs.add(name=name, datatype="FP32", shape=[2, 4])
        request.raw_input_contents.append(values.tobytes())
    response = stub.ModelInfer(request, timeout=TIMEOUT_S)
    expected = run_direct(model_file(repository, "add_sub"), {"a": a, "b": b})
    for name in ("sum", "difference"):
        np.testing.assert_array_equal(raw_output(response, name, np.dtype("<f4")), expected[name])


# ---- statistics and repository index --------------------------------------------------------


def test_statistics_count_requests(client):
    rng = np.random.default_rng(2000)

    def entry():
        (stats,) = client.get_inference_statistics("add_sub", model_version="1").model_stats
        return stats

    before = entry()
    rows = [int(n) for n in rng.integers(1, 5, size=3)]
    for n in rows:
        inputs = [grpcclient.InferInput(name, [n, 4], "FP32") for name in ("a", "b")]
        for infer_input in inputs:
            infer_input.set_data_from_numpy(rng.standard_normal((n, 4)).astype(np.float32))
        client.infer("add_sub", inputs)
    after = entry()
    assert (after.name, after.version) == ("add_sub", "1")
    success = after.inference_stats.success.count - before.inference_stats.success.count
    assert success == len(rows)
    assert after.inference_count - before.inference_count == sum(rows)
    assert 1 <= after.execution_count - before.execution_count <= len(rows)
    assert after.inference_stats.compute_infer.ns > before.inference_stats.compute_infer.ns
    everything = client.get_inference_statistics().model_stats
    assert ("add_sub", "1") in {(s.name, s.version) for s in everything}


def test_statistics_of_unknown_model_is_not_found(client):
    with pytest.raises(grpcclient.InferenceServerException) as raised:
        client.get_inference_statistics("no_such_model")
    assert raised.value.status() == "StatusCode.NOT_FOUND"


def test_repository_index(client, stub):
    index = client.get_model_repository_index().models
    by_key = {(m.name, m.version): m for m in index}
    assert by_key[("credit_risk", "1")].state == "READY"
    assert by_key[("credit_risk", "2")].state == "READY"
    assert by_key[("broken", "1")].state == "UNAVAILABLE"
    assert by_key[("broken", "1")].reason
    ready_only = stub.RepositoryIndex(pb.RepositoryIndexRequest(ready=True)).models
    assert {m.state for m in ready_only} == {"READY"}
    assert ("broken", "1") not in {(m.name, m.version) for m in ready_only}


# ---- grpc.health.v1 and reflection ----------------------------------------------------------


@pytest.mark.parametrize("service", ["", SERVICE])
def test_health_check_serving(channel, service):
    response = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_health_check_unknown_service_is_not_found(channel):
    with pytest.raises(grpc.RpcError) as raised:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT_S
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_inference_service(channel):
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listing, described = list(reflection.ServerReflectionInfo(iter(requests), timeout=TIMEOUT_S))
    names = {s.name for s in listing.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto  # the service is described


# ---- grpc.aio --------------------------------------------------------------------------------


async def test_aio_client(grpc_address, repository):
    rng = np.random.default_rng(2100)
    async with grpcclient_aio.InferenceServerClient(url=grpc_address) as client:
        assert await client.is_server_ready()
        assert await client.is_model_ready("credit_risk")
        features = credit_risk_rows(rng, 6)
        infer_input = grpcclient_aio.InferInput("features", [6, 20], "FP32")
        infer_input.set_data_from_numpy(features)
        result = await client.infer("credit_risk", [infer_input], request_id="aio-2100")
        assert result.get_response().id == "aio-2100"
        _assert_credit_risk(
            result.as_numpy("label"),
            result.as_numpy("probabilities"),
            _credit_risk_oracle(repository, features),
        )
