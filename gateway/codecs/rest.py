"""V2 REST bodies <-> protocol types, with Triton's binary tensor data extension both ways.

A body is a JSON header, optionally followed by raw tensor bytes; the HTTP header
`Inference-Header-Content-Length` then says where the JSON ends. Each input sent raw declares its
byte count in `parameters.binary_data_size`, in input order. An output is returned raw when its
`parameters.binary_data` is true, or when the request's `parameters.binary_data_output` is true and
the output does not say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gateway.codecs.tensors import (
    array_from_raw,
    array_from_values,
    datatype_named,
    parse_shape,
    raw_from_array,
    values_from_array,
)
from gateway.errors import InvalidInput
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import InferInput, InferRequest, InferResponse, RequestedOutput

HEADER_LENGTH = "Inference-Header-Content-Length"
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True, slots=True)
class OutputEncoding:
    """How the client asked for outputs to come back: raw bytes or JSON `data`."""

    binary_by_default: bool = False
    binary_by_name: tuple[tuple[str, bool], ...] = ()

    def is_binary(self, name: str) -> bool:
        for output, binary in self.binary_by_name:
            if output == name:
                return binary
        return self.binary_by_default


def decode_infer_request(
    body: bytes, header_length: str | None
) -> tuple[InferRequest, OutputEncoding]:
    json_end = _json_end(body, header_length)
    document = decode_object(body[:json_end])

    binary = memoryview(body)[json_end:]
    inputs, consumed = _decode_inputs(document.get("inputs"), binary)
    if consumed != len(binary):
        raise InvalidInput(
            f"{len(binary) - consumed} bytes of binary data follow the inputs and no input "
            "declares them"
        )

    parameters = _object(document.get("parameters"), "request parameters")
    binary_by_default = parameters.pop("binary_data_output", False) is True
    outputs, binary_by_name = _decode_outputs(document.get("outputs"))
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInput("'id' must be a string")
    request = InferRequest(inputs=inputs, id=request_id, parameters=parameters, outputs=outputs)
    return request, OutputEncoding(binary_by_default, binary_by_name)


def _json_end(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    try:
        end = int(header_length)
    except ValueError:
        raise InvalidInput(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 <= end <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} {end} lies outside the {len(body)}-byte body")
    return end


def _decode_inputs(items: Any, binary: memoryview) -> tuple[list[InferInput], int]:
    if not isinstance(items, list) or not items:
        raise InvalidInput("'inputs' must be a non-empty list")
    inputs: list[InferInput] = []
    offset = 0
    for item in items:
        if not isinstance(item, dict):
            raise InvalidInput("each input must be a JSON object")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidInput("each input needs a non-empty 'name'")
        datatype = datatype_named(name, item.get("datatype"))
        shape = parse_shape(name, item.get("shape"))
        size = _object(item.get("parameters"), f"parameters of input '{name}'").get(
            "binary_data_size"
        )
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput("binary_data_size must be a non-negative integer", name)
            if offset + size > len(binary):
                raise InvalidInput(f"binary_data_size {size} runs past the end of the body", name)
            data = array_from_raw(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in item:
            if not isinstance(item["data"], list):
                raise InvalidInput("'data' must be a list", name)
            data = array_from_values(name, datatype, shape, item["data"])
        else:
            raise InvalidInput("has neither 'data' nor parameters.binary_data_size", name)
        inputs.append(InferInput(name, datatype.name, data))
    return inputs, offset


def _decode_outputs(items: Any) -> tuple[list[RequestedOutput], tuple[tuple[str, bool], ...]]:
    if items is None:
        return [], ()
    if not isinstance(items, list):
        raise InvalidInput("'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    binary_by_name: list[tuple[str, bool]] = []
    for item in items:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidInput("each requested output needs a non-empty 'name'")
        parameters = _object(item.get("parameters"), f"parameters of output '{name}'")
        binary = parameters.pop("binary_data", None)
        if binary is not None:
            binary_by_name.append((name, binary is True))
        outputs.append(RequestedOutput(name, parameters))
    return outputs, tuple(binary_by_name)


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value


def encode_infer_response(
    response: InferResponse, encoding: OutputEncoding
) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when raw output bytes follow it (else None)."""
    outputs: list[dict[str, Any]] = []
    raw_parts: list[bytes] = []
    for output in response.outputs:
        datatype = BY_NAME[output.datatype]
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.data.shape),
        }
        if encoding.is_binary(output.name):
            raw = raw_from_array(datatype, output.data)
            entry["parameters"] = {"binary_data_size": len(raw)}
            raw_parts.append(raw)
        else:
            entry["data"] = values_from_array(datatype, output.data)
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.id:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    header = orjson.dumps(document, option=_JSON_OPTIONS)
    if not raw_parts:
        return header, None
    return b"".join([header, *raw_parts]), len(header)


def decode_object(body: bytes) -> dict[str, Any]:
    """A small JSON object body of the control endpoints."""
    return _object(decode_json(body), "the request body")


def decode_json(body: bytes) -> Any:
    """Any JSON document (e.g. the list of actuals)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"malformed JSON: {error}") from None


def dumps(document: Any) -> bytes:
    return orjson.dumps(document, option=_JSON_OPTIONS)
