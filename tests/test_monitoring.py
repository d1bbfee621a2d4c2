"""Drift and accuracy through a real gateway: traffic drawn from a version's training-data
profile scores as such, shifted traffic alerts on the shifted feature, NaN and inf are counted,
a profile that does not fit is refused at load, and actuals join their predictions (HTTP and
gRPC), with bad payloads refused whole."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.http as httpclient
from conftest import CREDIT_RISK, Server, copy_credit_risk, http_request, run_direct, start_server
from google.protobuf import json_format, struct_pb2

from gateway._proto import admin_pb2, admin_pb2_grpc
from gateway.monitoring.profile import load_profile, profile_id, save_profile

CONFIG = """
[monitoring.drift]
window_s = 1.0
min_rows = 200
"""
ROWS_PER_REQUEST = 25
SHIFTED = "income"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("monitoring")
    copy_credit_risk(root / "models")
    return root


@pytest.fixture(scope="module")
def gateway(root: Path) -> Iterator[Server]:
    with start_server(root / "models", CONFIG, config_dir=root) as server:
        yield server


def profile_rows(profile: dict[str, Any], rows: int, seed: int) -> np.ndarray:
    """Rows whose features follow the profile's reference shares: its bins (uniform inside
    each), and its missing values (NaN)."""
    rng = np.random.default_rng(seed)
    columns = []
    for feature in sorted(profile["features"], key=lambda f: f["index"]):
        edges = np.asarray(feature["edges"])
        shares = np.asarray([*feature["proportions"]["bins"], feature["proportions"]["missing"]])
        chosen = rng.choice(len(shares), size=rows, p=shares / shares.sum())
        inside = np.minimum(chosen, len(edges) - 2)
        values = rng.uniform(edges[inside], edges[inside + 1])
        values[chosen == len(shares) - 1] = np.nan
        columns.append(values)
    return np.column_stack(columns).astype(np.float32)


def admin(server: Server, method: str, path: str, body: Any = None) -> Any:
    answer = http_request(method, f"{server.http_url}/admin{path}", body, server.admin_headers())
    assert answer.status == 200, answer.body
    return answer.json()


def send(server: Server, deployment: str, rows: np.ndarray, ids: str = "") -> list[Any]:
    """The rows in requests of ROWS_PER_REQUEST, as binary tensors (they carry NaN, which JSON
    cannot); request ids `<ids>-<first row>` when given."""
    client = httpclient.InferenceServerClient(server.http_address)
    answers = []
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        chunk = rows[start : start + ROWS_PER_REQUEST]
        features = httpclient.InferInput("features", list(chunk.shape), "FP32")
        features.set_data_from_numpy(chunk, binary_data=True)
        request_id = f"{ids}-{start}" if ids else ""
        answers.append(client.infer(deployment, [features], request_id=request_id))
    return answers


def drift(server: Server, deployment: str) -> dict[str, Any]:
    url = f"{server.http_url}/v2/models/{deployment}/versions/1/drift?window=1h"
    answer = http_request("GET", url)
    assert answer.status == 200, answer.body
    (version,) = answer.json()["versions"]
    return version


def load_v2_as(server: Server, deployment: str) -> None:
    source = {"kind": "repository", "model": "credit_risk", "version": "2"}
    admin(server, "POST", f"/deployments/{deployment}/versions", {"version": "1", "source": source})


def test_traffic_like_the_training_data_does_not_drift(gateway: Server) -> None:
    load_v2_as(gateway, "steady")
    profile = load_profile(CREDIT_RISK / "2" / "profile.json")
    send(gateway, "steady", profile_rows(profile, 1000, seed=1))
    scores = drift(gateway, "steady")
    assert scores["window"]["rows"] == 1000 and scores["profile_id"] == profile["id"]
    # every feature as in training (the outputs may differ: these rows draw each feature on
    # its own, without the correlations of the training data)
    assert scores["overall"]["drifted_share"] == 0.0, scores["overall"]
    assert {f["status"] for f in scores["features"]} == {"ok"}
    assert max(f["psi"] for f in scores["features"]) < 0.1


def test_a_shifted_feature_alerts_and_the_others_do_not(gateway: Server) -> None:
    load_v2_as(gateway, "shifted")
    profile = load_profile(CREDIT_RISK / "2" / "profile.json")
    rows = profile_rows(profile, 1000, seed=2)
    column = next(f["index"] for f in profile["features"] if f["name"] == SHIFTED)
    rows[:, column] *= 3.0
    send(gateway, "shifted", rows)
    features = {f["name"]: f for f in drift(gateway, "shifted")["features"]}
    assert features[SHIFTED]["status"] == "alert" and features[SHIFTED]["psi"] > 0.25
    assert all(f["psi"] < 0.25 for name, f in features.items() if name != SHIFTED)
    metrics = http_request("GET", f"{gateway.http_url}/metrics").body.decode()
    labels = f'deployment="shifted",feature="{SHIFTED}",version="1"'
    assert f"modelgate_drift_psi{{{labels}}}" in metrics
    assert 'modelgate_drift_rows_total{deployment="shifted",version="1"} 1000.0' in metrics


def test_nan_and_inf_are_counted_not_errors(gateway: Server) -> None:
    load_v2_as(gateway, "holes")
    rows = profile_rows(load_profile(CREDIT_RISK / "2" / "profile.json"), 40, seed=3)
    rows[:, 0] = 40.0  # age: no NaN of its own
    rows[:10, 0] = np.nan
    rows[10:20, 0] = np.inf
    send(gateway, "holes", rows)
    first = drift(gateway, "holes")["features"][0]
    assert first["missing"] == pytest.approx(0.25)
    assert first["out_of_range"] == pytest.approx(0.25)
    described = admin(gateway, "GET", "/deployments/holes")
    assert described["versions"][0]["drift"]["errors"] == 0


def test_a_profile_that_does_not_fit_the_model_is_refused(gateway: Server, root: Path) -> None:
    folder = root / "models" / "narrow" / "1"
    shutil.copytree(CREDIT_RISK / "2", folder)
    profile = load_profile(folder / "profile.json")
    del profile["features"][-1]
    profile.pop("id")
    profile["id"] = profile_id(profile)
    save_profile(profile, folder / "profile.json")
    source = {"kind": "repository", "model": "narrow", "version": "1"}
    answer = http_request(
        "POST",
        f"{gateway.http_url}/admin/deployments/narrow/versions",
        {"version": "1", "source": source},
        gateway.admin_headers(),
    )
    assert answer.status == 400 and "profile" in answer.json()["error"], answer.body
    listed = admin(gateway, "GET", "/deployments")["deployments"]
    assert "narrow" not in [d["name"] for d in listed]


def test_actuals_join_their_predictions(gateway: Server) -> None:
    rows = profile_rows(load_profile(CREDIT_RISK / "2" / "profile.json"), 10, seed=4)
    predicted = []
    for index, row in enumerate(rows):
        answer = send(gateway, "credit_risk", row[np.newaxis], ids=f"loan{index}")[0]
        assert answer.get_response()["id"] == f"loan{index}-0"
        predicted.append(int(answer.as_numpy("label")[0]))
    expected = run_direct(CREDIT_RISK / "2" / "model.onnx", {"features": rows})["label"]
    assert predicted == expected.tolist()
    # six right, four wrong
    actuals = [
        {"id": f"loan{i}-0", "actual": p if i < 6 else 1 - p} for i, p in enumerate(predicted)
    ]
    url = f"{gateway.http_url}/v2/models/credit_risk/actuals"
    before = report(gateway)
    bad = post_list(url, [*actuals[:3], {"id": "loan3-0", "actual": "maybe"}])
    assert bad.status == 400 and "actuals[3]" in bad.json()["error"]
    assert report(gateway) == before  # nothing half-applied
    answer = post_list(url, [*actuals[:8], {"id": "nobody", "actual": 1}])
    assert answer.status == 200, answer.body
    assert answer.json()["joined"] == 8 and answer.json()["unknown_ids"] == ["nobody"]
    with grpc.insecure_channel(gateway.grpc_address) as channel:
        listed = struct_pb2.ListValue()
        listed.extend([json_format.ParseDict(a, struct_pb2.Struct()) for a in actuals[7:]])
        joined = admin_pb2_grpc.AdminStub(channel).SendActuals(
            admin_pb2.ActualsRequest(deployment="credit_risk", actuals=listed),
            metadata=(("authorization", f"Bearer {gateway.admin_token}"),),
        )
    result = json_format.MessageToDict(joined)["report"]
    assert result["joined"] == 2 and result["duplicate_ids"] == ["loan7-0"]
    version = next(v for v in report(gateway)["versions"] if v["version"] == "2")
    assert version["count"] == 10 and version["accuracy"] == pytest.approx(0.6)
    assert version["kind"] == "classification" and version["auc"] is not None
    metrics = http_request("GET", f"{gateway.http_url}/metrics").body.decode()
    assert 'modelgate_actuals_joined_total{deployment="credit_risk",version="2"} 10.0' in metrics
    assert 'modelgate_actuals_refused_total{deployment="credit_risk",reason="unknown"}' in metrics


def post_list(url: str, entries: list[dict[str, Any]]) -> Any:
    return http_request("POST", url, json.dumps(entries).encode())


def report(server: Server) -> dict[str, Any]:
    answer = http_request("GET", f"{server.http_url}/v2/models/credit_risk/accuracy?window=1h")
    assert answer.status == 200, answer.body
    return answer.json()


def test_the_drift_table_on_the_command_line(gateway: Server) -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "gateway", "drift", "shifted", "--window", "1h"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MODELGATE_URL": gateway.http_url, "MODELGATE_TOKEN": gateway.admin_token},
    )
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("version 1 (READY), profile ")
    income = next(line for line in lines if line.startswith(SHIFTED + " "))
    assert income.split()[-1] == "alert"
    options = ["--url", gateway.http_url, "--token", gateway.admin_token, "--json"]
    as_json = subprocess.run(
        [sys.executable, "-m", "gateway", "admin", *options, "drift", "shifted"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(as_json.stdout)["versions"][0]["overall"]["status"] in ("ok", "warn", "alert")


def test_sketches_and_predictions_can_be_turned_off(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "models")
    config = "[monitoring]\nsketches = false\naccuracy = false\n"
    with start_server(tmp_path / "models", config, config_dir=tmp_path) as server:
        answer = send(server, "credit_risk", np.zeros((1, 20), np.float32), ids="off")[0]
        url = f"{server.http_url}/v2/models/credit_risk/versions/2/drift"
        (version,) = http_request("GET", url).json()["versions"]
        assert "not monitored" in version["error"]
        actual = [{"id": answer.get_response()["id"], "actual": 1}]
        joined = post_list(f"{server.http_url}/v2/models/credit_risk/actuals", actual).json()
        assert joined["joined"] == 0 and joined["unknown_ids"] == ["off-0"]


def test_a_profile_given_at_load_is_kept_and_survives_a_restart(tmp_path: Path) -> None:
    """An uploaded model has no profile next to it: one given with it is stored under its id,
    feeds the version's drift sketches, names the profile in prediction records, and is found
    again when the admin stream is replayed."""
    copy_credit_risk(tmp_path / "models")
    journal = tmp_path / "journal"
    profile = load_profile(CREDIT_RISK / "2" / "profile.json")
    body = {
        "version": "5",
        "model": base64.b64encode((CREDIT_RISK / "2" / "model.onnx").read_bytes()).decode(),
        "profile": profile,
    }
    with start_server(tmp_path / "models", config_dir=tmp_path, journal_dir=journal) as first:
        described = admin(first, "POST", "/deployments/uploaded/versions", body)
        (version,) = described["versions"]
        assert version["source"]["profile"] == profile["id"]
        assert version["drift"]["profile_id"] == profile["id"]
        assert version["profile_id"] == profile["id"]
        for version_name, bad_profile, why in (
            ("6", {**profile, "created_from": {}}, "id does not match"),  # tampered
            ("7", {"features": []}, "modelgate.profile/1"),  # not a profile
        ):
            refused = http_request(
                "POST",
                f"{first.http_url}/admin/deployments/uploaded/versions",
                {**body, "version": version_name, "profile": bad_profile},
                first.admin_headers(),
            )
            assert refused.status == 400 and why in refused.json()["error"]
    assert (journal / "uploads" / "profiles" / f"{profile['id']}.json").is_file()
    with start_server(tmp_path / "models", config_dir=tmp_path, journal_dir=journal) as second:
        send(second, "uploaded", profile_rows(profile, 50, seed=6))
        url = f"{second.http_url}/v2/models/uploaded/versions/5/drift?window=1h"
        (scores,) = http_request("GET", url).json()["versions"]
        assert scores["profile_id"] == profile["id"] and scores["window"]["rows"] == 50
