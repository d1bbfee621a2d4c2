"""KServe's Python SDK (`kserve.InferenceRESTClient`, `kserve.InferenceGRPCClient`) against the
gateway, unchanged: health, model readiness, inference with JSON and with binary tensors over
REST, raw tensors over gRPC, and the errors a KServe user sees.

KServe pins versions that clash with ours (protobuf, starlette...), so the SDK runs in the bench's
KServe venv (about 25 s and 450 MB on first use, kept in our venv like MLServer's), through
kserve_client.py, which prints what each call returned or raised.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import credit_risk_rows, model_file, peer_cache_dir, run_direct
from gateway.bench import kserve
from gateway.bench.venvs import PeerSetupError

CLIENT = Path(__file__).with_name("kserve_client.py")
MODEL = "credit_risk"
ROWS = 5
RUN_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return credit_risk_rows(np.random.default_rng(7100), ROWS)


@pytest.fixture(scope="module")
def answers(
    http_url: str, grpc_address: str, rows: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """What every call of kserve_client.py returned or raised, by name."""
    try:
        venv = kserve.ensure_venv(peer_cache_dir("kserve"))
    except PeerSetupError as error:
        pytest.fail(f"cannot install KServe's SDK: {error}")
    rows_file = tmp_path_factory.mktemp("kserve") / "rows.json"
    rows_file.write_text(json.dumps(rows.tolist()))
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(CLIENT), http_url, grpc_address, MODEL, str(rows_file)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "call",
    ["rest_live", "rest_ready", "rest_model_ready", "grpc_live", "grpc_ready", "grpc_model_ready"],
)
def test_health_and_readiness(answers: dict[str, Any], call: str) -> None:
    assert answers[call] == {"result": True}


@pytest.mark.parametrize("call", ["rest_json", "rest_binary", "grpc"])
def test_inference_matches_onnxruntime(
    answers: dict[str, Any], call: str, rows: np.ndarray, repository: Path
) -> None:
    expected = run_direct(model_file(repository, MODEL, "2"), {"features": rows})
    answer = answers[call]
    assert "error" not in answer, answer
    result = answer["result"]
    assert result["id"] == call.replace("_", "-")  # the request id each call sent
    assert result["model_name"] == MODEL
    assert result.get("binary") == {"rest_json": False, "rest_binary": True}.get(call)
    outputs = result["outputs"]
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "code", "fragments"),
    [
        ("rest_unknown_model", None, ("404", "no_such_model")),
        ("rest_wrong_shape", None, ("400", "features", "[5, 19]")),
        ("grpc_wrong_shape", "INVALID_ARGUMENT", ("features", "[5, 19]")),
    ],
)
def test_errors_reach_the_user_with_the_gateways_message(
    answers: dict[str, Any], call: str, code: str | None, fragments: tuple[str, ...]
) -> None:
    answer = answers[call]
    assert "error" in answer, answer
    assert answer["code"] == code
    for fragment in fragments:
        assert fragment in answer["text"]
