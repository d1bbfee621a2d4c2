"""The deployment admin API on both transports, through real gateways on 127.0.0.1.

One document drives both clients: HTTP (method and path from gateway/admin.py's CALLS, the rest
of the document as the JSON body, or the raw ONNX file with the rest in the query) and gRPC (the
document parsed into the RPC's request message). So the same operation gives the same deployment
on both, and every refused change is checked alike: the same kind of error with a clear message,
the deployments left exactly as they were, and a `*.failed` (or `denied`) record in the admin
stream, found after the gateway stopped between the markers the test writes around each call.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import onnx_models
import pytest
from conftest import (
    CREDIT_RISK,
    CREDIT_RISK_FEATURES,
    ROOT,
    Server,
    copy_credit_risk,
    http_request,
    start_server,
)
from google.protobuf import json_format

from gateway._proto import admin_pb2, admin_pb2_grpc
from gateway.admin import CALLS_BY_RPC
from gateway.governance.ledger import ADMIN, iter_records
from gateway.governance.rbac import DENIED
from gateway.governance.records import Record
from gateway.lifecycle.operations import FAILED, POLICY_SET, VERSION_LOADED, VERSION_UNLOADED

HTTP, GRPC = "http", "grpc"
TRANSPORTS = (HTTP, GRPC)
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
GRPC_TIMEOUT_S = 30.0

# What each transport answers for each kind of outcome.
STATUS: dict[str, dict[str, int | grpc.StatusCode]] = {
    HTTP: {
        "ok": 200,
        "invalid": 400,
        "unauthenticated": 401,
        "forbidden": 403,
        "not_found": 404,
        "unavailable": 503,
    },
    GRPC: {
        "ok": grpc.StatusCode.OK,
        "unavailable": grpc.StatusCode.UNAVAILABLE,
        "invalid": grpc.StatusCode.INVALID_ARGUMENT,
        "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
        "forbidden": grpc.StatusCode.PERMISSION_DENIED,
        "not_found": grpc.StatusCode.NOT_FOUND,
    },
}
MODEL_2 = (CREDIT_RISK / "2" / "model.onnx").read_bytes()


def repository(version: str) -> dict[str, str]:
    """The source of an example credit_risk version."""
    return {"kind": "repository", "model": "credit_risk", "version": version}


# ---- one admin client per transport ------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int | grpc.StatusCode
    document: dict[str, Any] | None  # the answer, when the call succeeded
    error: str = ""


class HttpAdmin:
    def __init__(self, server: Server) -> None:
        self._url = server.http_url

    def call(self, rpc: str, document: dict[str, Any], token: str | None) -> Answer:
        call = CALLS_BY_RPC[rpc]
        url = f"{self._url}/admin{call.http_path.format_map(document)}"
        body = {k: v for k, v in document.items() if "{" + k + "}" not in call.http_path}
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data: bytes | dict[str, Any] | None = body if call.http_method != "GET" else None
        if isinstance(body.get("model"), bytes):  # an upload: the file raw, the rest in the query
            data = body.pop("model")
            url += "?" + urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/octet-stream"
        answer = http_request(call.http_method, url, data, headers)
        if answer.status == 200:
            return Answer(answer.status, answer.json())
        return Answer(answer.status, None, answer.json()["error"])


class GrpcAdmin:
    def __init__(self, server: Server) -> None:
        self._channel = grpc.insecure_channel(server.grpc_address)
        self._stub = admin_pb2_grpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def call(self, rpc: str, document: dict[str, Any], token: str | None) -> Answer:
        request_type = getattr(admin_pb2, ADMIN_SERVICE.methods_by_name[rpc].input_type.name)
        fields = {  # JSON, as a proto's bytes field takes it, carries base64
            k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
            for k, v in document.items()
        }
        request = json_format.ParseDict(fields, request_type())
        metadata = [("authorization", f"Bearer {token}")] if token else []
        try:
            response = getattr(self._stub, rpc)(request, metadata=metadata, timeout=GRPC_TIMEOUT_S)
        except grpc.RpcError as error:
            return Answer(error.code(), None, error.details())
        return Answer(
            grpc.StatusCode.OK,
            json_format.MessageToDict(response, preserving_proto_field_name=True),
        )


@dataclass
class Gateway:
    server: Server
    clients: dict[str, HttpAdmin | GrpcAdmin]
    tokens: dict[str, str] = field(default_factory=dict)  # role -> a token of that role

    def ok(self, transport: str, rpc: str, document: dict[str, Any], role: str = "admin") -> Any:
        """The answer of a call that must succeed."""
        answer = self.clients[transport].call(rpc, document, self.tokens[role])
        assert answer.status == STATUS[transport]["ok"], (rpc, document, answer)
        return answer.document


@contextlib.contextmanager
def open_gateway(root: Path, model_config: str | None = None) -> Iterator[Gateway]:
    """A gateway on a copy of credit_risk (with `model_config` as its config.toml when given),
    with admin, operator and viewer tokens."""
    copy_credit_risk(root / "models", config=model_config)
    with start_server(root / "models", config_dir=root) as server:
        grpc_admin = GrpcAdmin(server)
        gateway = Gateway(server, {HTTP: HttpAdmin(server), GRPC: grpc_admin})
        gateway.tokens["admin"] = server.admin_token
        for role in ("operator", "viewer"):
            answer = http_request(
                "POST",
                f"{server.http_url}/admin/tokens",
                {"name": role, "role": role},
                server.admin_headers(),
            )
            assert answer.status == 201, answer.body
            gateway.tokens[role] = answer.json()["token"]
        try:
            yield gateway
        finally:
            grpc_admin.close()


# ---- comparing deployments ---------------------------------------------------------------------


def policy_fields(policy: dict[str, Any] | None) -> dict[str, Any] | None:
    """A policy with the defaults gRPC leaves out filled in, weights as integers."""
    if not policy:
        return None
    return {
        "weights": {version: int(weight) for version, weight in policy["weights"].items()},
        "sticky": policy.get("sticky", False),
        "shadows": policy.get("shadows", []),
        "fallback": policy.get("fallback", []),
    }


def key_fields(deployment: dict[str, Any]) -> dict[str, Any]:
    """What two answers for the same deployment must agree on (counters and times left out)."""
    rollout = deployment.get("rollout")
    return {
        "production": deployment.get("production") or None,
        "policy": policy_fields(deployment.get("policy")),
        "versions": [
            {
                "version": v["version"],
                "state": v["state"],
                "reason": v.get("reason", ""),
                "source": v["source"],
                "content_hash": v.get("content_hash", ""),
            }
            for v in deployment.get("versions", [])
        ],
        "rollout": {
            key: rollout[key]
            for key in ("canary", "champion", "phase", "step", "canary_percent", "failed_checks")
        }
        if rollout
        else None,
    }


def history_fields(history: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (c["operation"], c.get("reason", ""), policy_fields(c["policy"]))
        for c in history.get("changes", [])
    ]


# ---- the same operations on both transports ----------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with open_gateway(tmp_path_factory.mktemp("admin-api")) as running:
        yield running


# Each step once per transport, on a deployment of the transport's own.
OPERATIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("LoadVersion", {"version": "1", "source": repository("1"), "reason": "a new deployment"}),
    ("LoadVersion", {"version": "2", "source": repository("2")}),
    ("LoadVersion", {"version": "3", "model": MODEL_2, "reason": "an upload"}),
    (
        "SetTraffic",
        {"weights": {"1": 90, "2": 10}, "sticky": True, "fallback": ["3"], "reason": "a/b"},
    ),
    ("SetShadow", {"version": "3", "enabled": True, "reason": "compare"}),
    ("SetShadow", {"version": "3", "enabled": False}),
    ("Rollback", {"reason": "shadow again"}),
    ("SetTraffic", {"weights": {"2": 100}}),
    ("UnloadVersion", {"version": "1", "reason": "retired"}),
    (
        "StartCanary",
        # checks an hour apart: the controller changes nothing while the test runs
        {"version": "3", "plan": {"steps": [10, 100], "dwell_s": 3600, "check_interval_s": 3600}},
    ),
    ("PauseCanary", {"reason": "a look"}),
    ("ResumeCanary", {}),
    ("AbortCanary", {"reason": "enough"}),
)


def test_the_same_operations_give_the_same_deployment_on_both_transports(
    gateway: Gateway,
) -> None:
    names = {transport: f"same_{transport}" for transport in TRANSPORTS}
    for rpc, document in OPERATIONS:
        answers = {t: gateway.ok(t, rpc, {"deployment": names[t], **document}) for t in TRANSPORTS}
        assert answers[HTTP]["name"] == names[HTTP] and answers[GRPC]["name"] == names[GRPC]
        assert key_fields(answers[HTTP]) == key_fields(answers[GRPC]), rpc

    final = key_fields(answers[HTTP])
    assert final["policy"] == {
        "weights": {"2": 100},
        "sticky": False,
        "shadows": [],
        "fallback": [],
    }
    assert final["rollout"]["phase"] == "aborted"
    states = {v["version"]: v["state"] for v in final["versions"]}
    assert states == {"1": "UNLOADED", "2": "READY", "3": "READY"}
    upload = final["versions"][2]["source"]
    assert upload == {"kind": "upload", "sha256": hashlib.sha256(MODEL_2).hexdigest()}

    # every way of reading agrees: each transport on each deployment, and the listings
    for name in names.values():
        reads = [gateway.ok(t, "GetDeployment", {"deployment": name}) for t in TRANSPORTS]
        assert key_fields(reads[0]) == key_fields(reads[1]) == final
        histories = [gateway.ok(t, "GetHistory", {"deployment": name}) for t in TRANSPORTS]
        assert history_fields(histories[0]) == history_fields(histories[1])
    operations = [change[0] for change in history_fields(histories[0])]
    assert operations == [
        "load",
        "traffic",
        "shadow",
        "shadow",
        "rollback",
        "traffic",
        "canary.start",
        "canary.pause",
        "canary.resume",
        "canary.abort",
    ]
    for transport in TRANSPORTS:
        listed = gateway.ok(transport, "ListDeployments", {})["deployments"]
        by_name = {d["name"]: key_fields(d) for d in listed}
        assert by_name[names[HTTP]] == by_name[names[GRPC]] == final

    warmed = [
        gateway.ok(t, "WarmUpVersion", {"deployment": names[t], "version": "2"}) for t in TRANSPORTS
    ]
    assert int(warmed[0]["runs"]) == int(warmed[1]["runs"]) > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_viewer_may_read_and_an_operator_may_set_traffic(
    gateway: Gateway, transport: str
) -> None:
    name = f"roles_{transport}"
    for version in ("1", "2"):
        document = {"deployment": name, "version": version, "source": repository(version)}
        gateway.ok(HTTP, "LoadVersion", document)
    read = gateway.ok(transport, "GetDeployment", {"deployment": name}, role="viewer")
    assert key_fields(read)["policy"]["weights"] == {"1": 100}
    listed = gateway.ok(transport, "ListDeployments", {}, role="viewer")["deployments"]
    assert name in {d["name"] for d in listed}
    changed = gateway.ok(
        transport,
        "SetTraffic",
        {"deployment": name, "weights": {"1": 50, "2": 50}},
        role="operator",
    )
    assert key_fields(changed)["policy"]["weights"] == {"1": 50, "2": 50}


# ---- refused changes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A call the gateway must refuse: with `kind` (STATUS) and `message` in its error, and a
    `journaled` record of the refusal."""

    name: str
    rpc: str
    document: dict[str, Any]
    kind: str
    message: str
    journaled: str
    token: str | None = "admin"  # the role whose token it carries; None: no credentials
    transports: tuple[str, ...] = TRANSPORTS


