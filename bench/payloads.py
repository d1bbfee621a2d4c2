"""Wire encodings of one infer request, one per measured path, built once before a run.

Paths (the registry `PATHS` drives the CLI's choices):
  http-json    V2 REST, JSON tensors.
  http-binary  V2 REST with Triton's binary tensor extension: a JSON header whose length is in
               `Inference-Header-Content-Length`, then the raw little-endian tensor bytes; outputs
               asked for in binary too.
  grpc-typed   ModelInferRequest with typed `contents` (fp32_contents, ...).
  grpc-raw     ModelInferRequest with `raw_input_contents`.

Protobuf classes come from `tritonclient.grpc.service_pb2`, never `gateway._proto`: both register
`inference.*` in the default descriptor pool, and two copies in one process conflict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tritonclient.grpc import service_pb2

from .model import ModelSpec, ModelSpecError

GRPC_SERVICE = "inference.GRPCInferenceService"
GRPC_INFER_METHOD = f"/{GRPC_SERVICE}/ModelInfer"
BINARY_HEADER = "Inference-Header-Content-Length"

Transport = Literal["http", "grpc"]
Rows = dict[str, np.ndarray]


@dataclass(frozen=True)
class RequestSet:
    """Ready-to-send requests for one path. For gRPC, `bodies` are serialized ModelInferRequest
    messages without the 5-byte gRPC frame header (`grpc_frame` adds it where a tool needs it)."""

    path: str
    transport: Transport
    headers: dict[str, str]
    bodies: tuple[bytes, ...]


def _json_tensors(model: ModelSpec, rows: Rows) -> list[dict[str, object]]:
    return [
        {
            "name": spec.name,
            "shape": list(rows[spec.name].shape),
            "datatype": spec.datatype,
            "data": rows[spec.name].ravel().tolist(),
        }
        for spec in model.inputs
    ]


def encode_http_json(model: ModelSpec, rows: Rows) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"inputs": _json_tensors(model, rows)}, separators=(",", ":"))
    return body.encode(), {"Content-Type": "application/json"}


def encode_http_binary(model: ModelSpec, rows: Rows) -> tuple[bytes, dict[str, str]]:
    """JSON header + concatenated raw tensors, in input order (Triton binary tensor extension)."""
    raws = [np.ascontiguousarray(rows[spec.name]).tobytes() for spec in model.inputs]
    header = {
        "inputs": [
            {
                "name": spec.name,
                "shape": list(rows[spec.name].shape),
                "datatype": spec.datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
            for spec, raw in zip(model.inputs, raws, strict=True)
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(head))}
    return head + b"".join(raws), headers


# V2 datatype -> the InferTensorContents field that carries it (FP16 has none: raw only).
TYPED_CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _grpc_request(model: ModelSpec, rows: Rows) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=model.name, model_version=model.version)
    for spec in model.inputs:
        tensor = request.inputs.add()
        tensor.name = spec.name
        tensor.datatype = spec.datatype
        tensor.shape.extend(rows[spec.name].shape)
    return request


def encode_grpc_typed(model: ModelSpec, rows: Rows) -> bytes:
    request = _grpc_request(model, rows)
    for spec, tensor in zip(model.inputs, request.inputs, strict=True):
        field_name = TYPED_CONTENTS_FIELD.get(spec.datatype)
        if field_name is None:
            raise ModelSpecError(f"{spec.name}: {spec.datatype} has no typed gRPC contents")
        getattr(tensor.contents, field_name).extend(rows[spec.name].ravel().tolist())
    return request.SerializeToString()


def encode_grpc_raw(model: ModelSpec, rows: Rows) -> bytes:
    request = _grpc_request(model, rows)
    for spec in model.inputs:
        request.raw_input_contents.append(np.ascontiguousarray(rows[spec.name]).tobytes())
    return request.SerializeToString()


def grpc_frame(message: bytes) -> bytes:
    """Length-prefixed gRPC message: 1 byte compressed-flag (0), 4-byte big-endian length, body."""
    if len(message) >= 1 << 32:
        raise ValueError("gRPC message longer than 4 GiB")
    return b"\x00" + len(message).to_bytes(4, "big") + message


def parse_grpc_frames(data: bytes) -> list[bytes]:
    """Split a gRPC DATA stream into messages; raises ValueError on a truncated frame or a
    compressed one."""
    messages = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 5:
            raise ValueError(f"truncated gRPC frame header at byte {offset}")
        if data[offset] != 0:
            raise ValueError("compressed gRPC frames are not supported")
        length = int.from_bytes(data[offset + 1 : offset + 5], "big")
        end = offset + 5 + length
        if end > len(data):
            raise ValueError(f"gRPC frame at byte {offset} wants {length} bytes, has {len(data)}")
        messages.append(data[offset + 5 : end])
        offset = end
    return messages


@dataclass(frozen=True)
class PathCodec:
    transport: Transport
    http: Callable[[ModelSpec, Rows], tuple[bytes, dict[str, str]]] | None = None
    grpc: Callable[[ModelSpec, Rows], bytes] | None = None


PATHS: dict[str, PathCodec] = {
    "http-json": PathCodec("http", http=encode_http_json),
    "http-binary": PathCodec("http", http=encode_http_binary),
    "grpc-typed": PathCodec("grpc", grpc=encode_grpc_typed),
    "grpc-raw": PathCodec("grpc", grpc=encode_grpc_raw),
}


def build_request_set(path: str, model: ModelSpec, requests: Sequence[Rows]) -> RequestSet:
    """Encode every request for `path`; raises KeyError for an unknown path, ModelSpecError when
    the model cannot be sent that way."""
    codec = PATHS[path]
    if codec.http is not None:
        encoded = [codec.http(model, rows) for rows in requests]
        return RequestSet(path, "http", encoded[0][1], tuple(body for body, _ in encoded))
    if codec.grpc is None:
        raise TypeError(f"path {path!r} has no encoder")
    return RequestSet(path, "grpc", {}, tuple(codec.grpc(model, rows) for rows in requests))
