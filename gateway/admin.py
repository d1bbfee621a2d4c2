"""The deployment part of the admin API, once for both transports.

Each call takes one JSON-like document (HTTP: the body's object with the path's parameters
added; gRPC: the request message as a dict with its proto field names) and answers one (HTTP:
the body; gRPC: parsed into the RPC's response message, whose fields bear the same names). So
the HTTP and gRPC forms of an operation cannot drift apart, and `modelgate admin` can use
either. `dispatch` is the one entry: it holds production-affecting calls on important
deployments for approval (governance/approvals.py).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.control import Control
from gateway.errors import GatewayError, InvalidInput
from gateway.governance.approvals import ChangeState, Importance
from gateway.monitoring.health import DEFAULT_WINDOW, parse_window

Document = Mapping[str, Any]
Run = Callable[[Control, str, Document], Awaitable[dict[str, Any]]]

DEPLOYMENT = "deployment"  # the document key (and HTTP path parameter) naming the deployment


@dataclass(frozen=True)
class AdminCall:
    rpc: str  # method of modelgate.admin.v1.Admin
    http_method: str
    http_path: str  # under /admin
    operation: str  # what rbac authorizes (rbac.OPERATIONS)
    response: str  # the RPC's response message
    run: Run
    # production-affecting: on a HIGH or CRITICAL deployment it waits for a second person
    needs_approval: bool = False

    @property
    def concerns_deployment(self) -> bool:
        """Whether it acts on one deployment (named in the path and the request), which
        authorization checks against a principal's scopes."""
        return "{" + DEPLOYMENT + "}" in self.http_path


def _text(document: Document, key: str, required: bool = True) -> str:
    value = document.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"'{key}' must be a {'non-empty ' if required else ''}string")
    return value


def _reason(document: Document) -> str:
    return _text(document, "reason", required=False)


async def _list(control: Control, actor: str, document: Document) -> dict[str, Any]:
    deployments = control.lifecycle.registry.deployments
    return {"deployments": [deployments[name].describe() for name in sorted(deployments)]}


