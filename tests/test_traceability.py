"""Every answered request leaves a prediction record that names the exact model that answered;
in durable mode no answered request's record is lost, even to kill -9."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import (
    CREDIT_RISK,
    CREDIT_RISK_FEATURES,
    Server,
    copy_credit_risk,
    http_request,
    infer_credit_risk,
    start_server,
)

from gateway.config import JournalConfig
from gateway.governance.ledger import Ledger
from gateway.governance.predictions import DEFER_MAX_BYTES, input_digest
from gateway.protocol.types import InferInput


@pytest.fixture(scope="module")
def full_capture_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    repository = tmp_path_factory.mktemp("trace-repository")
    # durable: the answer waits for its record, so the record can be read right after it
    copy_credit_risk(repository, config='record_capture = "full"\nrecord_durable = true\n')
    with start_server(repository) as server:
        yield server


# 2 rows: the payload is made by the journal's writer thread; 60 rows (4,800 bytes of
# features): over DEFER_MAX_BYTES, it is made on the request path
@pytest.mark.parametrize("count", [2, 60])
def test_the_record_names_the_version_its_file_hash_and_profile(
    full_capture_server, count: int
) -> None:
    rows = np.random.default_rng(5).random((count, CREDIT_RISK_FEATURES), dtype=np.float32)
    assert (rows.nbytes > DEFER_MAX_BYTES) == (count == 60)
    request_id = f"trace-{count}"
    answer = infer_credit_risk(full_capture_server, rows, request_id)
    version = answer["model_version"]
    record = http_request(
        "GET",
        f"{full_capture_server.http_url}/v2/predictions/{request_id}",
        headers=full_capture_server.admin_headers(),
    )
    assert record.status == 200, record.body
    found = record.json()
    folder = CREDIT_RISK / version
    assert found["request_id"] == request_id
    assert found["model"] == "credit_risk" and found["version"] == version
    assert found["content_hash"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert found["profile_id"] == json.loads((folder / "profile.json").read_text())["id"]
    assert found["routing"] == "weight"
    # full capture: what was asked and what was answered, exactly
    assert found["inputs"][0]["shape"] == [count, CREDIT_RISK_FEATURES]
    assert np.allclose(found["inputs"][0]["data"], rows.ravel())
    for kept, sent in zip(found["outputs"], answer["outputs"], strict=True):
        assert [kept[k] for k in ("name", "datatype", "shape")] == [
            sent[k] for k in ("name", "datatype", "shape")
        ]
        # the same FP32 values, whatever decimal form each JSON writer chose
        dtype = np.float32 if sent["datatype"] == "FP32" else np.int64
        assert np.array_equal(np.array(kept["data"], dtype), np.array(sent["data"], dtype))
    assert found["input_digest"] == input_digest([InferInput("features", "FP32", rows)])
    assert found["seq"] >= 1


def test_generated_ids_are_traceable_on_both_transports(full_capture_server) -> None:
    rows = np.random.default_rng(6).random((1, CREDIT_RISK_FEATURES), dtype=np.float32)
    made_up = infer_credit_risk(full_capture_server, rows)["id"]
    client = grpcclient.InferenceServerClient(full_capture_server.grpc_address)
    features = grpcclient.InferInput("features", [1, CREDIT_RISK_FEATURES], "FP32")
    features.set_data_from_numpy(rows)
    grpc_id = client.infer("credit_risk", [features], model_version="1").get_response().id
    assert made_up != grpc_id
    for request_id, routing in ((made_up, "weight"), (grpc_id, "pinned")):
        record = http_request(
            "GET",
            f"{full_capture_server.http_url}/v2/predictions/{request_id}",
            headers=full_capture_server.admin_headers(),
        )
        assert record.status == 200 and record.json()["routing"] == routing


def test_unknown_request_id_is_a_json_404(full_capture_server) -> None:
    answer = http_request(
        "GET",
        f"{full_capture_server.http_url}/v2/predictions/never-sent",
        headers=full_capture_server.admin_headers(),
    )
    assert answer.status == 404
    assert answer.json() == {"error": "no prediction record for request id 'never-sent'"}


def test_durable_records_survive_kill_9(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "repository", config="record_durable = true\n")
    rng = np.random.default_rng(7)
    answered = []
    with start_server(tmp_path / "repository", kill_signal=signal.SIGKILL) as server:
        journal = server.journal
        for i in range(40):
            rows = rng.random((1, CREDIT_RISK_FEATURES), dtype=np.float32)
            answered.append(infer_credit_risk(server, rows, f"durable-{i}")["id"])
    ledger = Ledger.open(JournalConfig(path=str(journal)))
    try:
        missing = [i for i in answered if ledger.find_prediction(i) is None]
    finally:
        ledger.close()
    assert missing == []


def test_async_records_of_every_answer_are_written(tmp_path: Path) -> None:
    """Async mode (the default): records are queued without the coroutine path, made by the
    writer, and every answered request has one once the server has stopped."""
    copy_credit_risk(tmp_path / "repository")
    rng = np.random.default_rng(8)
    answered = []
    with start_server(tmp_path / "repository") as server:
        journal = server.journal
        client = grpcclient.InferenceServerClient(server.grpc_address)
        for i in range(30):
            rows = rng.random((1 + i % 3, CREDIT_RISK_FEATURES), dtype=np.float32)
            answered.append((infer_credit_risk(server, rows, f"async-{i}")["id"], rows))
            features = grpcclient.InferInput("features", list(rows.shape), "FP32")
            features.set_data_from_numpy(rows)
            made_up = client.infer("credit_risk", [features]).get_response().id
            answered.append((made_up, rows))
        client.close()
    ledger = Ledger.open(JournalConfig(path=str(journal)))
    try:
        found = [(ledger.find_prediction(i), rows) for i, rows in answered]
    finally:
        ledger.close()
    assert all(record is not None for record, _ in found)
    for record, rows in found:
        assert record is not None
        assert record.payload["input_digest"] == input_digest(
            [InferInput("features", "FP32", rows)]
        )
