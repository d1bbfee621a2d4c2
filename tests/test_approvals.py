"""Four-eyes approvals through a real gateway: on a HIGH deployment production changes wait for
a second person with the approver role; rollback is break-glass; every step is journaled and
pending requests survive a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Server, copy_credit_risk, http_request, start_server

from gateway._proto import admin_pb2, admin_pb2_grpc
from gateway.config import JournalConfig
from gateway.errors import InvalidInput
from gateway.governance.approvals import ChangeRequests, ChangeState, Importance, SelfApproval
from gateway.governance.ledger import ADMIN, Ledger

DEPLOYMENT = "credit_risk"
HIGH = """
max_batch_size = 64
warmup_file = "warmup.json"
importance = "high"
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("approvals")
    copy_credit_risk(root / "models", config=HIGH)
    return root


@pytest.fixture(scope="module")
def gateway(root: Path) -> Iterator[Server]:
    with start_server(root / "models", config_dir=root, journal_dir=root / "journal") as server:
        yield server


def call(server: Server, token: str, method: str, path: str, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return http_request(method, f"{server.http_url}/admin{path}", body, headers)


@pytest.fixture(scope="module")
def tokens(gateway: Server) -> dict[str, str]:
    made = {}
    for name, role in (
        ("alice", "operator"),
        ("bob", "operator"),
        ("carol", "approver"),
        ("dave", "approver"),
    ):
        answer = call(gateway, gateway.admin_token, "POST", "/tokens", {"name": name, "role": role})
        assert answer.status == 201, answer.body
        made[name] = answer.json()["token"]
    return made


def policy(server: Server) -> dict[str, Any]:
    answer = call(server, server.admin_token, "GET", f"/deployments/{DEPLOYMENT}")
    assert answer.status == 200, answer.body
    return answer.json()["policy"]


def request_traffic(server: Server, token: str, weights: dict[str, int]) -> dict[str, Any]:
    answer = call(server, token, "PUT", f"/deployments/{DEPLOYMENT}/traffic", {"weights": weights})
    assert answer.status == 202, answer.body
    return answer.json()["pending_change"]


def records(journal: Path) -> list:
    ledger = Ledger.open(JournalConfig(path=str(journal)))
    try:
        return list(ledger.journal.read(ADMIN))
    finally:
        ledger.close()


def test_a_production_change_waits_for_a_second_person(
    gateway: Server, tokens: dict[str, str]
) -> None:
    before = policy(gateway)
    change = request_traffic(gateway, tokens["alice"], {"1": 50, "2": 50})
    assert change["state"] == "pending" and change["operation"] == "SetTraffic"
    assert change["requester"].startswith("token:alice")
    assert policy(gateway) == before  # nothing applied yet

    own = call(gateway, tokens["alice"], "POST", f"/changes/{change['id']}/approve", {})
    assert own.status == 403  # an operator may not approve at all
    peer = call(gateway, tokens["bob"], "POST", f"/changes/{change['id']}/approve", {})
    assert peer.status == 403
    assert policy(gateway) == before

    approved = call(
        gateway, tokens["carol"], "POST", f"/changes/{change['id']}/approve", {"reason": "ok"}
    )
    assert approved.status == 200, approved.body
    assert approved.json()["state"] == "approved"
    assert approved.json()["decided_by"].startswith("token:carol")
    assert policy(gateway)["weights"] == {"1": 50, "2": 50}
    last = call(gateway, tokens["carol"], "GET", f"/deployments/{DEPLOYMENT}/history")
    assert last.json()["changes"][-1]["actor"].startswith("token:alice")

    again = call(gateway, tokens["dave"], "POST", f"/changes/{change['id']}/approve", {})
    assert again.status == 400 and "approved" in again.json()["error"]


def test_an_approver_cannot_approve_their_own_request(
    gateway: Server, tokens: dict[str, str]
) -> None:
    change = request_traffic(gateway, tokens["carol"], {"2": 100})
    own = call(gateway, tokens["carol"], "POST", f"/changes/{change['id']}/approve", {})
    assert own.status == 403 and "second person" in own.json()["error"]
    rejected = call(
        gateway, tokens["dave"], "POST", f"/changes/{change['id']}/reject", {"reason": "no"}
    )
    assert rejected.status == 200 and rejected.json()["state"] == "rejected"
    listed = call(gateway, tokens["alice"], "GET", "/changes").json()["changes"]
    assert next(c for c in listed if c["id"] == change["id"])["state"] == "rejected"


def test_rollback_is_break_glass(gateway: Server, tokens: dict[str, str], root: Path) -> None:
    change = request_traffic(gateway, tokens["alice"], {"1": 100})
    call(gateway, tokens["dave"], "POST", f"/changes/{change['id']}/approve", {})
    assert policy(gateway)["weights"] == {"1": 100}
    rolled = call(gateway, tokens["bob"], "POST", f"/deployments/{DEPLOYMENT}/rollback", {})
    assert rolled.status == 200, rolled.body  # at once, no approval
    assert rolled.json()["policy"]["weights"] != {"1": 100}


def test_importance_changes_need_approval_too_and_pending_ones_survive_a_restart(
    tmp_path: Path,
) -> None:
    copy_credit_risk(tmp_path / "models", config=HIGH)
    journal = tmp_path / "journal"
    with start_server(tmp_path / "models", config_dir=tmp_path, journal_dir=journal) as first:
        admin = first.admin_token
        answer = call(
            first, admin, "PUT", f"/deployments/{DEPLOYMENT}/importance", {"importance": "low"}
        )
        assert answer.status == 202 and answer.json()["importance"] == "high"
        pending = answer.json()["pending_change"]["id"]
        rolled = call(first, admin, "POST", f"/deployments/{DEPLOYMENT}/rollback", {})
        assert rolled.status == 400  # nothing to roll back to yet; journaled as failed
    kinds = [(r.kind, r.payload) for r in records(journal)]
    assert ("change.requested", pending) in [(k, p.get("id")) for k, p in kinds]
    assert any(k == "policy.set.failed" and p["operation"] == "rollback" for k, p in kinds)
    with start_server(tmp_path / "models", config_dir=tmp_path, journal_dir=journal) as second:
        listed = call(second, second.admin_token, "GET", "/changes").json()["changes"]
        assert [c["state"] for c in listed if c["id"] == pending] == ["pending"]
        # the admin approves; the requester was the admin too: refused, a second person is needed
        own = call(second, second.admin_token, "POST", f"/changes/{pending}/approve", {})
        assert own.status == 403


def test_an_approved_change_and_a_break_glass_rollback_are_marked_in_the_journal(
    tmp_path: Path,
) -> None:
    copy_credit_risk(tmp_path / "models", config=HIGH)
    journal = tmp_path / "journal"
    with start_server(tmp_path / "models", config_dir=tmp_path, journal_dir=journal) as server:
        made = {}
        for name, role in (("op", "operator"), ("ap", "approver")):
            body = {"name": name, "role": role}
            made[name] = call(server, server.admin_token, "POST", "/tokens", body).json()["token"]
        change = request_traffic(server, made["op"], {"1": 10, "2": 90})
        call(server, made["ap"], "POST", f"/changes/{change['id']}/approve", {})
        call(server, made["op"], "POST", f"/deployments/{DEPLOYMENT}/rollback", {})
        assert call(server, made["op"], "GET", f"/deployments/{DEPLOYMENT}").status == 200
    read = [r for r in records(journal) if r.kind == "admin.GetDeployment"]
    assert [(r.actor[:8], r.payload) for r in read] == [("token:op", {"deployment": DEPLOYMENT})]
    policy_records = [r for r in records(journal) if r.kind == "policy.set"]
    applied, rollback = policy_records[-2:]
    assert applied.payload["change"] == change["id"]
    assert applied.payload["approved_by"].startswith("token:ap")
    assert applied.actor.startswith("token:op")
    assert rollback.payload["break_glass"] is True and "change" not in rollback.payload


def test_grpc_answers_a_pending_change_in_the_deployment(
    gateway: Server, tokens: dict[str, str]
) -> None:
    with grpc.insecure_channel(gateway.grpc_address) as channel:
        stub = admin_pb2_grpc.AdminStub(channel)
        metadata = (("authorization", f"Bearer {tokens['bob']}"),)
        answer = stub.SetTraffic(
            admin_pb2.SetTrafficRequest(deployment=DEPLOYMENT, weights={"1": 1}),
            metadata=metadata,
        )
        assert answer.pending_change.state == "pending"
        assert answer.pending_change.operation == "SetTraffic"
        with pytest.raises(grpc.RpcError) as denied:
            stub.ApproveChange(
                admin_pb2.ChangeDecision(id=answer.pending_change.id), metadata=metadata
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        approver = (("authorization", f"Bearer {tokens['carol']}"),)
        decided = stub.ApproveChange(
            admin_pb2.ChangeDecision(id=answer.pending_change.id), metadata=approver
        )
        assert decided.state == "approved"
        missing = pytest.raises(grpc.RpcError)
        with missing as error:
            stub.ApproveChange(admin_pb2.ChangeDecision(id="nope"), metadata=approver)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


# ---- the pure rules ----------------------------------------------------------------------------


def test_a_request_expires() -> None:
    changes = ChangeRequests(ttl_s=10.0)
    change = changes.create("d", "SetTraffic", {"weights": {"1": 1}}, "token:a/1", now=100.0)
    changes.put(change)
    assert changes.decide(change.id, "token:b/2", True, "", now=109.0).state is ChangeState.APPROVED
    expired = changes.decide(change.id, "token:b/2", True, "", now=110.0)
    assert expired.state is ChangeState.EXPIRED
    assert [c.state for c in changes.list(now=111.0)] == [ChangeState.EXPIRED]
    with pytest.raises(SelfApproval):
        changes.decide(change.id, "token:a/1", True, "", now=105.0)


def test_importance_names() -> None:
    assert Importance.parse(" HIGH ") is Importance.HIGH
    assert Importance.CRITICAL.needs_approval and not Importance.MODERATE.needs_approval
    with pytest.raises(InvalidInput, match="low, moderate, high, critical"):
        Importance.parse("urgent")


def cli(server: Server, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "admin", "--url", server.http_url, *args]
    return subprocess.run(
        command,
        env={**os.environ, "MODELGATE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_files_lists_and_decides_change_requests(
    gateway: Server, tokens: dict[str, str]
) -> None:
    asked = cli(gateway, tokens["bob"], "traffic", DEPLOYMENT, "1=25", "2=75")
    assert asked.returncode == 0, asked.stderr
    assert "pending approval: change" in asked.stdout
    change = asked.stdout.split("pending approval: change ")[1].split()[0]
    listed = cli(gateway, tokens["bob"], "changes")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(change))
    assert "pending" in row and "SetTraffic" in row and "token:bob" in row
    own = cli(gateway, tokens["bob"], "approve", change)
    assert own.returncode == 2 and own.stderr.startswith("error: ")
    decided = cli(gateway, tokens["dave"], "approve", change, "--reason", "checked")
    assert decided.returncode == 0, decided.stderr
    assert "approved" in decided.stdout and "token:dave" in decided.stdout
    assert policy(gateway)["weights"] == {"1": 25, "2": 75}
    shown = cli(gateway, tokens["bob"], "--json", "importance", DEPLOYMENT, "critical")
    assert json.loads(shown.stdout)["pending_change"]["operation"] == "SetImportance"