def golden_mismatch() -> dict[str, Any]:
    """Golden outputs that no credit_risk version gives: label 7 of classes 0 and 1."""
    return {"inputs": {"features": [[0.0] * CREDIT_RISK_FEATURES]}, "outputs": {"label": [7]}}


POLICY_FAILED = POLICY_SET + FAILED
REFUSALS = (
    *(
        Refusal(
            f"unknown deployment: {rpc}",
            rpc,
            {"deployment": "nowhere", **document},
            "not_found",
            "nowhere",
            journaled,
        )
        for rpc, document, journaled in (
            ("SetTraffic", {"weights": {"1": 1}}, POLICY_FAILED),
            ("SetShadow", {"version": "1", "enabled": True}, POLICY_FAILED),
            ("Rollback", {}, POLICY_FAILED),
            ("UnloadVersion", {"version": "1"}, VERSION_UNLOADED + FAILED),
            ("StartCanary", {"version": "1"}, POLICY_FAILED),
            ("AbortCanary", {}, POLICY_FAILED),
        )
    ),
    Refusal(
        "a load without a version",
        "LoadVersion",
        {"deployment": "credit_risk", "source": {"kind": "repository", "model": "credit_risk"}},
        "invalid",
        "'version'",
        "admin.LoadVersion.failed",  # refused by the API before any operation ran
    ),
    Refusal(
        "unknown version in the weights",
        "SetTraffic",
        {"deployment": "credit_risk", "weights": {"2": 50, "7": 50}},
        "not_found",
        "'7'",
        POLICY_FAILED,
    ),
    Refusal(
        "negative weight",
        "SetTraffic",
        {"deployment": "credit_risk", "weights": {"1": -10, "2": 110}},
        "invalid",
        "negative",
        POLICY_FAILED,
        # the weights are uint32 on the wire: a gRPC client cannot even send one
        transports=(HTTP,),
    ),
    Refusal(
        "all weights zero",
        "SetTraffic",
        {"deployment": "credit_risk", "weights": {"1": 0, "2": 0}},
        "invalid",
        "all zero",
        POLICY_FAILED,
    ),
    Refusal(
        "canary plan not ending at 100 %",
        "StartCanary",
        {"deployment": "credit_risk", "version": "1", "plan": {"steps": [5, 25, 50]}},
        "invalid",
        "end at 100",
        POLICY_FAILED,
    ),
    Refusal(
        "upload of another signature",
        "LoadVersion",
        {"deployment": "credit_risk", "version": "9", "model": onnx_models.identity("FP32")},
        "invalid",
        "differ from the deployment's",
        VERSION_LOADED + FAILED,
    ),
    Refusal(
        "golden outputs that do not match",
        "LoadVersion",
        {
            "deployment": "credit_risk",
            "version": "9",
            "source": repository("1"),
            "golden": golden_mismatch(),
        },
        "invalid",
        "golden output 'label'",
        VERSION_LOADED + FAILED,
    ),
    Refusal(
        "a warm-up that fails",
        "LoadVersion",
        # fails on every input whose first feature exceeds -1, the zero warm-up samples too
        {
            "deployment": "credit_risk",
            "version": "9",
            "model": onnx_models.credit_risk_lookalike(-1.0),
        },
        "invalid",
        "warm-up sample 1 failed",
        VERSION_LOADED + FAILED,
    ),
    Refusal(
        "unload of a version in the policy",
        "UnloadVersion",
        {"deployment": "credit_risk", "version": "2"},
        "invalid",
        "in its traffic policy",
        VERSION_UNLOADED + FAILED,
    ),
    Refusal(
        "rollback without an earlier policy",
        "Rollback",
        {"deployment": "fresh"},
        "invalid",
        "no earlier policy",
        POLICY_FAILED,
    ),
    Refusal(
        "no credentials",
        "SetTraffic",
        {"deployment": "credit_risk", "weights": {"1": 100}},
        "unauthenticated",
        "no credentials",
        DENIED,
        token=None,
    ),
    Refusal(
        "a viewer sets traffic",
        "SetTraffic",
        {"deployment": "credit_risk", "weights": {"1": 100}},
        "forbidden",
        "needs role 'operator'",
        DENIED,
        token="viewer",
    ),
)
CASES = [(refusal, transport) for refusal in REFUSALS for transport in refusal.transports]
MARKER = "marker"  # the deployment whose policy changes mark the journal between refusals


