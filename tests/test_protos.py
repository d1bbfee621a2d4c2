"""The gRPC protocol definition: generated code is fresh, the wire matches tritonclient's, and our
messages live in the private pool ``gateway._proto.POOL``.

tritonclient ships its own generated ``inference.*`` messages (from Triton's grpc_service.proto);
they are the oracle for wire compatibility. Crossing between the two sets of classes always goes
through bytes, as it does on a real connection.
"""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pool, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from gateway._proto import POOL, adopt, inference_pb2, inference_pb2_grpc

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import service_pb2 as triton_pb2  # noqa: E402
from tritonclient.grpc._utils import _get_inference_request  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GENERATE = ROOT / "protos" / "generate.py"
PROTO_PACKAGE_DIR = ROOT / "gateway" / "_proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _load_generate_module():
    spec = importlib.util.spec_from_file_location("modelgate_protos_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _all_messages(file_descriptor) -> list[Descriptor]:
    """Every message of a file, nested ones (map entries included) after their parent."""
    out = []

    def walk(desc: Descriptor) -> None:
        out.append(desc)
        for nested in desc.nested_types:
            walk(nested)

    for top in file_descriptor.message_types_by_name.values():
        walk(top)
    return out


def _assert_no_unknown_fields(msg: Message, path: str = "") -> None:
    """Fail if the parser kept anything it could not map to a field (a number mismatch)."""
    name = path or msg.DESCRIPTOR.full_name
    assert len(UnknownFieldSet(msg)) == 0, f"{name} has unknown fields after parsing"
    for field, value in msg.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                for key, item in value.items():
                    _assert_no_unknown_fields(item, f"{name}.{field.name}[{key!r}]")
        elif field.is_repeated:
            for i, item in enumerate(value):
                _assert_no_unknown_fields(item, f"{name}.{field.name}[{i}]")
        else:
            _assert_no_unknown_fields(value, f"{name}.{field.name}")


def _cross(msg: Message, target_cls: type[Message]) -> Message:
    """Serialize ``msg``, parse it as ``target_cls``, and check nothing was lost or changed."""
    wire = msg.SerializeToString(deterministic=True)
    parsed = target_cls.FromString(wire)
    assert parsed.DESCRIPTOR.full_name == msg.DESCRIPTOR.full_name
    _assert_no_unknown_fields(parsed)
    assert json_format.MessageToDict(parsed, preserving_proto_field_name=True) == (
        json_format.MessageToDict(msg, preserving_proto_field_name=True)
    )
    assert parsed.SerializeToString(deterministic=True) == wire
    return parsed


# --- (a) the committed generated code is what the generator produces ------------------------


def test_generated_code_is_fresh(tmp_path):
    result = subprocess.run(
        [sys.executable, str(GENERATE), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"protos/generate.py failed:\n{result.stderr}"
    fresh_dir = tmp_path / "gateway" / "_proto"
    fresh = {p.name for p in fresh_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    committed = {p.name for p in PROTO_PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    assert "inference_pb2.py" in fresh
    missing = sorted(fresh - committed)
    leftover = sorted(committed - fresh)
    assert not missing, f"generated files not committed: {missing}; run python protos/generate.py"
    assert not leftover, (
        f"generated files without a .proto: {leftover}; run python protos/generate.py"
    )
    for name in sorted(fresh):
        assert (PROTO_PACKAGE_DIR / name).read_bytes() == (fresh_dir / name).read_bytes(), (
            f"gateway/_proto/{name} is stale: run python protos/generate.py"
        )


def test_rewrite_fails_loudly_when_protoc_output_changes_shape():
    generate = _load_generate_module()
    good = (
        "from google.protobuf.internal import builder as _builder\n"
        "# @@protoc_insertion_point(imports)\n"
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(b'')\n"
    )
    rewritten = generate.rewrite_pb2(good, "x_pb2.py")
    assert "_descriptor_pool.Default()" not in rewritten
    assert "DESCRIPTOR = _POOL.AddSerializedFile(b'')" in rewritten
    assert "from gateway._proto import POOL as _POOL\n# @@protoc_insertion_point" in rewritten

    missing = good.replace("_descriptor_pool.Default()", "_descriptor_pool.Other()")
    with pytest.raises(generate.GenerateError, match=r"x_pb2\.py: expected .* found it 0 times"):
        generate.rewrite_pb2(missing, "x_pb2.py")
    doubled = good + good.splitlines(keepends=True)[-1]
    with pytest.raises(generate.GenerateError, match="found it 2 times"):
        generate.rewrite_pb2(doubled, "x_pb2.py")


def test_rewrite_adopts_foreign_imports_only():
    generate = _load_generate_module()
    # protoc's shape: dependency imports come after the insertion point.
    source = (
        "# @@protoc_insertion_point(imports)\n"
        "from google.protobuf import timestamp_pb2 as google_dot_protobuf_dot_timestamp__pb2\n"
        "from gateway._proto import inference_pb2 as gateway_dot___proto_dot_inference__pb2\n"
        "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(b'')\n"
    )
    rewritten = generate.rewrite_pb2(source, "admin_pb2.py")
    assert "_adopt(gateway_dot___proto" not in rewritten
    adopt_line = "_adopt(google_dot_protobuf_dot_timestamp__pb2.DESCRIPTOR)\n"
    assert rewritten.index("import timestamp_pb2") < rewritten.index(adopt_line)
    assert adopt_line + "DESCRIPTOR = _POOL.AddSerializedFile(" in rewritten


def test_adopt_copies_a_foreign_file_once():
    adopt(timestamp_pb2.DESCRIPTOR)
    adopt(timestamp_pb2.DESCRIPTOR)  # idempotent
    assert POOL.FindMessageTypeByName("google.protobuf.Timestamp").file.pool is POOL


# --- (b) wire compatibility with tritonclient ------------------------------------------------


def _field_signature(field: FieldDescriptor) -> tuple:
    if field.message_type is not None:
        type_name = field.message_type.full_name
    elif field.enum_type is not None:
        type_name = field.enum_type.full_name
    else:
        type_name = ""
    oneof = field.containing_oneof.name if field.containing_oneof else None
    return (field.number, field.type, type_name, field.is_repeated, oneof)


@pytest.mark.parametrize(
    "message", _all_messages(inference_pb2.DESCRIPTOR), ids=lambda d: d.full_name
)
def test_message_descriptor_matches_tritonclient(message):
    theirs = triton_pb2.DESCRIPTOR.pool.FindMessageTypeByName(message.full_name)
    ours = {f.name: _field_signature(f) for f in message.fields}
    assert ours == {f.name: _field_signature(f) for f in theirs.fields}
    assert message.GetOptions().map_entry == theirs.GetOptions().map_entry


def test_service_matches_tritonclient():
    ours = inference_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    theirs = triton_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == "inference.GRPCInferenceService"
    expected = {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStatistics",
        "RepositoryIndex",
    }
    assert set(ours.methods_by_name) == expected
    for method in ours.methods:
        other = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name,
            other.output_type.full_name,
        )
        assert not method.client_streaming and not other.client_streaming
        assert not method.server_streaming and not other.server_streaming
    assert hasattr(inference_pb2_grpc, "GRPCInferenceServiceStub")
    assert hasattr(inference_pb2_grpc, "add_GRPCInferenceServiceServicer_to_server")


def _bytes_tensor(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


def test_tritonclient_infer_request_parses_with_ours():
    rng = np.random.default_rng(20240601)
    arrays = {
        "fp32": rng.standard_normal((2, 3)).astype(np.float32),
        "fp16": rng.standard_normal((4,)).astype(np.float16),
        "int64": rng.integers(-(2**40), 2**40, size=(3, 2), dtype=np.int64),
        "uint8": rng.integers(0, 256, size=(5,), dtype=np.uint8),
        "int8": rng.integers(-128, 128, size=(2, 2), dtype=np.int8),
        "bool": rng.random((3,)) < 0.5,
        "bytes": np.array([b"alpha", b"", "\u00e9t\u00e9".encode()], dtype=np.object_),
    }
    datatypes = {
        "fp32": "FP32",
        "fp16": "FP16",
        "int64": "INT64",
        "uint8": "UINT8",
        "int8": "INT8",
        "bool": "BOOL",
        "bytes": "BYTES",
    }
    inputs = []
    for name, array in arrays.items():
        infer_input = grpcclient.InferInput(name, list(array.shape), datatypes[name])
        infer_input.set_data_from_numpy(array)
        inputs.append(infer_input)
    # A per-input parameter, as tritonclient sets for shared memory.
    inputs[0]._get_tensor().parameters["note"].string_param = "per-input"
    outputs = [grpcclient.InferRequestedOutput("probabilities", class_count=3)]
    outputs.append(grpcclient.InferRequestedOutput("label"))
    theirs = _get_inference_request(
        model_name="fraud",
        inputs=inputs,
        model_version="2",
        request_id="req-1",
        outputs=outputs,
        sequence_id=42,  # int64_param, plus bool_param start/end
        sequence_start=True,
        sequence_end=False,
        priority=7,  # uint64_param
        timeout=1500,  # int64_param
        parameters={"tenant": "acme", "explain": True, "top_k": -5, "threshold": 0.25},
    )
    assert {p.WhichOneof("parameter_choice") for p in theirs.parameters.values()} == {
        "bool_param",
        "int64_param",
        "string_param",
        "double_param",
        "uint64_param",
    }

    ours = _cross(theirs, inference_pb2.ModelInferRequest)

    assert isinstance(ours, inference_pb2.ModelInferRequest)
    assert (ours.model_name, ours.model_version, ours.id) == ("fraud", "2", "req-1")
    assert ours.parameters["priority"].uint64_param == 7
    assert ours.parameters["threshold"].double_param == 0.25
    assert ours.parameters["top_k"].int64_param == -5
    assert ours.parameters["sequence_start"].bool_param is True
    assert ours.parameters["tenant"].string_param == "acme"
    assert ours.inputs[0].parameters["note"].string_param == "per-input"
    assert [o.name for o in ours.outputs] == ["probabilities", "label"]
    assert ours.outputs[0].parameters["classification"].int64_param == 3
    assert len(ours.raw_input_contents) == len(arrays)
    for tensor, raw, (name, array) in zip(
        ours.inputs, ours.raw_input_contents, arrays.items(), strict=True
    ):
        assert (tensor.name, tensor.datatype, list(tensor.shape)) == (
            name,
            datatypes[name],
            list(array.shape),
        )
        if name == "bytes":
            assert raw == _bytes_tensor(list(array))
        else:
            decoded = np.frombuffer(raw, dtype=array.dtype).reshape(array.shape)
            np.testing.assert_array_equal(decoded, array)


def test_typed_contents_request_parses_with_ours():
    theirs = triton_pb2.ModelInferRequest(model_name="m")
    contents = {
        "bool_contents": [True, False, True],
        "int_contents": [-(2**31), 0, 2**31 - 1],
        "int64_contents": [-(2**63), 2**63 - 1],
        "uint_contents": [0, 2**32 - 1],
        "uint64_contents": [0, 2**64 - 1],
        "fp32_contents": [1.5, -0.0, float("inf")],
        "fp64_contents": [1e-300, -2.5],
        "bytes_contents": [b"\x00\xff", b"x"],
    }
    for i, (field, values) in enumerate(contents.items()):
        tensor = theirs.inputs.add(name=f"in{i}", datatype="X", shape=[len(values)])
        getattr(tensor.contents, field).extend(values)

    ours = _cross(theirs, inference_pb2.ModelInferRequest)

    for tensor, (field, values) in zip(ours.inputs, contents.items(), strict=True):
        assert list(getattr(tensor.contents, field)) == values


def test_our_infer_response_parses_with_tritonclient():
    rng = np.random.default_rng(7)
    probabilities = rng.random((2, 3)).astype(np.float32)
    labels = np.array([b"fraud", b"ok"], dtype=np.object_)
    flags = np.array([True, False])
    half = rng.standard_normal((2, 2)).astype(np.float16)

    ours = inference_pb2.ModelInferResponse(model_name="fraud", model_version="3", id="req-1")
    ours.parameters["served_by"].string_param = "fraud:3"
    ours.parameters["failover"].bool_param = False
    ours.parameters["queue_us"].int64_param = -1
    ours.parameters["score"].double_param = 0.125
    ours.parameters["rows"].uint64_param = 2**63
    for name, datatype, array, raw in (
        ("probabilities", "FP32", probabilities, probabilities.tobytes()),
        ("label", "BYTES", labels, _bytes_tensor(list(labels))),
        ("flag", "BOOL", flags, flags.tobytes()),
        ("half", "FP16", half, half.tobytes()),
    ):
        tensor = ours.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        tensor.parameters["binary_data"].bool_param = True
        ours.raw_output_contents.append(raw)

    theirs = _cross(ours, triton_pb2.ModelInferResponse)

    result = grpcclient.InferResult(theirs)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probabilities)
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    np.testing.assert_array_equal(result.as_numpy("flag"), flags)
    np.testing.assert_array_equal(result.as_numpy("half"), half)
    assert theirs.parameters["rows"].uint64_param == 2**63
    assert theirs.parameters["score"].double_param == 0.125
    assert result.get_response(as_json=True)["model_version"] == "3"


def test_our_typed_contents_response_parses_with_tritonclient():
    ours = inference_pb2.ModelInferResponse(model_name="m")
    tensor = ours.outputs.add(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"a", b"bc"])
    theirs = _cross(ours, triton_pb2.ModelInferResponse)
    # Not through InferResult.as_numpy: tritonclient 2.73 decodes typed bytes_contents with
    # np.array(..., copy=False), which raises under NumPy 2. Clients get outputs as raw contents.
    assert list(theirs.outputs[0].contents.bytes_contents) == [b"a", b"bc"]


def _duration(count: int, ns: int) -> inference_pb2.StatisticDuration:
    return inference_pb2.StatisticDuration(count=count, ns=ns)


def test_our_statistics_response_parses_with_tritonclient():
    stats = inference_pb2.ModelStatistics(
        name="fraud",
        version="3",
        last_inference=1_717_000_000_123,
        inference_count=640,
        execution_count=10,
        inference_stats=inference_pb2.InferStatistics(
            success=_duration(10, 9_000_000),
            fail=_duration(1, 50_000),
            queue=_duration(10, 700_000),
            compute_input=_duration(10, 100_000),
            compute_infer=_duration(10, 8_000_000),
            compute_output=_duration(10, 200_000),
            cache_hit=_duration(2, 3_000),
            cache_miss=_duration(8, 4_000),
        ),
        batch_stats=[
            inference_pb2.InferBatchStatistics(
                batch_size=64,
                compute_input=_duration(10, 100_000),
                compute_infer=_duration(10, 8_000_000),
                compute_output=_duration(10, 200_000),
            )
        ],
        memory_usage=[inference_pb2.MemoryUsage(type="CPU", id=0, byte_size=2**33)],
    )
    stats.response_stats["0"].CopyFrom(
        inference_pb2.InferResponseStatistics(
            compute_infer=_duration(1, 1),
            compute_output=_duration(2, 2),
            success=_duration(3, 3),
            fail=_duration(4, 4),
            empty_response=_duration(5, 5),
            cancel=_duration(6, 6),
        )
    )
    ours = inference_pb2.ModelStatisticsResponse(model_stats=[stats, stats])

    theirs = _cross(ours, triton_pb2.ModelStatisticsResponse)

    got = theirs.model_stats[0]
    assert (got.name, got.version, got.inference_count, got.execution_count) == (
        "fraud",
        "3",
        640,
        10,
    )
    assert got.inference_stats.cache_miss.ns == 4_000
    assert got.batch_stats[0].batch_size == 64
    assert got.memory_usage[0].byte_size == 2**33
    assert got.response_stats["0"].cancel.count == 6


def test_repository_index_and_health_messages_cross_both_ways():
    index = inference_pb2.RepositoryIndexResponse()
    index.models.add(name="fraud", version="3", state="READY", reason="")
    index.models.add(name="fraud", version="4", state="UNAVAILABLE", reason="warm-up failed")
    got = _cross(index, triton_pb2.RepositoryIndexResponse)
    assert [m.state for m in got.models] == ["READY", "UNAVAILABLE"]

    _cross(
        triton_pb2.RepositoryIndexRequest(repository_name="", ready=True),
        inference_pb2.RepositoryIndexRequest,
    )
    _cross(
        triton_pb2.ModelStatisticsRequest(name="fraud", version="3"),
        inference_pb2.ModelStatisticsRequest,
    )
    _cross(triton_pb2.ModelReadyRequest(name="fraud", version="3"), inference_pb2.ModelReadyRequest)
    _cross(inference_pb2.ModelReadyResponse(ready=True), triton_pb2.ModelReadyResponse)
    _cross(inference_pb2.ServerLiveResponse(live=True), triton_pb2.ServerLiveResponse)
    _cross(inference_pb2.ServerReadyResponse(ready=True), triton_pb2.ServerReadyResponse)
    _cross(
        inference_pb2.ServerMetadataResponse(
            name="modelgate", version="0.1.0", extensions=["statistics", "model_repository"]
        ),
        triton_pb2.ServerMetadataResponse,
    )
    metadata = inference_pb2.ModelMetadataResponse(
        name="fraud", versions=["3", "4"], platform="onnxruntime_onnx"
    )
    metadata.inputs.add(name="x", datatype="FP32", shape=[-1, 30])
    metadata.outputs.add(name="p", datatype="FP32", shape=[-1, 2])
    _cross(metadata, triton_pb2.ModelMetadataResponse)


# --- (c) our messages live in the private pool ------------------------------------------------


@pytest.mark.parametrize(
    "message", _all_messages(inference_pb2.DESCRIPTOR), ids=lambda d: d.full_name
)
def test_messages_live_in_private_pool(message):
    assert message.file.pool is POOL
    assert POOL.FindMessageTypeByName(message.full_name) is message


def test_default_pool_holds_tritonclient_not_ours():
    default = descriptor_pool.Default()
    assert POOL is not default
    with pytest.raises(KeyError):
        default.FindFileByName(inference_pb2.DESCRIPTOR.name)
    # tritonclient was imported in this same process without a "duplicate symbol" error, and its
    # definition is the one the default pool knows.
    theirs = default.FindMessageTypeByName("inference.ModelInferRequest")
    assert theirs.file.name != inference_pb2.DESCRIPTOR.name
    assert inference_pb2.ModelInferRequest is not triton_pb2.ModelInferRequest
    assert POOL.FindServiceByName("inference.GRPCInferenceService").file is inference_pb2.DESCRIPTOR