async def _get(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return control.lifecycle.registry.deployment(_text(document, DEPLOYMENT)).describe()


async def _history(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return {"changes": control.lifecycle.history(_text(document, DEPLOYMENT))}


async def _load(control: Control, actor: str, document: Document) -> dict[str, Any]:
    deployment, version = _text(document, DEPLOYMENT), _text(document, "version")
    model, source = document.get("model"), document.get("source")
    if (model is None) == (source is None):
        raise InvalidInput("give either a 'source' or the model file ('model'), not both")
    golden, profile, reason = document.get("golden"), _profile(document), _reason(document)
    lifecycle = control.lifecycle
    if model is None:
        return await lifecycle.load(actor, deployment, version, source, golden, reason, profile)
    return await lifecycle.upload(
        actor, deployment, version, _model_bytes(model), golden, reason, profile
    )


def _profile(document: Document) -> Any:
    """The profile given at load: an object (HTTP JSON) or JSON text (gRPC's profile_json)."""
    text = document.get("profile_json")
    if not text:
        return document.get("profile")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"'profile_json' is not JSON: {error}") from None


def _model_bytes(model: Any) -> bytes:
    if isinstance(model, bytes):
        return model
    if isinstance(model, str):  # JSON (and a proto bytes field as a dict) carry base64
        try:
            return base64.b64decode(model, validate=True)
        except binascii.Error:
            raise InvalidInput("'model' must be the ONNX file in base64") from None
    raise InvalidInput("'model' must be the ONNX file in base64")


async def _unload(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return await control.lifecycle.unload(
        actor, _text(document, DEPLOYMENT), _text(document, "version"), _reason(document)
    )


async def _warm_up(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return await control.lifecycle.warm(
        actor, _text(document, DEPLOYMENT), _text(document, "version")
    )


async def _traffic(control: Control, actor: str, document: Document) -> dict[str, Any]:
    policy = {k: v for k, v in document.items() if k not in (DEPLOYMENT, "reason")}
    return await control.lifecycle.set_policy(
        actor, _text(document, DEPLOYMENT), policy, _reason(document)
    )


async def _shadow(control: Control, actor: str, document: Document) -> dict[str, Any]:
    enabled = document.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidInput("'enabled' must be true or false")
    return await control.lifecycle.set_shadow(
        actor,
        _text(document, DEPLOYMENT),
        _text(document, "version"),
        enabled,
        _reason(document),
    )


async def _rollback(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return await control.lifecycle.rollback(actor, _text(document, DEPLOYMENT), _reason(document))


async def _start_canary(control: Control, actor: str, document: Document) -> dict[str, Any]:
    plan = document.get("plan") or {}
    if not isinstance(plan, Mapping):
        raise InvalidInput("'plan' must be an object")
    return await control.lifecycle.start_canary(
        actor, _text(document, DEPLOYMENT), _text(document, "version"), plan, _reason(document)
    )


def _steer(verb: str) -> Run:
    async def steer(control: Control, actor: str, document: Document) -> dict[str, Any]:
        return await control.lifecycle.steer_canary(
            actor, _text(document, DEPLOYMENT), verb, _reason(document)
        )

    return steer


def _report(document: Document) -> tuple[str, str | None, float]:
    """The deployment, optional version and window of a monitoring report."""
    window = document.get("window") or DEFAULT_WINDOW
    if not isinstance(window, str):
        raise InvalidInput("'window' must be a duration such as 300, 5m or 1h")
    deployment = _text(document, DEPLOYMENT)
    version = _text(document, "version", required=False) or None
    return deployment, version, parse_window(window)


async def _health(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return control.service.health(*_report(document))


async def _drift(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return control.service.drift(*_report(document))


async def _accuracy(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return {"report": control.service.accuracy_report(*_report(document))}


async def _actuals(control: Control, actor: str, document: Document) -> dict[str, Any]:
    entries = document.get("actuals")
    if isinstance(entries, list):
        # protobuf's JSON numbers are doubles: a label 1 arrives as 1.0 over gRPC
        entries = [
            {**e, "actual": _whole(e["actual"])} if isinstance(e, dict) and "actual" in e else e
            for e in entries
        ]
    joined = control.service.add_actuals(_text(document, DEPLOYMENT), entries)
    return {"report": joined}


def _whole(value: Any) -> Any:
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


async def _importance(control: Control, actor: str, document: Document) -> dict[str, Any]:
    importance = Importance.parse(document.get("importance"))
    return await control.lifecycle.set_importance(
        actor, _text(document, DEPLOYMENT), importance, _reason(document)
    )


async def _export_journal(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return await control.export_journal(
        actor, _text(document, "stream"), _text(document, "until", required=False)
    )


async def _changes(control: Control, actor: str, document: Document) -> dict[str, Any]:
    return {"changes": [change.to_dict() for change in control.changes()]}


def _decide(approve: bool) -> Run:
    async def decide(control: Control, actor: str, document: Document) -> dict[str, Any]:
        change_id = _text(document, "id")
        change = await control.decide_change(actor, change_id, approve, _reason(document))
        if change.state is ChangeState.APPROVED:
            call = CALLS_BY_RPC[change.operation]
            await control.apply_change(change, call.run(control, change.requester, change.document))
            change = control.change(change_id)
        return change.to_dict()

    return decide


_ONE = "/deployments/{deployment}"
_VERSION = _ONE + "/versions/{version}"
_CHANGE = "/changes/{id}"

CALLS: tuple[AdminCall, ...] = (
    AdminCall("ListDeployments", "GET", "/deployments", "read", "ListDeploymentsResponse", _list),
    AdminCall("GetDeployment", "GET", _ONE, "read", "Deployment", _get),
    AdminCall("GetHistory", "GET", _ONE + "/history", "read", "HistoryResponse", _history),
    AdminCall("GetHealth", "GET", _ONE + "/health", "read", "HealthReport", _health),
    AdminCall("GetDrift", "GET", _ONE + "/drift", "read", "HealthReport", _drift),
    AdminCall("GetAccuracy", "GET", _ONE + "/accuracy", "read", "Report", _accuracy),
    AdminCall("SendActuals", "POST", _ONE + "/actuals", "infer", "Report", _actuals),
    AdminCall("LoadVersion", "POST", _ONE + "/versions", "load", "Deployment", _load),
    AdminCall("UnloadVersion", "DELETE", _VERSION, "unload", "Deployment", _unload),
    AdminCall("WarmUpVersion", "POST", _VERSION + "/warmup", "load", "WarmUpResponse", _warm_up),
    AdminCall("SetTraffic", "PUT", _ONE + "/traffic", "traffic", "Deployment", _traffic, True),
    AdminCall("SetShadow", "POST", _ONE + "/shadow", "traffic", "Deployment", _shadow),
    AdminCall("Rollback", "POST", _ONE + "/rollback", "rollback", "Deployment", _rollback),
    AdminCall(
        "SetImportance", "PUT", _ONE + "/importance", "traffic", "Deployment", _importance, True
    ),
    AdminCall(
        "StartCanary", "POST", _ONE + "/canary", "rollout", "Deployment", _start_canary, True
    ),
    *(
        AdminCall(
            f"{verb.title()}Canary",
            "POST",
            f"{_ONE}/canary/{verb}",
            "rollout",
            "Deployment",
            _steer(verb),
            verb == "promote",
        )
        for verb in ("pause", "resume", "promote", "abort")
    ),
    AdminCall("ListChanges", "GET", "/changes", "read", "ListChangesResponse", _changes),
    AdminCall("ApproveChange", "POST", _CHANGE + "/approve", "approve", "Change", _decide(True)),
    AdminCall("RejectChange", "POST", _CHANGE + "/reject", "approve", "Change", _decide(False)),
    AdminCall(
        "ExportJournal",
        "POST",
        "/journal/export",
        "journal.export",
        "JournalExport",
        _export_journal,
    ),
)
CALLS_BY_RPC = {call.rpc: call for call in CALLS}


async def dispatch(
    control: Control, call: AdminCall, actor: str, document: Document
) -> tuple[dict[str, Any], bool]:
    """Run one admin call, or, when it needs a second person's approval, file it as a change
    request; the answer and whether it is pending. A refused change is journaled (where the
    operation itself did not already)."""
    try:
        if call.needs_approval:
            # an unknown deployment is the operation's own refusal, journaled as such
            deployment = control.lifecycle.registry.deployments.get(document.get(DEPLOYMENT))
            if deployment is not None and deployment.importance.needs_approval:
                change = await control.request_change(deployment.name, call.rpc, document, actor)
                return {**deployment.describe(), "pending_change": change.to_dict()}, True
        answer = await call.run(control, actor, document)
        if call.operation == "read":
            await control.journal_read(call.rpc, actor, dict(document))
        return answer, False
    except GatewayError as error:
        if call.operation != "read":
            payload = {k: v for k, v in document.items() if k != "model"}  # no file in the log
            await control.journal_refusal(f"admin.{call.rpc}", actor, payload, error)
        raise
