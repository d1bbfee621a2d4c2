"""The deployment part of the admin API, once for both transports.

Each call takes one JSON-like document (HTTP: the body's object with the path's parameters
added; gRPC: the request message as a dict with its proto field names) and answers one (HTTP:
the body; gRPC: parsed into the RPC's response message, whose fields bear the same names). So
the HTTP and gRPC forms of an operation cannot drift apart, and `modelgate admin` can use
either.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidInput
from gateway.lifecycle.operations import Lifecycle

Document = Mapping[str, Any]
Run = Callable[[Lifecycle, str, Document], Awaitable[dict[str, Any]]]

DEPLOYMENT = "deployment"  # the document key (and HTTP path parameter) naming the deployment


@dataclass(frozen=True)
class AdminCall:
    rpc: str  # method of modelgate.admin.v1.Admin
    http_method: str
    http_path: str  # under /admin
    operation: str  # what rbac authorizes (rbac.OPERATIONS)
    response: str  # the RPC's response message
    run: Run


def _text(document: Document, key: str, required: bool = True) -> str:
    value = document.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidInput(f"'{key}' must be a {'non-empty ' if required else ''}string")
    return value


def _reason(document: Document) -> str:
    return _text(document, "reason", required=False)


async def _list(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    deployments = lifecycle.registry.deployments
    return {"deployments": [deployments[name].describe() for name in sorted(deployments)]}


async def _get(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    return lifecycle.registry.deployment(_text(document, DEPLOYMENT)).describe()


async def _history(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    return {"changes": lifecycle.history(_text(document, DEPLOYMENT))}


async def _load(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    deployment, version = _text(document, DEPLOYMENT), _text(document, "version")
    model, source = document.get("model"), document.get("source")
    if (model is None) == (source is None):
        raise InvalidInput("give either a 'source' or the model file ('model'), not both")
    golden = document.get("golden")
    if model is None:
        return await lifecycle.load(actor, deployment, version, source, golden, _reason(document))
    return await lifecycle.upload(
        actor, deployment, version, _model_bytes(model), golden, _reason(document)
    )


def _model_bytes(model: Any) -> bytes:
    if isinstance(model, bytes):
        return model
    if isinstance(model, str):  # JSON (and a proto bytes field as a dict) carry base64
        try:
            return base64.b64decode(model, validate=True)
        except binascii.Error:
            raise InvalidInput("'model' must be the ONNX file in base64") from None
    raise InvalidInput("'model' must be the ONNX file in base64")


async def _unload(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    return await lifecycle.unload(
        actor, _text(document, DEPLOYMENT), _text(document, "version"), _reason(document)
    )


async def _warm_up(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    return await lifecycle.warm(actor, _text(document, DEPLOYMENT), _text(document, "version"))


async def _traffic(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    policy = {k: v for k, v in document.items() if k not in (DEPLOYMENT, "reason")}
    return await lifecycle.set_policy(actor, _text(document, DEPLOYMENT), policy, _reason(document))


async def _shadow(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    enabled = document.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidInput("'enabled' must be true or false")
    return await lifecycle.set_shadow(
        actor,
        _text(document, DEPLOYMENT),
        _text(document, "version"),
        enabled,
        _reason(document),
    )


async def _rollback(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    return await lifecycle.rollback(actor, _text(document, DEPLOYMENT), _reason(document))


async def _start_canary(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
    plan = document.get("plan") or {}
    if not isinstance(plan, Mapping):
        raise InvalidInput("'plan' must be an object")
    return await lifecycle.start_canary(
        actor, _text(document, DEPLOYMENT), _text(document, "version"), plan, _reason(document)
    )


def _steer(verb: str) -> Run:
    async def steer(lifecycle: Lifecycle, actor: str, document: Document) -> dict[str, Any]:
        return await lifecycle.steer_canary(
            actor, _text(document, DEPLOYMENT), verb, _reason(document)
        )

    return steer


_ONE = "/deployments/{deployment}"
_VERSION = _ONE + "/versions/{version}"

CALLS: tuple[AdminCall, ...] = (
    AdminCall("ListDeployments", "GET", "/deployments", "read", "ListDeploymentsResponse", _list),
    AdminCall("GetDeployment", "GET", _ONE, "read", "Deployment", _get),
    AdminCall("GetHistory", "GET", _ONE + "/history", "read", "HistoryResponse", _history),
    AdminCall("LoadVersion", "POST", _ONE + "/versions", "load", "Deployment", _load),
    AdminCall("UnloadVersion", "DELETE", _VERSION, "unload", "Deployment", _unload),
    AdminCall("WarmUpVersion", "POST", _VERSION + "/warmup", "load", "WarmUpResponse", _warm_up),
    AdminCall("SetTraffic", "PUT", _ONE + "/traffic", "traffic", "Deployment", _traffic),
    AdminCall("SetShadow", "POST", _ONE + "/shadow", "traffic", "Deployment", _shadow),
    AdminCall("Rollback", "POST", _ONE + "/rollback", "rollback", "Deployment", _rollback),
    AdminCall("StartCanary", "POST", _ONE + "/canary", "rollout", "Deployment", _start_canary),
    *(
        AdminCall(
            f"{verb.title()}Canary",
            "POST",
            f"{_ONE}/canary/{verb}",
            "rollout",
            "Deployment",
            _steer(verb),
        )
        for verb in ("pause", "resume", "promote", "abort")
    ),
)
