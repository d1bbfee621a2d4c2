"""Prediction records: the input digest, deterministic sampling, capture policies, and the
identity (content hash, profile id) a loaded version carries into them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import orjson
import pytest
from conftest import CREDIT_RISK
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import ModelConfig
from gateway.governance.predictions import (
    DEFER_MAX_BYTES,
    PredictionPayloads,
    deferrable,
    input_digest,
    sampled,
)
from gateway.governance.records import encode_payload
from gateway.loading import open_backend
from gateway.protocol.types import InferInput, InferOutput
from gateway.repository import VersionSource
from gateway.serving import RequestIds


def _input(name: str, datatype: str, data: np.ndarray) -> InferInput:
    return InferInput(name, datatype, data)


@pytest.fixture
def rows() -> np.ndarray:
    return np.random.default_rng(11).random((2, 3), dtype=np.float32)


def test_digest_is_sha256_of_a_documented_preimage(rows: np.ndarray) -> None:
    # name, datatype, rank and dims as little-endian int64s, then the raw bytes
    preimage = b"".join(
        [
            (1).to_bytes(8, "little", signed=True),
            b"x",
            (4).to_bytes(8, "little", signed=True),
            b"FP32",
            (2).to_bytes(8, "little", signed=True),
            (2).to_bytes(8, "little", signed=True),
            (3).to_bytes(8, "little", signed=True),
            rows.astype("<f4").tobytes(),
        ]
    )
    assert input_digest([_input("x", "FP32", rows)]) == hashlib.sha256(preimage).hexdigest()


def test_digest_changes_with_every_part_of_the_input(rows: np.ndarray) -> None:
    base = input_digest([_input("x", "FP32", rows)])
    changed = rows.copy()
    changed[1, 2] += 1
    variants = [
        [_input("x", "FP32", changed)],
        [_input("x", "FP32", rows.reshape(3, 2))],  # same bytes, other shape
        [_input("y", "FP32", rows)],
        [_input("x", "INT32", rows.view(np.int32))],  # same bytes, other datatype
        [_input("x", "FP32", rows), _input("x2", "FP32", rows)],
    ]
    digests = {input_digest(v) for v in variants}
    assert base not in digests and len(digests) == len(variants)
    # order of inputs matters, the values themselves do not depend on memory layout
    a, b = _input("a", "FP32", rows), _input("b", "FP32", rows[::-1])
    assert input_digest([a, b]) != input_digest([b, a])
    fortran = np.asfortranarray(rows)
    assert input_digest([_input("x", "FP32", fortran)]) == base


def test_digest_of_bytes_tensors() -> None:
    texts = np.array([b"a", b"bc"], dtype=object)
    other = np.array([b"ab", b"c"], dtype=object)  # same concatenation, other elements
    assert input_digest([_input("t", "BYTES", texts)]) != input_digest(
        [_input("t", "BYTES", other)]
    )


def test_sampling_is_deterministic_and_proportional() -> None:
    ids = [f"req-{i}" for i in range(20_000)]
    assert not any(sampled(i, 0.0) for i in ids[:500])
    assert all(sampled(i, 100.0) for i in ids[:500])
    share = sum(sampled(i, 10.0) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [sampled(i, 25.0) for i in ids[:200]] == [sampled(i, 25.0) for i in ids[:200]]


def _payload(capture: str, percent: float = 0.0, request_id: str = "r-1") -> dict:
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    payloads = PredictionPayloads("m", "2", "c" * 64, "p" * 16, capture, percent)
    outputs = [InferOutput("label", "INT64", np.array([0, 1], dtype=np.int64))]
    encoded = payloads.encode([_input("x", "FP32", rows)], outputs, request_id, 1234, "pinned")
    # the journal embeds it verbatim: it must be what encode_payload makes of it
    assert encode_payload(orjson.loads(encoded)) == encoded
    return orjson.loads(encoded)


def test_capture_policies() -> None:
    none = _payload("none")
    assert none["request_id"] == "r-1" and none["model"] == "m" and none["version"] == "2"
    assert none["latency_us"] == 1234 and none["routing"] == "pinned"
    assert "input_digest" not in none and "inputs" not in none
    digest = _payload("digest")
    assert len(digest["input_digest"]) == 64 and "inputs" not in digest
    full = _payload("full")
    assert full["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5]}
    ]
    assert full["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 1]}]
    json.dumps(full)  # plain JSON, no numpy left
    assert "inputs" in _payload("sampled", 100.0) and "inputs" not in _payload("sampled", 0.0)
    assert "input_digest" in _payload("sampled", 0.0)
    assert digest["input_digest"] == full["input_digest"]  # one digest, whatever the template


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # any Unicode but surrogates


@given(model=_TEXT, version=_TEXT, profile=_TEXT, request_id=_TEXT, routing=_TEXT)
def test_templated_payloads_are_canonical_for_any_text(
    model: str, version: str, profile: str, request_id: str, routing: str
) -> None:
    rows = np.zeros((1, 3), dtype=np.float32)
    for capture in ("none", "digest"):
        payloads = PredictionPayloads(model, version, "c" * 64, profile, capture, 0.0)
        encoded = payloads.encode([_input("x", "FP32", rows)], [], request_id, 7, routing)
        decoded = orjson.loads(encoded)
        assert encode_payload(decoded) == encoded
        assert (decoded["model"], decoded["version"], decoded["profile_id"]) == (
            model, version, profile,
        )  # fmt: skip
        assert (decoded["request_id"], decoded["routing"]) == (request_id, routing)


def test_an_id_that_is_not_unicode_raises_where_the_payload_is_made() -> None:
    payloads = PredictionPayloads("m", "1", "c" * 64, "", "digest", 0.0)
    with pytest.raises(TypeError):  # orjson's error: the writer journals it instead
        payloads.encode([], [], "\ud800", 1, "weight")


def test_loaded_version_names_its_file_hash_and_profile() -> None:
    folder = CREDIT_RISK / "1"
    opened = open_backend(VersionSource("credit_risk", "1", folder, ModelConfig()))
    assert (
        opened.identity.content_hash
        == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    )
    assert opened.identity.profile_id == json.loads((folder / "profile.json").read_text())["id"]
    opened.backend.close()


def test_only_small_fixed_width_payloads_are_deferred() -> None:
    def answer(inputs: list[InferInput], outputs: list[InferOutput]) -> bool:
        return deferrable([*inputs, *outputs])

    label = InferOutput("label", "INT64", np.zeros(4, dtype=np.int64))
    small = _input("x", "FP32", np.zeros((4, 8), dtype=np.float32))
    assert answer([small], [label])
    # the limit counts every tensor the payload keeps alive, outputs included
    edge = DEFER_MAX_BYTES // 4 - 8
    assert answer([_input("x", "FP32", np.zeros(edge, dtype=np.float32))], [label])
    assert not answer([_input("x", "FP32", np.zeros(edge + 1, dtype=np.float32))], [label])
    # BYTES elements are objects: their size is not what the array says
    text = np.array([b"a" * 10], dtype=object)
    assert not answer([_input("t", "BYTES", text)], [])


def test_made_up_request_ids_are_unique_within_and_across_processes() -> None:
    ids, other = RequestIds(), RequestIds()
    made = [ids.make() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)
    # another process (or a restart) has another random half
    assert made[0][:16] != other.make()[:16]
