"""Versions on a real Triton server next to local ONNX versions, through a real gateway: load
one through the admin API, split traffic between local and remote, and fail over from a killed
Triton to the local version within the same client requests.

The session's tritonserver serves the example's version 2 as `credit_risk`, with the same
signature as the local files, so remote and local versions can share a deployment.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    CREDIT_RISK,
    Server,
    copy_credit_risk,
    credit_risk_rows,
    http_request,
    run_direct,
    start_server,
)

DEPLOYMENT = "credit_risk"
REMOTE = "3"  # the version label the remote model gets in the gateway
CONFIG = """
health_interval_s = 0.2

[breaker]
consecutive_failures = 2
base_ejection_s = 0.3
max_ejection_s = 0.6
"""
FAILOVER_BOUND_S = 1.0
WAIT_S = 30.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("remote-lifecycle")
    copy_credit_risk(root / "models")
    with start_server(root / "models", CONFIG, config_dir=root) as server:
        yield server


def admin(server: Server, method: str, path: str, body: Any = None) -> Any:
    url = f"{server.http_url}/admin{path}"
    answer = http_request(method, url, body, server.admin_headers())
    assert answer.status == 200, answer.body
    return answer.json()


def infer(server: Server, rows: np.ndarray, version: str = "") -> tuple[int, dict[str, Any]]:
    path = f"/versions/{version}" if version else ""
    body = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.reshape(-1).tolist(),
            }
        ]
    }
    answer = http_request("POST", f"{server.http_url}/v2/models/{DEPLOYMENT}{path}/infer", body)
    return answer.status, answer.json()


def assert_like_version_2(answer: dict[str, Any], rows: np.ndarray) -> None:
    """Triton serves the example's version 2: every answer, local or remote, must equal it."""
    expected = run_direct(CREDIT_RISK / "2" / "model.onnx", {"features": rows})
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-5)


def assert_split_with_version_2(gateway: Server, other: str, seed: int, requests: int) -> None:
    """Split the traffic evenly between local version 2 and `other`: both answer, and every
    answer equals version 2's; the policy is restored afterwards."""
    admin(gateway, "PUT", f"/deployments/{DEPLOYMENT}/traffic", {"weights": {"2": 1, other: 1}})
    try:
        seen: collections.Counter[str] = collections.Counter()
        for row in credit_risk_rows(np.random.default_rng(seed), requests):
            status, answer = infer(gateway, row[np.newaxis])
            assert status == 200, answer
            seen[answer["model_version"]] += 1
            assert_like_version_2(answer, row[np.newaxis])
        assert set(seen) == {"2", other}, seen
    finally:
        admin(gateway, "PUT", f"/deployments/{DEPLOYMENT}/traffic", {"weights": {"2": 1}})


@pytest.fixture(scope="module")
def remote_version(gateway: Server, triton: Any) -> dict[str, Any]:
    source = {"kind": "remote", "url": triton.grpc_url, "model": DEPLOYMENT}
    described = admin(
        gateway,
        "POST",
        f"/deployments/{DEPLOYMENT}/versions",
        {"version": REMOTE, "source": source},
    )
    return next(v for v in described["versions"] if v["version"] == REMOTE)


def test_a_triton_version_loads_warms_up_and_answers(
    gateway: Server, remote_version: dict[str, Any]
) -> None:
    assert remote_version["state"] == "READY"
    assert remote_version["source"]["kind"] == "remote"
    assert remote_version["content_hash"].startswith("grpc://")
    rows = credit_risk_rows(np.random.default_rng(11), 5)
    status, answer = infer(gateway, rows, version=REMOTE)
    assert status == 200 and answer["model_version"] == REMOTE
    assert_like_version_2(answer, rows)


def test_an_ab_split_between_local_onnx_and_triton(
    gateway: Server, remote_version: dict[str, Any]
) -> None:
    assert_split_with_version_2(gateway, REMOTE, seed=12, requests=60)


