"""Tokens and roles on both transports: 401 / UNAUTHENTICATED without valid credentials,
403 / PERMISSION_DENIED without the role, the admin token API, and every denial journaled."""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import CREDIT_RISK_FEATURES, Server, copy_credit_risk, http_request, start_server

from gateway._proto import admin_pb2, admin_pb2_grpc
from gateway.config import JournalConfig
from gateway.governance.ledger import ADMIN, Ledger

ROWS = np.random.default_rng(3).random((1, CREDIT_RISK_FEATURES), dtype=np.float32)
FEATURES = {"name": "features", "datatype": "FP32", "shape": [1, 20], "data": ROWS.ravel().tolist()}
BODY = {"inputs": [FEATURES]}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create(server: Server, name: str, role: str, scopes: list[str] | None = None) -> dict:
    body: dict = {"name": name, "role": role}
    if scopes is not None:
        body["scopes"] = scopes
    answer = http_request(
        "POST", f"{server.http_url}/admin/tokens", body, headers=server.admin_headers()
    )
    assert answer.status == 201, answer.body
    return answer.json()


def _infer_http(server: Server, headers: dict[str, str] | None = None):
    return http_request(
        "POST", f"{server.http_url}/v2/models/credit_risk/infer", BODY, headers=headers
    )


def _infer_grpc(server: Server, token: str | None) -> grpc.StatusCode:
    client = grpcclient.InferenceServerClient(server.grpc_address)
    features = grpcclient.InferInput("features", [1, CREDIT_RISK_FEATURES], "FP32")
    features.set_data_from_numpy(ROWS)
    # gRPC metadata keys are lowercase
    headers = {"authorization": f"Bearer {token}"} if token else None
    try:
        client.infer("credit_risk", [features], headers=headers)
    except grpcclient.InferenceServerException as error:
        return grpc.StatusCode[error.status().removeprefix("StatusCode.")]
    return grpc.StatusCode.OK


@pytest.fixture
def locked_server(tmp_path: Path):
    copy_credit_risk(tmp_path / "repository")
    with start_server(tmp_path / "repository", "[auth]\ninference = true\n") as server:
        yield server


def _admin_records(journal: Path) -> list:
    ledger = Ledger.open(JournalConfig(path=str(journal)))
    try:
        return list(ledger.journal.read(ADMIN))
    finally:
        ledger.close()


def test_inference_needs_a_token_with_the_predictor_role(locked_server: Server) -> None:
    viewer = _create(locked_server, "dashboard", "viewer")["token"]
    predictor = _create(locked_server, "app", "predictor")["token"]
    other = _create(locked_server, "other-app", "predictor", ["fraud"])["token"]

    missing = _infer_http(locked_server)
    assert missing.status == 401 and "no credentials" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert _infer_http(locked_server, _bearer("mg_not-a-token")).status == 401
    assert _infer_http(locked_server, {"Authorization": "Digest x"}).status == 401
    forbidden = _infer_http(locked_server, _bearer(viewer))
    assert forbidden.status == 403 and "predictor" in forbidden.json()["error"]
    assert _infer_http(locked_server, _bearer(other)).status == 403  # out of its scope
    assert _infer_http(locked_server, _bearer(predictor)).status == 200

    assert _infer_grpc(locked_server, None) is grpc.StatusCode.UNAUTHENTICATED
    assert _infer_grpc(locked_server, "mg_bad") is grpc.StatusCode.UNAUTHENTICATED
    assert _infer_grpc(locked_server, viewer) is grpc.StatusCode.PERMISSION_DENIED
    assert _infer_grpc(locked_server, predictor) is grpc.StatusCode.OK

    # health, server metadata and metrics stay open for probes and scrapers
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics"):
        assert http_request("GET", f"{locked_server.http_url}{path}").status == 200
    # model reads need a token too when inference auth is on; a viewer may read
    metadata = f"{locked_server.http_url}/v2/models/credit_risk"
    assert http_request("GET", metadata).status == 401
    assert http_request("GET", metadata, headers=_bearer(viewer)).status == 200


