"""Prediction records: what the journal keeps of every answered request.

A record says which model version (and its content hash, and the training-data profile it was
built with) answered which request, for whom, when, how fast and why that version; and, by the
model's capture policy, what it was asked and what it said:

- ``none``: no trace of the tensors;
- ``digest`` (default): SHA-256 over the inputs (`input_digest`), enough to prove what was asked
  when the client keeps its payload;
- ``full``: inputs and outputs as V2 JSON tensors;
- ``sampled``: ``full`` for a share of requests chosen by their id (so every replica picks the
  same ones), ``digest`` for the others.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import Any

from gateway.codecs.tensors import raw_from_array, values_from_array
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import InferInput, InferOutput, InferRequest, InferResponse

_SHAPE_DIM = struct.Struct("<q")
# A payload may be made later, on the journal's writer thread (journal.py, `Deferred`), when the
# tensors it keeps alive until then are at most this large: the journal's queue then holds at
# most this much tensor data per record.
DEFER_MAX_BYTES = 4096


def input_digest(inputs: Sequence[InferInput]) -> str:
    """Hex SHA-256 over every input in request order: its name, datatype, shape and raw
    little-endian bytes (BYTES elements length-prefixed), each field length-delimited so that no
    two different requests share a preimage."""
    digest = hashlib.sha256()
    for tensor in inputs:
        for text in (tensor.name, tensor.datatype):
            encoded = text.encode()
            digest.update(_SHAPE_DIM.pack(len(encoded)))
            digest.update(encoded)
        digest.update(_SHAPE_DIM.pack(tensor.data.ndim))
        for dim in tensor.data.shape:
            digest.update(_SHAPE_DIM.pack(dim))
        digest.update(raw_from_array(BY_NAME[tensor.datatype], tensor.data))
    return digest.hexdigest()


def sampled(request_id: str, percent: float) -> bool:
    """Whether `request_id` falls in the `percent` share: the same answer on every replica."""
    bucket = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big") % 10_000
    return bucket < percent * 100


def _tensors(tensors: Sequence[InferInput | InferOutput]) -> list[dict[str, Any]]:
    entries = []
    for tensor in tensors:
        values = values_from_array(BY_NAME[tensor.datatype], tensor.data)
        entries.append(
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.data.shape),
                "data": values if isinstance(values, list) else values.tolist(),
            }
        )
    return entries


def prediction_payload(
    request: InferRequest,
    response: InferResponse,
    *,
    capture: str,
    sample_percent: float,
    content_hash: str,
    profile_id: str,
    latency_ns: int,
    routing: str,
) -> dict[str, Any]:
    """The journal payload of one answered request (`response.id` is the request id)."""
    payload: dict[str, Any] = {
        "request_id": response.id,
        "model": response.model_name,
        "version": response.model_version,
        "content_hash": content_hash,
        "profile_id": profile_id,
        "latency_us": latency_ns // 1000,
        "routing": routing,
    }
    if capture == "sampled":
        capture = "full" if sampled(response.id, sample_percent) else "digest"
    if capture in ("digest", "full"):
        payload["input_digest"] = input_digest(request.inputs)
    if capture == "full":
        payload["inputs"] = _tensors(request.inputs)
        payload["outputs"] = _tensors(response.outputs)
    return payload


def deferrable(request: InferRequest, response: InferResponse) -> bool:
    """Whether the payload of this request may be made later: its tensors are fixed-width
    (object arrays would keep more alive than their size says) and small (DEFER_MAX_BYTES)."""
    held = 0
    for tensor in (*request.inputs, *response.outputs):
        if tensor.data.dtype.hasobject:
            return False
        held += tensor.data.nbytes
    return held <= DEFER_MAX_BYTES
