"""The access log: one JSON line per request, the same shape on both transports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import CREDIT_RISK_FEATURES, Server, copy_credit_risk, http_request, start_server

ACCESS = r"modelgate\.access: "


@pytest.fixture(scope="module")
def logged_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    repository = tmp_path_factory.mktemp("access-log-repository")
    copy_credit_risk(repository)
    with start_server(repository, "access_log = true\n") as server:
        yield server


def _entry(server: Server, pattern: str) -> dict:
    line = server.wait_for_line(ACCESS + pattern)
    return json.loads(line.split("modelgate.access: ", 1)[1])


def test_http_requests_are_logged_with_status(logged_server: Server) -> None:
    answer = http_request("GET", f"{logged_server.http_url}/v2/models/no_such_model")
    assert answer.status == 404
    entry = _entry(logged_server, r'.*"GET /v2/models/no_such_model"')
    assert entry["protocol"] == "http"
    assert entry["status"] == 404
    assert entry["peer"] == "127.0.0.1"
    assert entry["ms"] >= 0


def test_grpc_calls_are_logged_with_their_code(logged_server: Server) -> None:
    client = grpcclient.InferenceServerClient(logged_server.grpc_address)
    features = grpcclient.InferInput("features", [1, CREDIT_RISK_FEATURES], "FP32")
    features.set_data_from_numpy(np.zeros((1, CREDIT_RISK_FEATURES), dtype=np.float32))
    client.infer("credit_risk", [features])
    with pytest.raises(grpcclient.InferenceServerException):
        client.get_model_metadata("no_such_model")
    ok = _entry(logged_server, r'.*"method":"ModelInfer"')
    assert ok["protocol"] == "grpc" and ok["status"] == "OK"
    missing = _entry(logged_server, r'.*"method":"ModelMetadata"')
    assert missing["status"] == "NOT_FOUND"
    assert missing["peer"].startswith("ipv4:127.0.0.1:")