def test_every_denial_is_journaled(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "repository")
    with start_server(tmp_path / "repository", "[auth]\ninference = true\n") as server:
        viewer = _create(server, "dashboard", "viewer")["token"]
        _infer_http(server)
        _infer_http(server, _bearer(viewer))
        _infer_grpc(server, "mg_bad")
        assert _infer_http(server, _bearer(server.admin_token)).status == 200
        journal = server.journal
    denials = [r for r in _admin_records(journal) if r.kind == "denied"]
    assert [(d.payload["error"], d.payload["operation"]) for d in denials] == [
        ("unauthenticated", "infer"),
        ("forbidden", "infer"),
        ("unauthenticated", "infer"),
    ]
    assert denials[1].actor.startswith("token:dashboard/")
    assert denials[0].actor == "unauthenticated"
    for secret in (viewer, "mg_bad"):  # no credentials in the journal
        assert all(secret not in str(d.payload) for d in denials)


def test_admin_token_api_and_its_journal(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "repository")
    with start_server(tmp_path / "repository") as server:
        tokens = f"{server.http_url}/admin/tokens"
        created = _create(server, "ci-bot", "operator", ["credit_risk"])
        secret = created["token"]
        assert secret.startswith("mg_") and created["role"] == "operator"
        listing = http_request("GET", tokens, headers=server.admin_headers())
        assert listing.status == 200 and secret.encode() not in listing.body
        assert "ci-bot" in {t["name"] for t in listing.json()["tokens"]}
        # the admin API always needs credentials, and the admin role
        assert http_request("GET", tokens).status == 401
        assert http_request("GET", tokens, headers=_bearer(secret)).status == 403
        bad = http_request(
            "POST", tokens, {"name": "x", "role": "god"}, headers=server.admin_headers()
        )
        assert bad.status == 400 and "god" in bad.json()["error"]
        unknown = http_request("DELETE", f"{tokens}/ffffffff", headers=server.admin_headers())
        assert unknown.status == 404
        revoked = http_request(
            "DELETE", f"{tokens}/{created['id']}", headers=server.admin_headers()
        )
        assert revoked.status == 200 and revoked.json()["revoked_at"]
        assert _infer_http(server, _bearer(secret)).status == 401  # a revoked token
        journal = server.journal
    kinds = [(r.kind, r.actor) for r in _admin_records(journal) if r.kind.startswith("token.")]
    assert kinds[0] == ("token.created", "bootstrap")
    assert [k for k, _ in kinds[1:]] == ["token.created", "token.revoked"]
    assert all(actor.startswith("token:admin/") for _, actor in kinds[1:])


def test_first_start_shows_the_admin_token_once(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "repository")
    with start_server(tmp_path / "repository") as first:
        token_file = first.journal / "admin-token"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert f"admin token {first.admin_token}" in first.log()
        journal = first.journal
    # a second gateway on the same journal and tokens: no new admin token, nothing shown
    with start_server(tmp_path / "repository", journal_dir=journal) as second:
        assert "first start" not in second.log()
        assert second.admin_token == first.admin_token


