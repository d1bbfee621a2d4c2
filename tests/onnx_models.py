"""Builders of the small ONNX models the integration tests serve, made with the `onnx` helper API.

Every builder returns the serialized model; `write_test_models` lays them out as a model
repository (`<root>/<model>/1/model.onnx`). Tests compute their expected answers by running the
same file in a direct onnxruntime InferenceSession, never from constants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

# ONNX Runtime accepts any opset up to its own; these are old enough for every recent release.
OPSET = 17
IR_VERSION = 8

# V2 datatype -> (ONNX element type, numpy dtype of the values a test sends)
IDENTITY_TYPES: dict[str, tuple[int, np.dtype]] = {
    "BOOL": (TensorProto.BOOL, np.dtype(np.bool_)),
    "UINT8": (TensorProto.UINT8, np.dtype(np.uint8)),
    "UINT16": (TensorProto.UINT16, np.dtype(np.uint16)),
    "UINT32": (TensorProto.UINT32, np.dtype(np.uint32)),
    "UINT64": (TensorProto.UINT64, np.dtype(np.uint64)),
    "INT8": (TensorProto.INT8, np.dtype(np.int8)),
    "INT16": (TensorProto.INT16, np.dtype(np.int16)),
    "INT32": (TensorProto.INT32, np.dtype(np.int32)),
    "INT64": (TensorProto.INT64, np.dtype(np.int64)),
    "FP16": (TensorProto.FLOAT16, np.dtype(np.float16)),
    "FP32": (TensorProto.FLOAT, np.dtype(np.float32)),
    "FP64": (TensorProto.DOUBLE, np.dtype(np.float64)),
    "BYTES": (TensorProto.STRING, np.dtype(object)),
}

IDENTITY_WIDTH = 3  # identity models take and give [-1, 3]
ADD_SUB_WIDTH = 4
FIXED_SHAPE = (2, 3)


def identity_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_operatorsetid("", OPSET)],
        producer_name="modelgate-tests",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def identity(datatype: str) -> bytes:
    """INPUT [-1, 3] -> OUTPUT = INPUT, of one V2 datatype."""
    element, _ = IDENTITY_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT"], ["OUTPUT"])],
        identity_name(datatype),
        [helper.make_tensor_value_info("INPUT", element, ["batch", IDENTITY_WIDTH])],
        [helper.make_tensor_value_info("OUTPUT", element, ["batch", IDENTITY_WIDTH])],
    )
    return _model(graph)


def add_sub() -> bytes:
    """Two FP32 inputs a, b [-1, 4] -> sum = a + b, difference = a - b (two inputs for the
    binary-extension offsets, two outputs for output selection)."""
    shape = ["batch", ADD_SUB_WIDTH]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Sub", ["a", "b"], ["difference"]),
        ],
        "add_sub",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, shape),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("difference", TensorProto.FLOAT, shape),
        ],
    )
    return _model(graph)


def fixed_shape() -> bytes:
    """x FP32 [2, 3] (no dynamic dimension, so the gateway cannot batch it) -> y = 2x + 1."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["doubled"]),
            helper.make_node("Add", ["doubled", "one"], ["y"]),
        ],
        "fixed_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(FIXED_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(FIXED_SHAPE))],
        initializer=[
            helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    return _model(graph)


def reshape() -> bytes:
    """data FP32 [-1], target INT64 [2] -> Reshape(data, target) [-1, -1].

    Passes validation for any element count, and fails inside ONNX Runtime when the target shape
    does not hold exactly as many elements as `data`: a model failure on demand."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["data", "target"], ["reshaped"])],
        "reshape",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("target", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("reshaped", TensorProto.FLOAT, ["rows", "columns"])],
    )
    return _model(graph)


CREDIT_RISK_WIDTH = 20


def credit_risk_lookalike(fail_above: float) -> bytes:
    """The example credit_risk model's signature (features FP32 [-1, 20] -> label INT64 [-1],
    probabilities FP32 [-1, 2]) with an answer of its own, probabilities = features[:, :2], that
    fails inside ONNX Runtime when any first feature exceeds `fail_above`: zero warm-up samples
    pass, chosen requests fail on purpose (for failover and canary tests)."""
    nodes = [
        # k = 1 when a first feature exceeds the limit; the reshape to [-1, 20 + k] then fails
        helper.make_node("Slice", ["features", "zero", "one", "one"], ["first"]),
        helper.make_node("ReduceMax", ["first"], ["largest"], keepdims=0),
        helper.make_node("Greater", ["largest", "limit"], ["over"]),
        helper.make_node("Cast", ["over"], ["k"], to=TensorProto.INT64),
        helper.make_node("Add", ["width", "k"], ["columns"]),
        helper.make_node("Concat", ["minus_one", "columns"], ["target"], axis=0),
        helper.make_node("Reshape", ["features", "target"], ["checked"]),
        helper.make_node("Slice", ["checked", "zero", "two", "one"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "credit_risk_lookalike",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", CREDIT_RISK_WIDTH])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2]),
        ],
        initializer=[
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("two", TensorProto.INT64, [1], [2]),
            helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
            helper.make_tensor("width", TensorProto.INT64, [1], [CREDIT_RISK_WIDTH]),
            helper.make_tensor("limit", TensorProto.FLOAT, [], [fail_above]),
        ],
    )
    return _model(graph)


def write_test_models(root: Path) -> dict[str, Path]:
    """Write every test model under `root` as version 1; returns model name -> model file."""
    builders = {identity_name(datatype): (identity, datatype) for datatype in IDENTITY_TYPES}
    files: dict[str, Path] = {}
    for name, (builder, datatype) in builders.items():
        files[name] = _write(root, name, builder(datatype))
    files["add_sub"] = _write(root, "add_sub", add_sub())
    files["fixed_shape"] = _write(root, "fixed_shape", fixed_shape())
    files["reshape"] = _write(root, "reshape", reshape())
    return files


def _write(root: Path, name: str, model: bytes) -> Path:
    folder = root / name / "1"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model)
    return path
