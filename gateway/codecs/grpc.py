"""`inference.GRPCInferenceService` messages <-> protocol types.

Inputs come either typed (`contents`) or raw (`raw_input_contents`, one buffer per input, in input
order). A request that sends raw gets raw outputs back; a typed one gets typed outputs, except
when an output's datatype has no typed field (FP16): then, as the spec requires all-or-nothing,
every output goes raw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import json_format

from gateway._proto import inference_pb2 as pb
from gateway.codecs.tensors import (
    array_from_raw,
    array_from_values,
    datatype_named,
    parse_shape,
    raw_from_array,
)
from gateway.errors import InvalidInput
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import (
    InferInput,
    InferRequest,
    InferResponse,
    Parameters,
    RequestedOutput,
)


def decode_infer_request(message: pb.ModelInferRequest) -> tuple[InferRequest, bool]:
    """The request, and whether the client sent raw contents (and so gets raw outputs)."""
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs: list[InferInput] = []
    for position, tensor in enumerate(message.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput("each input needs a non-empty name")
        datatype = datatype_named(name, tensor.datatype)
        shape = parse_shape(name, tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput("has contents although raw_input_contents is used", name)
            data = array_from_raw(name, datatype, shape, raw[position])
        elif not datatype.contents_field:
            raise InvalidInput(f"{datatype.name} can only be sent in raw_input_contents", name)
        else:
            values = getattr(tensor.contents, datatype.contents_field)
            data = array_from_values(name, datatype, shape, values)
        inputs.append(InferInput(name, datatype.name, data))
    if not inputs:
        raise InvalidInput("the request has no inputs")
    outputs = [
        RequestedOutput(output.name, parameters_from_proto(output.parameters))
        for output in message.outputs
    ]
    request = InferRequest(
        inputs=inputs,
        id=message.id,
        parameters=parameters_from_proto(message.parameters),
        outputs=outputs,
    )
    return request, bool(raw)


def encode_infer_response(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    datatypes = [BY_NAME[output.datatype] for output in response.outputs]
    raw = raw or any(not datatype.contents_field for datatype in datatypes)
    for output, datatype in zip(response.outputs, datatypes, strict=True):
        tensor = message.outputs.add(
            name=output.name, datatype=output.datatype, shape=output.data.shape
        )
        if raw:
            message.raw_output_contents.append(raw_from_array(datatype, output.data))
        else:
            _fill_contents(tensor.contents, datatype.contents_field, output.data)
    parameters_to_proto(response.parameters, message.parameters)
    return message


def _fill_contents(contents: pb.InferTensorContents, field: str, data: np.ndarray) -> None:
    values = data.reshape(-1)
    if data.dtype == object:
        getattr(contents, field).extend(v.encode() if isinstance(v, str) else v for v in values)
    else:
        getattr(contents, field).extend(values.tolist())


def parameters_from_proto(parameters: Any) -> Parameters:
    decoded: Parameters = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(f"parameter '{key}' has no value")
        decoded[key] = getattr(value, choice)
    return decoded


def parameters_to_proto(parameters: Parameters, target: Any) -> None:
    for key, value in parameters.items():
        entry = target[key]
        if isinstance(value, bool):
            entry.bool_param = value
        elif isinstance(value, int):
            entry.int64_param = value
        elif isinstance(value, float):
            entry.double_param = value
        else:
            entry.string_param = str(value)


def from_dict(message_type: type[Any], document: dict[str, Any]) -> Any:
    """A control-path message from the JSON form the REST side serves (one source for both)."""
    return json_format.ParseDict(document, message_type())
