"""Deployments through a real gateway: traffic splits, sticky keys, shadows, failover, hot swaps
under load, canary rollouts and the control state rebuilt from the journal after a restart.

Every answer is checked against a direct onnxruntime run of the version the response names.
The module's gateway serves a copy of credit_risk (versions 1 and 2); a test that changes the
deployment's policy or versions restores what it changed (`restore_policy`) or uses a
deployment of its own, loaded through the admin API.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx_models
import pytest
import tritonclient.grpc.aio as grpcclient
import tritonclient.http.aio as httpclient
from conftest import (
    Server,
    copy_credit_risk,
    credit_risk_rows,
    http_request,
    run_direct,
    start_server,
)

DEPLOYMENT = "credit_risk"
FAIL_ABOVE = 1000.0  # the lookalike model fails when a first feature exceeds this
POLL_S = 0.05
WAIT_S = 30.0
# a breaker that re-admits soon, so tests see it open and close
SERVER_CONFIG = """
[breaker]
consecutive_failures = 3
base_ejection_s = 0.5
max_ejection_s = 1.0
"""


# Requests wait up to 5 ms for a batch to fill, so a swap always finds requests in flight on
# the version it takes out of service: unloading must wait for them.
MODEL_CONFIG = """
max_batch_size = 64
max_queue_delay_us = 5000
batch_wait = "fixed"
warmup_file = "warmup.json"
"""


SLOW_CONFIG = """
max_batch_size = 64
max_queue_delay_us = 2000000
batch_wait = "fixed"
timeout_ms = 50
warmup_samples = 0
"""


@pytest.fixture(scope="module")
def lifecycle_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lifecycle")
    models = root / "models"
    copy_credit_risk(models, config=MODEL_CONFIG)
    # a model whose requests wait 2 s for a batch, with a 50 ms timeout: each one times out
    copy_credit_risk(models, "slow", config=SLOW_CONFIG)
    lookalike = root / "lookalike.onnx"
    lookalike.write_bytes(onnx_models.credit_risk_lookalike(FAIL_ABOVE))
    return root


@pytest.fixture(scope="module")
def gateway(lifecycle_root: Path) -> Iterator[Server]:
    with start_server(
        lifecycle_root / "models", SERVER_CONFIG, config_dir=lifecycle_root
    ) as server:
        yield server


def admin(server: Server, method: str, path: str, body: Any = None, **query: str) -> Any:
    """One admin call; fails the test unless it succeeds."""
    answer = admin_answer(server, method, path, body, **query)
    assert answer.status == 200, answer.body
    return answer.json()


def admin_answer(server: Server, method: str, path: str, body: Any = None, **query: str) -> Any:
    headers = server.admin_headers()
    url = f"{server.http_url}/admin{path}"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/octet-stream"
    return http_request(method, url, body, headers)


def set_traffic(server: Server, deployment: str, **policy: Any) -> dict[str, Any]:
    return admin(server, "PUT", f"/deployments/{deployment}/traffic", policy)


@contextlib.contextmanager
def restore_policy(server: Server, deployment: str = DEPLOYMENT) -> Iterator[None]:
    before = admin(server, "GET", f"/deployments/{deployment}")["policy"]
    try:
        yield
    finally:
        set_traffic(server, deployment, **before, reason="test cleanup")


def infer(
    server: Server,
    features: np.ndarray,
    *,
    deployment: str = DEPLOYMENT,
    version: str = "",
    key: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    path = f"/v2/models/{deployment}" + (f"/versions/{version}" if version else "") + "/infer"
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": list(features.shape),
                "data": features.reshape(-1).tolist(),
            }
        ]
    }
    if parameters:
        body["parameters"] = parameters
    headers = {"x-routing-key": key} if key else {}
    answer = http_request("POST", f"{server.http_url}{path}", body, headers)
    assert answer.status == 200, answer.body
    return answer.json()


def version_file(root: Path, version: str) -> Path:
    return root / "models" / DEPLOYMENT / version / "model.onnx"


def assert_answer_of(root: Path, answer: dict[str, Any], features: np.ndarray) -> None:
    """The answer equals what the version it names computes for `features`."""
    expected = run_direct(version_file(root, answer["model_version"]), {"features": features})
    outputs = {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer["outputs"]}
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-5)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(POLL_S)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def version_state(server: Server, deployment: str, version: str) -> dict[str, Any]:
    described = admin(server, "GET", f"/deployments/{deployment}")
    return next(v for v in described["versions"] if v["version"] == version)


# ---- routing ---------------------------------------------------------------------------------


def test_the_repository_routes_each_deployment_to_its_newest_version(gateway: Server) -> None:
    described = admin(gateway, "GET", f"/deployments/{DEPLOYMENT}")
    assert described["policy"]["weights"] == {"2": 100}
    assert described["production"] == "2"
    assert [v["state"] for v in described["versions"]] == ["READY", "READY"]
    answer = infer(gateway, np.zeros((1, 20), np.float32))
    assert answer["model_version"] == "2"
    assert answer["parameters"]["routing"] == "weight"


def test_weights_split_traffic_and_each_answer_names_its_version(
    gateway: Server, lifecycle_root: Path
) -> None:
    rows = credit_risk_rows(np.random.default_rng(1), 400)
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"1": 80, "2": 20}, reason="a/b")
        versions = collections.Counter()
        for row in rows:
            answer = infer(gateway, row[np.newaxis])
            versions[answer["model_version"]] += 1
            assert_answer_of(lifecycle_root, answer, row[np.newaxis])
    # 80/20 over 400 draws: 320 expected, binomial sd 8; 5 sd either side
    assert 280 <= versions["1"] <= 360, versions
    assert versions["1"] + versions["2"] == len(rows)


def test_a_routing_key_always_reaches_the_same_version(gateway: Server) -> None:
    features = np.zeros((1, 20), np.float32)
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"1": 50, "2": 50}, sticky=True)
        chosen = {}
        for customer in range(40):
            key = f"customer-{customer}"
            by_header = {infer(gateway, features, key=key)["model_version"] for _ in range(3)}
            by_parameter = infer(gateway, features, parameters={"routing_key": key})
            assert by_header == {by_parameter["model_version"]}
            assert by_parameter["parameters"]["routing"] == "sticky"
            chosen[key] = by_header.pop()
    # the hash spreads keys over both versions
    assert set(chosen.values()) == {"1", "2"}


def test_a_versioned_path_bypasses_routing(gateway: Server) -> None:
    features = np.zeros((1, 20), np.float32)
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"2": 1})
        for _ in range(5):
            assert infer(gateway, features, version="1")["model_version"] == "1"


def test_metadata_of_a_deployment_is_its_production_version(gateway: Server) -> None:
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"1": 90, "2": 10})
        metadata = http_request("GET", f"{gateway.http_url}/v2/models/{DEPLOYMENT}").json()
        assert metadata["versions"] == ["1", "2"]
        described = admin(gateway, "GET", f"/deployments/{DEPLOYMENT}")
        assert described["production"] == "1"


# ---- shadows ---------------------------------------------------------------------------------


def test_a_shadow_gets_copies_and_its_agreement_is_recorded(
    gateway: Server, lifecycle_root: Path
) -> None:
    rows = credit_risk_rows(np.random.default_rng(2), 30)
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"2": 1}, shadows=["1"])
        before = version_state(gateway, DEPLOYMENT, "1")["shadow"]
        for row in rows:
            answer = infer(gateway, row[np.newaxis])
            assert answer["model_version"] == "2"
        shadow = wait_for(
            lambda: (
                (s := version_state(gateway, DEPLOYMENT, "1")["shadow"])["agreed"]
                + s["disagreed"]
                - before["agreed"]
                - before["disagreed"]
                == len(rows)
                and s
            ),
            "every shadow copy compared",
        )
    assert shadow["copies"] - before["copies"] == len(rows)
    assert shadow["failed"] == before["failed"] and shadow["dropped"] == before["dropped"]
    # the two versions are different models: count their real agreement on these rows
    labels = [
        run_direct(version_file(lifecycle_root, v), {"features": rows})["label"] for v in "12"
    ]
    agreeing = int(np.sum(labels[0] == labels[1]))
    assert shadow["agreed"] - before["agreed"] == agreeing
    assert shadow["p99_ms"] > 0
    metrics = http_request("GET", f"{gateway.http_url}/metrics").body.decode()
    labels = f'{{deployment="{DEPLOYMENT}",version="1"}}'
    assert f"modelgate_shadow_copies_total{labels} {float(shadow['copies'])}" in metrics
    assert f"modelgate_shadow_agreed_total{labels} {float(shadow['agreed'])}" in metrics


def test_a_failing_shadow_never_fails_the_client(gateway: Server, lifecycle_root: Path) -> None:
    deployment = "shadowed"
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        {"version": "1", "source": {"kind": "repository", "model": DEPLOYMENT, "version": "2"}},
    )
    lookalike = (lifecycle_root / "lookalike.onnx").read_bytes()
    admin(gateway, "POST", f"/deployments/{deployment}/versions", lookalike, version="9")
    admin(gateway, "POST", f"/deployments/{deployment}/shadow", {"version": "9", "enabled": True})
    poison = np.full((1, 20), 5 * FAIL_ABOVE, np.float32)
    for _ in range(10):
        assert infer(gateway, poison, deployment=deployment)["model_version"] == "1"
    wait_for(
        lambda: version_state(gateway, deployment, "9")["shadow"]["failed"] == 10,
        "ten failed shadow copies",
    )


# ---- failover --------------------------------------------------------------------------------


def test_a_failing_version_hands_requests_down_its_fallback_chain(
    gateway: Server, lifecycle_root: Path
) -> None:
    deployment = "failover"
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        (lifecycle_root / "lookalike.onnx").read_bytes(),
        version="1",
    )
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        {"version": "2", "source": {"kind": "repository", "model": DEPLOYMENT, "version": "2"}},
    )
    set_traffic(gateway, deployment, weights={"1": 1}, fallback=["2"])
    fine = np.zeros((1, 20), np.float32)
    assert infer(gateway, fine, deployment=deployment)["model_version"] == "1"
    poison = np.full((1, 20), 5 * FAIL_ABOVE, np.float32)
    for _ in range(6):
        answer = infer(gateway, poison, deployment=deployment)
        assert answer["model_version"] == "2"
        assert answer["parameters"]["routing"] == "failover"
        assert_answer_of(lifecycle_root, answer, poison)
    # three failures in a row opened version 1's breaker: even good rows go to the fallback
    breaker = version_state(gateway, deployment, "1")["breaker"]
    assert breaker["state"] == "open" and breaker["ejections"] >= 1
    metrics = http_request("GET", f"{gateway.http_url}/metrics").body.decode()
    assert f'modelgate_breaker_open{{deployment="{deployment}",version="1"}} 1.0' in metrics
    assert infer(gateway, fine, deployment=deployment)["model_version"] == "2"
    # after the ejection a probe gets through, succeeds and closes the breaker
    wait_for(
        lambda: infer(gateway, fine, deployment=deployment)["model_version"] == "1",
        "the breaker to let a probe through",
    )
    assert version_state(gateway, deployment, "1")["breaker"]["state"] == "closed"


def test_without_a_fallback_the_client_gets_the_failure(
    gateway: Server, lifecycle_root: Path
) -> None:
    deployment = "nofallback"
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        (lifecycle_root / "lookalike.onnx").read_bytes(),
        version="1",
    )
    poison = np.full((1, 20), 5 * FAIL_ABOVE, np.float32)
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20]}]}
    body["inputs"][0]["data"] = poison.reshape(-1).tolist()
    url = f"{gateway.http_url}/v2/models/{deployment}/infer"
    answer = http_request("POST", url, body)
    assert answer.status == 500 and "failed" in answer.json()["error"]
    for _ in range(3):
        http_request("POST", url, body)
    # the breaker is open now: the answer says the version is unavailable
    answer = http_request("POST", url, body)
    assert answer.status == 503 and "breaker" in answer.json()["error"]


def test_a_version_that_times_out_fails_over(gateway: Server, lifecycle_root: Path) -> None:
    deployment = "timeouts"
    for version, model in (("1", "slow"), ("2", DEPLOYMENT)):
        source = {"kind": "repository", "model": model, "version": "2"}
        body = {"version": version, "source": source}
        admin(gateway, "POST", f"/deployments/{deployment}/versions", body)
    set_traffic(gateway, deployment, weights={"1": 1}, fallback=["2"])
    started = time.monotonic()
    answer = infer(gateway, np.zeros((1, 20), np.float32), deployment=deployment)
    elapsed = time.monotonic() - started
    assert answer["model_version"] == "2" and answer["parameters"]["routing"] == "failover"
    assert elapsed < 1.0  # the timeout (50 ms), not the batch delay (2 s)
    pinned = http_request(
        "POST",
        f"{gateway.http_url}/v2/models/{deployment}/versions/1/infer",
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20], "data": [0] * 20}]},
    )
    assert pinned.status == 503 and "within 50 ms" in pinned.json()["error"]


# ---- hot swaps under load --------------------------------------------------------------------

SWAPS = 20
CLIENTS = 4  # per transport


async def _closed_loop(
    send: Callable[[np.ndarray], Any], rows: np.ndarray, stop: asyncio.Event
) -> list[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    """Send one row after another until `stop`; every answer with its input."""
    answers = []
    index = 0
    while not stop.is_set():
        row = rows[index % len(rows)][np.newaxis]
        version, outputs = await send(row)
        answers.append((version, row, outputs))
        index += 1
    return answers


async def test_twenty_hot_swaps_under_load_drop_no_request(
    gateway: Server, lifecycle_root: Path
) -> None:
    """Closed-loop clients on HTTP and gRPC while traffic moves between versions and a third
    version is loaded, given traffic, taken out and unloaded: no request fails, and each answer
    is exactly what the version it names computes."""
    shutil.copytree(
        lifecycle_root / "models" / DEPLOYMENT / "2", lifecycle_root / "models" / DEPLOYMENT / "3"
    )
    rows = credit_risk_rows(np.random.default_rng(3), 64)
    http = httpclient.InferenceServerClient(gateway.http_address, conn_limit=CLIENTS)
    grpc = grpcclient.InferenceServerClient(gateway.grpc_address)

    async def via_http(row: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
        features = httpclient.InferInput("features", list(row.shape), "FP32")
        features.set_data_from_numpy(row)
        result = await http.infer(DEPLOYMENT, [features])
        response = result.get_response()
        outputs = {o["name"]: result.as_numpy(o["name"]) for o in response["outputs"]}
        return response["model_version"], outputs

    async def via_grpc(row: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
        features = grpcclient.InferInput("features", list(row.shape), "FP32")
        features.set_data_from_numpy(row)
        result = await grpc.infer(DEPLOYMENT, [features])
        response = result.get_response()
        outputs = {o.name: result.as_numpy(o.name) for o in response.outputs}
        return response.model_version, outputs

    def swap(number: int) -> None:
        step = number % 5
        if step == 0:
            set_traffic(gateway, DEPLOYMENT, weights={"1": 100}, reason=f"swap {number}")
        elif step == 1:
            admin(
                gateway,
                "POST",
                f"/deployments/{DEPLOYMENT}/versions",
                {
                    "version": "3",
                    "source": {"kind": "repository", "model": DEPLOYMENT, "version": "3"},
                },
            )
        elif step == 2:
            set_traffic(gateway, DEPLOYMENT, weights={"1": 50, "3": 50})
        elif step == 3:
            set_traffic(gateway, DEPLOYMENT, weights={"2": 100})
            # at once: requests that were routed to 3 are still queued there
            admin(gateway, "DELETE", f"/deployments/{DEPLOYMENT}/versions/3")
        else:
            set_traffic(gateway, DEPLOYMENT, weights={"1": 50, "2": 50})

    stop = asyncio.Event()
    with restore_policy(gateway):
        clients = [
            asyncio.create_task(_closed_loop(send, rows, stop))
            for send in (via_http, via_grpc)
            for _ in range(CLIENTS)
        ]
        try:
            for number in range(SWAPS):
                await asyncio.to_thread(swap, number)
                # a timer, not a synchronization: let requests run on each policy for a while
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            results = await asyncio.gather(*clients)
            await http.close()
            await grpc.close()
    answers = [answer for client in results for answer in client]
    print(f"{len(answers)} answers during {SWAPS} swaps")
    assert all(len(client) > SWAPS for client in results)  # every client ran through them
    seen = collections.Counter(version for version, _, _ in answers)
    assert set(seen) <= {"1", "2", "3"} and len(seen) == 3, seen
    for version, row, outputs in answers:
        expected = run_direct(version_file(lifecycle_root, version), {"features": row})
        np.testing.assert_array_equal(outputs["label"], expected["label"])
        np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-5)
    assert version_state(gateway, DEPLOYMENT, "3")["state"] == "UNLOADED"


# ---- canary ----------------------------------------------------------------------------------

FAST_PLAN = {
    "steps": [20, 50, 100],
    "dwell_s": 0.3,
    "check_interval_s": 0.3,
    "failure_limit": 2,
    "guards": {"min_requests": 5, "max_p99_ms": 1000.0},
}


def _load_canary_deployment(gateway: Server, lifecycle_root: Path, deployment: str) -> None:
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        {"version": "1", "source": {"kind": "repository", "model": DEPLOYMENT, "version": "1"}},
    )
    admin(
        gateway,
        "POST",
        f"/deployments/{deployment}/versions",
        (lifecycle_root / "lookalike.onnx").read_bytes(),
        version="2",
    )


def _traffic_until(gateway: Server, deployment: str, rows: np.ndarray, done: Callable) -> dict:
    """Send requests (any answer status) until `done(deployment description)` holds."""
    url = f"{gateway.http_url}/v2/models/{deployment}/infer"
    deadline = time.monotonic() + WAIT_S
    index = 0
    while time.monotonic() < deadline:
        row = rows[index % len(rows)]
        body = {
            "inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 20], "data": row.tolist()}
            ]
        }
        http_request("POST", url, body)
        index += 1
        if index % 10 == 0:
            described = admin(gateway, "GET", f"/deployments/{deployment}")
            if done(described):
                return described
    pytest.fail(f"the rollout of {deployment} did not finish in {WAIT_S} s")


def test_a_healthy_canary_is_promoted_step_by_step(gateway: Server, lifecycle_root: Path) -> None:
    deployment = "canary_good"
    _load_canary_deployment(gateway, lifecycle_root, deployment)
    started = admin(
        gateway, "POST", f"/deployments/{deployment}/canary", {"version": "2", "plan": FAST_PLAN}
    )
    assert started["policy"]["weights"] == {"1": 80, "2": 20}
    rows = np.zeros((8, 20), np.float32)  # the lookalike answers these
    done = _traffic_until(
        gateway, deployment, rows, lambda d: d["rollout"]["phase"] != "progressing"
    )
    assert done["rollout"]["phase"] == "promoted"
    assert done["policy"]["weights"] == {"2": 100}
    operations = [
        c["operation"]
        for c in admin(gateway, "GET", f"/deployments/{deployment}/history")["changes"]
    ]
    assert operations[-4:] == ["canary.start", "canary.step", "canary.step", "canary.promote"]


def test_a_failing_canary_is_rolled_back_with_the_reason(
    gateway: Server, lifecycle_root: Path
) -> None:
    deployment = "canary_bad"
    _load_canary_deployment(gateway, lifecycle_root, deployment)
    admin(gateway, "POST", f"/deployments/{deployment}/canary", {"version": "2", "plan": FAST_PLAN})
    # every other row makes the canary fail: its success rate falls far below 99 %
    rows = np.zeros((8, 20), np.float32)
    rows[::2, 0] = 5 * FAIL_ABOVE
    done = _traffic_until(
        gateway, deployment, rows, lambda d: d["rollout"]["phase"] != "progressing"
    )
    rollout = done["rollout"]
    assert rollout["phase"] == "rolled_back"
    assert "success rate" in rollout["reason"] and rollout["failed_checks"] == 2
    assert done["policy"]["weights"] == {"1": 100}
    last = admin(gateway, "GET", f"/deployments/{deployment}/history")["changes"][-1]
    assert last["operation"] == "canary.rollback" and last["actor"] == "rollout-controller"


def test_an_operator_pauses_and_aborts_a_canary(gateway: Server, lifecycle_root: Path) -> None:
    deployment = "canary_manual"
    _load_canary_deployment(gateway, lifecycle_root, deployment)
    plan = {**FAST_PLAN, "dwell_s": 3600.0}
    admin(gateway, "POST", f"/deployments/{deployment}/canary", {"version": "2", "plan": plan})
    paused = admin(gateway, "POST", f"/deployments/{deployment}/canary/pause", {"reason": "look"})
    assert paused["rollout"]["phase"] == "paused" and paused["policy"]["weights"]["2"] == 20
    again = admin_answer(gateway, "POST", f"/deployments/{deployment}/canary/pause", {})
    assert again.status == 400 and "already paused" in again.json()["error"]
    aborted = admin(gateway, "POST", f"/deployments/{deployment}/canary/abort", {"reason": "no"})
    assert aborted["rollout"]["phase"] == "aborted"
    assert aborted["policy"]["weights"] == {"1": 100}


# ---- rollback and restart --------------------------------------------------------------------


def test_rollback_restores_the_previous_policy(gateway: Server) -> None:
    with restore_policy(gateway):
        set_traffic(gateway, DEPLOYMENT, weights={"1": 30, "2": 70}, reason="first")
        set_traffic(gateway, DEPLOYMENT, weights={"1": 100}, reason="second")
        rolled = admin(gateway, "POST", f"/deployments/{DEPLOYMENT}/rollback", {"reason": "oops"})
        assert rolled["policy"]["weights"] == {"1": 30, "2": 70}
        last = admin(gateway, "GET", f"/deployments/{DEPLOYMENT}/history")["changes"][-1]
        assert last["operation"] == "rollback" and last["reason"] == "oops"
        assert last["actor"].startswith("token:admin")


def test_a_restarted_gateway_replays_its_deployments(tmp_path: Path) -> None:
    models = tmp_path / "models"
    copy_credit_risk(models)
    journal = tmp_path / "journal"
    lookalike = onnx_models.credit_risk_lookalike(FAIL_ABOVE)
    with start_server(models, config_dir=tmp_path, journal_dir=journal) as first:
        admin(first, "POST", f"/deployments/{DEPLOYMENT}/versions", lookalike, version="7")
        set_traffic(first, DEPLOYMENT, weights={"1": 60, "7": 40}, fallback=["2"], reason="r")
        before = admin(first, "GET", f"/deployments/{DEPLOYMENT}")
    with start_server(models, config_dir=tmp_path, journal_dir=journal) as second:
        after = admin(second, "GET", f"/deployments/{DEPLOYMENT}")
        assert after["policy"] == before["policy"]
        seven = next(v for v in after["versions"] if v["version"] == "7")
        assert seven["state"] == "READY" and seven["source"]["kind"] == "upload"
        assert seven["content_hash"] == before["versions"][-1]["content_hash"]
        answer = infer(second, np.zeros((1, 20), np.float32), version="7")
        assert answer["model_version"] == "7"


def test_a_refused_upload_keeps_no_file(gateway: Server) -> None:
    other_signature = onnx_models.identity("FP32")
    answer = admin_answer(
        gateway, "POST", f"/deployments/{DEPLOYMENT}/versions", other_signature, version="5"
    )
    assert answer.status == 400 and "differ from the deployment's" in answer.json()["error"]
    digest = hashlib.sha256(other_signature).hexdigest()
    assert not (gateway.journal / "uploads" / digest).exists()
    assert "5" not in [
        v["version"] for v in admin(gateway, "GET", f"/deployments/{DEPLOYMENT}")["versions"]
    ]