@dataclass
class Outcome:
    answer: Answer
    before: dict[str, Any]  # every deployment's key fields (but the marker's) before the call
    after: dict[str, Any]
    records: list[Record] = field(default_factory=list)  # journaled between its two markers


@dataclass
class Refused:
    outcomes: dict[tuple[str, str], Outcome]
    inference: int  # the status of an inference request after every refusal
    journal: Path


def deployments(gateway: Gateway) -> dict[str, Any]:
    listed = gateway.ok(HTTP, "ListDeployments", {})["deployments"]
    return {d["name"]: key_fields(d) for d in listed if d["name"] != MARKER}


def mark(gateway: Gateway, index: int) -> None:
    document = {"deployment": MARKER, "weights": {"1": 100}, "reason": f"{MARKER} {index}"}
    gateway.ok(HTTP, "SetTraffic", document)


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Refused:
    """Every refusal on a gateway of its own, which is stopped before the journal is read."""
    outcomes = {}
    with open_gateway(tmp_path_factory.mktemp("refusals")) as gateway:
        for name in ("fresh", MARKER):
            document = {"deployment": name, "version": "1", "source": repository("1")}
            gateway.ok(HTTP, "LoadVersion", document)
        mark(gateway, 0)
        for index, (refusal, transport) in enumerate(CASES, start=1):
            before = deployments(gateway)
            token = gateway.tokens[refusal.token] if refusal.token else None
            answer = gateway.clients[transport].call(refusal.rpc, refusal.document, token)
            outcomes[refusal.name, transport] = Outcome(answer, before, deployments(gateway))
            mark(gateway, index)
        features = {
            "name": "features",
            "datatype": "FP32",
            "shape": [1, CREDIT_RISK_FEATURES],
            "data": [0.0] * CREDIT_RISK_FEATURES,
        }
        url = f"{gateway.server.http_url}/v2/models/credit_risk/infer"
        inference = http_request("POST", url, {"inputs": [features]}).status
        journal = gateway.server.journal
    # the gateway has stopped: its journal may be opened now
    segments: list[list[Record]] = [[]]  # the records after each marker (the first: before any)
    for record in iter_records(journal, ADMIN):
        if record.kind == POLICY_SET and record.payload["deployment"] == MARKER:
            segments.append([])
        else:
            segments[-1].append(record)
    for (refusal, transport), records in zip(CASES, segments[1:-1], strict=True):
        outcomes[refusal.name, transport].records = records
    return Refused(outcomes, inference, journal)