def test_a_killed_triton_fails_over_to_local_onnx_without_client_errors(
    gateway: Server, remote_version: dict[str, Any], triton: Any
) -> None:
    """Closed-loop load on a deployment served by Triton with the local version as fallback:
    kill -9 Triton mid-load; no request fails, and answers come from the local version within
    FAILOVER_BOUND_S. Triton restarted on the same ports: the health check closes the breaker
    and the remote version serves again."""
    policy = {"weights": {REMOTE: 1}, "fallback": ["2"]}
    admin(gateway, "PUT", f"/deployments/{DEPLOYMENT}/traffic", policy)
    rows = credit_risk_rows(np.random.default_rng(13), 32)
    answers: list[tuple[float, int, str]] = []
    answered: list[tuple[np.ndarray, dict[str, Any]]] = []  # checked after the load
    stop = threading.Event()

    def load() -> None:
        index = 0
        while not stop.is_set():
            row = rows[index % len(rows)][np.newaxis]
            status, answer = infer(gateway, row)
            if status == 200:
                answered.append((row, answer))
            answers.append((time.monotonic(), status, answer.get("model_version", "")))
            index += 1

    client = threading.Thread(target=load, name="closed-loop")
    client.start()
    try:
        _wait(lambda: sum(1 for _, _, v in answers if v == REMOTE) >= 20, "remote answers")
        killed = time.monotonic()
        triton.kill()
        _wait(lambda: any(t > killed and v == "2" for t, _, v in answers), "a local answer")
        first_local = min(t for t, _, v in answers if t > killed and v == "2")
        count_at_kill = len(answers)
        _wait(lambda: len(answers) > count_at_kill + 50, "answers after the kill")
        triton.start(keep_ports=True)
        restarted = time.monotonic()
        _wait(
            lambda: any(t > restarted and v == REMOTE for t, _, v in answers),
            "the remote version back in service",
        )
    finally:
        stop.set()
        client.join(WAIT_S)
        admin(gateway, "PUT", f"/deployments/{DEPLOYMENT}/traffic", {"weights": {"2": 1}})
    failed = [(t, s) for t, s, _ in answers if s != 200]
    assert not failed, f"{len(failed)} failed requests, first: {failed[:3]}"
    for row, answer in answered:
        assert_like_version_2(answer, row)
    print(f"failover after {1000 * (first_local - killed):.1f} ms, {len(answers)} requests")
    assert first_local - killed < FAILOVER_BOUND_S
    breaker = next(
        v
        for v in admin(gateway, "GET", f"/deployments/{DEPLOYMENT}")["versions"]
        if v["version"] == REMOTE
    )["breaker"]
    assert breaker["ejections"] >= 1


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_remote_version_that_cannot_be_reached_is_refused(
    gateway: Server, tmp_path: Path
) -> None:
    source = {"kind": "remote", "url": "127.0.0.1:1", "model": DEPLOYMENT, "timeout_s": 1.0}
    answer = http_request(
        "POST",
        f"{gateway.http_url}/admin/deployments/{DEPLOYMENT}/versions",
        {"version": "8", "source": source},
        gateway.admin_headers(),
    )
    assert answer.status in (400, 503) and "error" in answer.json()
    described = admin(gateway, "GET", f"/deployments/{DEPLOYMENT}")
    assert "8" not in [v["version"] for v in described["versions"]]


def test_a_version_on_mlserver_joins_the_deployment(gateway: Server, mlserver: Any) -> None:
    """MLServer as a second real V2 peer: loaded, warmed up and validated like any version,
    then serving a share of the deployment's traffic."""
    source = {"kind": "remote", "url": mlserver.spec.endpoint.grpc_target, "model": DEPLOYMENT}
    described = admin(
        gateway, "POST", f"/deployments/{DEPLOYMENT}/versions", {"version": "4", "source": source}
    )
    four = next(v for v in described["versions"] if v["version"] == "4")
    assert four["state"] == "READY" and four["source"]["kind"] == "remote"
    assert_split_with_version_2(gateway, "4", seed=14, requests=40)
