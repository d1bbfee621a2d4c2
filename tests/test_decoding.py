"""Property tests of the request decoders and the signature check: whatever a client sends, the
outcome is a checked request or an InvalidInput naming the problem, never another exception
(which the transports would answer with 500 / INTERNAL).

test_errors.py holds the named cases against the live server; these search the space between.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway._proto import inference_pb2 as pb
from gateway.codecs import grpc as grpc_codec
from gateway.codecs import rest
from gateway.errors import InvalidInput
from gateway.protocol.types import InferRequest, ModelSignature, TensorMetadata
from gateway.protocol.validation import check_request

SIGNATURE = ModelSignature(
    platform="onnxruntime_onnx",
    inputs=(TensorMetadata("features", "FP32", (-1, 20)),),
    outputs=(
        TensorMetadata("label", "INT64", (-1,)),
        TensorMetadata("probabilities", "FP32", (-1, 2)),
    ),
)
MAX_BATCH_SIZE = 64
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
DATATYPES = ["FP32", "FP64", "FP16", "BF16", "INT8", "INT64", "UINT8", "UINT64", "BOOL", "BYTES"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=20,
)
shapes = (
    st.lists(st.integers(-2, 25), max_size=3)
    | st.lists(st.integers(0, 2**63 - 1), max_size=3)
    | st.lists(st.just(1), min_size=30, max_size=70)
)
json_inputs = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["features", "other", ""]) | json_values,
        "datatype": st.sampled_from([*DATATYPES, "FLOAT"]) | json_values,
        "shape": shapes | json_values,
    },
    optional={
        "data": st.lists(json_scalars, max_size=45) | json_values,
        "parameters": st.dictionaries(st.just("binary_data_size"), json_values, max_size=1),
    },
)


@st.composite
def valid_features(draw: st.DrawFn) -> dict[str, Any]:
    """The model's input as it should be sent, so that some documents pass the check."""
    rows = draw(st.integers(1, 3))
    finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
    values = draw(st.lists(finite, min_size=20 * rows, max_size=20 * rows))
    return {"name": "features", "datatype": "FP32", "shape": [rows, 20], "data": values}


json_documents = st.fixed_dictionaries(
    {"inputs": st.lists(json_inputs | valid_features(), max_size=3) | json_values},
    optional={
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["label", "probabilities", "other"]) | json_values},
                optional={"parameters": st.dictionaries(st.just("binary_data"), json_values)},
            ),
            max_size=3,
        )
        | json_values,
        "id": json_values,
        "parameters": st.dictionaries(st.just("binary_data_output"), json_values) | json_values,
    },
)


def _checked_or_invalid(decode: Any) -> None:
    try:
        request: InferRequest = decode()
        checked = check_request(request, SIGNATURE, MAX_BATCH_SIZE)
    except InvalidInput as error:
        assert error.message
        return
    (features,) = checked.feeds.values()
    assert features.dtype == np.float32
    assert features.shape == (checked.rows, 20)
    assert 1 <= checked.rows <= MAX_BATCH_SIZE


@SETTINGS
@given(
    document=json_documents,
    tail=st.binary(max_size=80),
    header_length=st.sampled_from([None, "json", "0", "-1", "x", "99999"]),
)
@example(
    document={
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [0, 2**31, 2**31], "data": []}]
    },
    tail=b"",
    header_length="json",
).via("a shape numpy cannot hold once gave a 500")
def test_any_json_body_decodes_or_is_invalid_input(
    document: Any, tail: bytes, header_length: str | None
) -> None:
    header = orjson.dumps(document)
    if header_length == "json":
        header_length = str(len(header))
    body = header + tail if header_length is not None else header
    _checked_or_invalid(lambda: rest.decode_infer_request(body, header_length)[0])


_CONTENTS: dict[str, st.SearchStrategy[Any]] = {
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "bool_contents": st.booleans(),
    "bytes_contents": st.binary(max_size=4),
}


@st.composite
def grpc_tensors(draw: st.DrawFn) -> pb.ModelInferRequest.InferInputTensor:
    tensor = pb.ModelInferRequest.InferInputTensor(
        name=draw(st.sampled_from(["features", "other", ""])),
        datatype=draw(st.sampled_from([*DATATYPES, "FLOAT", ""])),
        shape=draw(shapes.filter(lambda dims: all(d < 2**63 for d in dims))),
    )
    field = draw(st.sampled_from([None, *_CONTENTS]))
    if field is not None:
        values = draw(st.lists(_CONTENTS[field], max_size=45))
        getattr(tensor.contents, field).extend(values)
    return tensor


@st.composite
def grpc_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="credit_risk", id=draw(st.text(max_size=4)))
    message.inputs.extend(draw(st.lists(grpc_tensors(), max_size=3)))
    if draw(st.booleans()):
        raw = st.binary(max_size=90) | st.just(bytes(80))
        message.raw_input_contents.extend(draw(st.lists(raw, max_size=3)))
    for name in draw(st.lists(st.sampled_from(["label", "probabilities", "other", ""]))):
        message.outputs.add(name=name)
    if draw(st.booleans()):
        message.parameters["routing_key"].SetInParent()  # a parameter without a value
    return message


@SETTINGS
@given(message=grpc_requests())
@example(
    message=pb.ModelInferRequest(
        inputs=[
            pb.ModelInferRequest.InferInputTensor(
                name="features",
                datatype="FP32",
                shape=[1] * 70,
                contents=pb.InferTensorContents(fp32_contents=[1.0]),
            )
        ]
    )
).via("70 dimensions once gave INTERNAL")
def test_any_grpc_request_decodes_or_is_invalid_input(message: pb.ModelInferRequest) -> None:
    received = pb.ModelInferRequest.FromString(message.SerializeToString())
    _checked_or_invalid(lambda: grpc_codec.decode_infer_request(received)[0])