@pytest.mark.parametrize(("refusal", "transport"), CASES, ids=[f"{r.name}-{t}" for r, t in CASES])
def test_a_refused_change_says_why_changes_nothing_and_is_journaled(
    refused: Refused, refusal: Refusal, transport: str
) -> None:
    outcome = refused.outcomes[refusal.name, transport]
    answer = outcome.answer
    assert answer.status == STATUS[transport][refusal.kind], answer
    assert refusal.message in answer.error, answer.error
    assert outcome.after == outcome.before
    if refusal.journaled == DENIED:
        expected = {"error": refusal.kind, "operation": CALLS_BY_RPC[refusal.rpc].operation}
        found = [r.payload for r in outcome.records if r.kind == DENIED]
        assert [{k: p[k] for k in expected} for p in found] == [expected], outcome.records
    else:
        errors = [r.payload.get("error") for r in outcome.records if r.kind == refusal.journaled]
        assert errors == [answer.error], outcome.records


def test_the_gateway_serves_after_every_refusal_and_its_journal_verifies(
    refused: Refused,
) -> None:
    assert refused.inference == 200
    verify = subprocess.run(
        [sys.executable, "-m", "gateway", "journal", "--journal", str(refused.journal), "verify"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stderr
    assert "admin:" in verify.stdout and ": ok" in verify.stdout