def _token_cli(journal: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "token", "--journal", str(journal), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_token_cli_offline_and_refused_while_a_server_holds_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    created = _token_cli(journal, "create", "ci-bot", "--role", "operator", "--scope", "fraud")
    assert created.returncode == 0, created.stderr
    token_id, secret = created.stdout.split()[0], created.stdout.split()[-1]
    assert secret.startswith("mg_")
    listed = _token_cli(journal, "list")
    assert token_id in listed.stdout and "fraud" in listed.stdout and secret not in listed.stdout
    assert _token_cli(journal, "create", "x", "--role", "god").returncode == 1
    assert _token_cli(journal, "revoke", token_id).returncode == 0
    assert "revoked" in _token_cli(journal, "list").stdout
    actors = {(r.kind, r.actor.split(":")[0]) for r in _admin_records(journal)}
    assert actors == {("token.created", "cli"), ("token.revoked", "cli")}

    copy_credit_risk(tmp_path / "repository")
    with start_server(tmp_path / "repository", journal_dir=journal):
        held = _token_cli(journal, "list")
        assert held.returncode == 1 and "Traceback" not in held.stderr
        assert "journal" in held.stderr


def test_admin_rpc_tokens_and_trace_lookup(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "repository", config="record_durable = true\n")
    with start_server(tmp_path / "repository") as server:
        admin = [("authorization", f"Bearer {server.admin_token}")]
        answer = http_request(
            "POST",
            f"{server.http_url}/v2/models/credit_risk/infer",
            {**BODY, "id": "rpc-trace-1"},
        )
        assert answer.status == 200
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)

            def code(call, request, metadata=None) -> grpc.StatusCode:
                try:
                    call(request, metadata=metadata)
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

            listing = admin_pb2.ListTokensRequest()
            assert code(stub.ListTokens, listing) is grpc.StatusCode.UNAUTHENTICATED
            created = stub.CreateToken(
                admin_pb2.CreateTokenRequest(name="app", role="predictor"), metadata=admin
            )
            assert created.secret.startswith("mg_") and created.token.role == "predictor"
            app = [("authorization", f"Bearer {created.secret}")]
            assert code(stub.ListTokens, listing, app) is grpc.StatusCode.PERMISSION_DENIED
            bad_role = admin_pb2.CreateTokenRequest(name="x", role="god")
            assert code(stub.CreateToken, bad_role, admin) is grpc.StatusCode.INVALID_ARGUMENT
            names = [t.name for t in stub.ListTokens(listing, metadata=admin).tokens]
            assert names == ["admin", "app"]

            record = stub.GetPrediction(
                admin_pb2.GetPredictionRequest(request_id="rpc-trace-1"), metadata=admin
            )
            found = json.loads(record.record_json)
            assert found["request_id"] == "rpc-trace-1" and found["model"] == "credit_risk"
            missing = admin_pb2.GetPredictionRequest(request_id="nope")
            assert code(stub.GetPrediction, missing, admin) is grpc.StatusCode.NOT_FOUND

            revoked = stub.RevokeToken(
                admin_pb2.RevokeTokenRequest(id=created.token.id), metadata=admin
            )
            assert revoked.revoked_at
            unknown = admin_pb2.RevokeTokenRequest(id="ffffffff")
            assert code(stub.RevokeToken, unknown, admin) is grpc.StatusCode.NOT_FOUND


def test_token_state_is_replayed_from_the_journal_after_kill_9(tmp_path: Path) -> None:
    """Apply a sequence, kill -9, lose the token file, restart: the same tokens, from the
    admin stream alone."""
    copy_credit_risk(tmp_path / "repository")
    config = "[auth]\ninference = true\n"
    with start_server(tmp_path / "repository", config, kill_signal=signal.SIGKILL) as first:
        journal = first.journal
        admin_token = first.admin_token
        kept = _create(first, "kept", "predictor")
        dropped = _create(first, "dropped", "predictor")
        revoke = http_request(
            "DELETE",
            f"{first.http_url}/admin/tokens/{dropped['id']}",
            headers=first.admin_headers(),
        )
        assert revoke.status == 200
        before = http_request(
            "GET", f"{first.http_url}/admin/tokens", headers=first.admin_headers()
        )
    (journal / "tokens.json").unlink()  # the applied state is gone; the journal is not
    with start_server(tmp_path / "repository", config, journal_dir=journal) as second:
        assert "changes restored" in second.log() and "first start" not in second.log()
        assert second.admin_token == admin_token
        after = http_request(
            "GET", f"{second.http_url}/admin/tokens", headers=second.admin_headers()
        )
        assert after.json() == before.json()
        assert _infer_http(second, _bearer(kept["token"])).status == 200
        assert _infer_http(second, _bearer(dropped["token"])).status == 401


def test_each_request_on_a_keep_alive_connection_is_recorded_as_its_own_caller(
    tmp_path: Path,
) -> None:
    copy_credit_risk(tmp_path / "repository", config="record_durable = true\n")
    with start_server(tmp_path / "repository") as server:
        app = _create(server, "app", "predictor")
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        try:
            for request_id, headers in (
                ("with-token", _bearer(app["token"])),
                ("without-token", {}),
            ):
                body = json.dumps({**BODY, "id": request_id})
                connection.request(
                    "POST", "/v2/models/credit_risk/infer", body=body, headers=headers
                )
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200
        finally:
            connection.close()
        actors = {}
        for request_id in ("with-token", "without-token"):
            found = http_request(
                "GET",
                f"{server.http_url}/v2/predictions/{request_id}",
                headers=server.admin_headers(),
            )
            actors[request_id] = found.json()["actor"]
    assert actors["with-token"] == f"token:app/{app['id']}"
    assert actors["without-token"] == "anonymous"
