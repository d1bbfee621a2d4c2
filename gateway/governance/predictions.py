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

import functools
import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import orjson

from gateway.codecs.tensors import raw_from_array, values_from_array
from gateway.governance.records import encode_payload
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import InferInput, InferOutput

# A payload may be made later, on the journal's writer thread (journal.py, `Deferred`), when the
# tensors it keeps alive until then are at most this large: the journal's queue then holds at
# most this much tensor data per record.
DEFER_MAX_BYTES = 4096
_DIM = struct.Struct("<q")
_SHAPES = [struct.Struct(f"<{rank + 1}q") for rank in range(65)]  # rank, then each dimension


@functools.lru_cache(maxsize=1024)  # input names are the models' (checked before a record)
def _names_part(name: str, datatype: str) -> bytes:
    """An input's name and datatype, length-delimited: their part of the digest's preimage."""
    encoded = [text.encode() for text in (name, datatype)]
    return b"".join(_DIM.pack(len(text)) + text for text in encoded)


def input_digest(inputs: Sequence[InferInput]) -> str:
    """Hex SHA-256 over every input in request order: its name, datatype, shape and raw
    little-endian bytes (BYTES elements length-prefixed), each field length-delimited so that no
    two different requests share a preimage."""
    digest = hashlib.sha256()
    for tensor in inputs:
        data = tensor.data
        digest.update(_names_part(tensor.name, tensor.datatype))
        digest.update(_SHAPES[data.ndim].pack(data.ndim, *data.shape))
        digest.update(raw_from_array(BY_NAME[tensor.datatype], data))
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


class PredictionPayloads:
    """The encoded prediction payloads of one model version, under its capture policy.

    Without tensors (``none``, ``digest``) the payload is formatted into a template whose fixed
    fields were encoded once: the writer makes one per request, and a dict sorted and encoded
    by orjson each time cost several times as much. It is byte for byte what `encode_payload`
    makes of the same fields (tested), as the journal's canonical form requires.
    """

    def __init__(
        self,
        model: str,
        version: str,
        content_hash: str,
        profile_id: str,
        capture: str,
        sample_percent: float,
    ) -> None:
        self.capture = capture
        # the tensors its payloads read, which a record waiting for the writer keeps alive
        self.reads_inputs = capture != "none"
        self.reads_outputs = capture in ("full", "sampled")
        self._sample_percent = sample_percent
        self._fixed = {
            "model": model,
            "version": version,
            "content_hash": content_hash,
            "profile_id": profile_id,
        }
        dumps = orjson.dumps
        # the fields in sorted order: content_hash, input_digest, latency_us, model, profile_id,
        # request_id, routing, version
        self._head = b'{"content_hash":' + dumps(content_hash)
        self._middle = b',"model":' + dumps(model) + b',"profile_id":' + dumps(profile_id)
        self._tail = b',"version":' + dumps(version) + b"}"

    def encode(
        self,
        inputs: Sequence[InferInput],
        outputs: Sequence[InferOutput],
        request_id: str,
        latency_us: int,
        routing: str,
    ) -> bytes:
        """The payload of the answer `request_id` (raises what orjson raises for an id that is
        not valid Unicode: a caller on the writer thread journals that error instead)."""
        capture = self.capture
        if capture == "sampled":
            capture = "full" if sampled(request_id, self._sample_percent) else "digest"
        if capture == "full":
            return encode_payload(
                {
                    **self._fixed,
                    "request_id": request_id,
                    "latency_us": latency_us,
                    "routing": routing,
                    "input_digest": input_digest(inputs),
                    "inputs": _tensors(inputs),
                    "outputs": _tensors(outputs),
                }
            )
        digest = (
            b',"input_digest":"%b"' % input_digest(inputs).encode() if capture == "digest" else b""
        )
        return b'%b%b,"latency_us":%d%b,"request_id":%b,"routing":%b%b' % (
            self._head, digest, latency_us, self._middle, orjson.dumps(request_id),
            orjson.dumps(routing), self._tail,
        )  # fmt: skip


def deferrable(held: Sequence[InferInput | InferOutput]) -> bool:
    """Whether a payload that reads the tensors `held` may be made later: they are fixed-width
    (object arrays would keep more alive than their size says) and small (DEFER_MAX_BYTES)."""
    size = 0
    for tensor in held:
        if tensor.data.dtype.hasobject:
            return False
        size += tensor.data.nbytes
    return size <= DEFER_MAX_BYTES
