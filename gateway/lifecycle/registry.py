"""Deployments and their versions: what exists, in which state, and the routing compiled from it.

A deployment is the name clients call. It holds versions (a label each, served by a local ONNX
model or a remote V2 server), a traffic policy over them, and the history of its policies. The
registry is changed only on the control path (the event loop), and each change that affects
routing recompiles the one `RoutingTable` the request path reads.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.errors import InvalidInput, ModelNotFound, ModelNotReady
from gateway.governance.approvals import Importance
from gateway.lifecycle.breaker import CircuitBreaker
from gateway.lifecycle.outcomes import Outcomes
from gateway.lifecycle.rollout import RolloutStatus
from gateway.lifecycle.router import EMPTY_TABLE, Route, RoutingTable, TrafficPolicy
from gateway.lifecycle.shadow import ShadowStats
from gateway.loading import LoadedVersion
from gateway.monitoring.accuracy import TaskSpec
from gateway.monitoring.drift import DriftMonitor
from gateway.monitoring.health import Health
from gateway.protocol.types import ModelSignature

DEFAULT_SLOW_MS = 100.0


class VersionState(enum.Enum):
    LOADING = "LOADING"  # opening, warming up, validating
    READY = "READY"  # may take traffic
    DRAINING = "DRAINING"  # being unloaded: finishes its in-flight requests
    UNLOADED = "UNLOADED"
    UNAVAILABLE = "UNAVAILABLE"  # failed to load, warm up or validate: `reason` says why


@dataclass(eq=False)
class VersionEntry:
    deployment: str
    version: str
    source: dict[str, Any]  # how to load it again (journaled; see lifecycle/sources.py)
    state: VersionState = VersionState.LOADING
    reason: str = ""
    loaded: LoadedVersion | None = None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    outcomes: Outcomes = field(default_factory=Outcomes)  # as primary or fallback
    shadow: ShadowStats = field(default_factory=ShadowStats)  # as a shadow
    health: Health = field(default_factory=lambda: Health(DEFAULT_SLOW_MS))  # as answering
    samples: list[dict[str, Any]] = field(default_factory=list)  # its warm-up inputs
    drift: DriftMonitor | None = None  # with a training-data profile
    # a remote version's answers go to its drift sketches from the request path (a local
    # version's batcher hands them over in its worker thread)
    observer: Callable[[Mapping[str, Any], Sequence[Any]], None] | None = None
    task: TaskSpec | None = None  # what it predicts: accuracy against actuals
    task_reason: str = ""  # why there is no task
    inflight: int = 0
    _idle: asyncio.Event | None = None

    def begin(self) -> None:
        self.inflight += 1

    def end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request is in flight on this version (call after it left routing)."""
        if self.inflight == 0:
            return
        self._idle = asyncio.Event()
        await self._idle.wait()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "version": self.version,
            "state": self.state.value,
            "reason": self.reason,
            "source": self.source,
            "inflight": self.inflight,
            "breaker": self.breaker.snapshot(),
            "shadow": self.shadow.as_dict(),
        }
        if self.loaded is not None:
            described["content_hash"] = self.loaded.identity.content_hash
            described["profile_id"] = self.loaded.identity.profile_id
            described["platform"] = self.loaded.signature.platform
        described["drift"] = (
            {
                "profile_id": self.drift.profile_id,
                "rows": self.drift.rows,
                "errors": self.drift.errors,
            }
            if self.drift is not None
            else None
        )
        described["task"] = self.task.kind if self.task is not None else self.task_reason
        return described


@dataclass(frozen=True)
class PolicyChange:
    """One entry of a deployment's history: the policy it got, from whom, when and why."""

    policy: TrafficPolicy
    actor: str
    time: str
    reason: str
    operation: str  # traffic | shadow | canary | rollback | ...

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "actor": self.actor,
            "time": self.time,
            "reason": self.reason,
            "operation": self.operation,
        }


@dataclass(eq=False)
class Deployment:
    name: str
    versions: dict[str, VersionEntry] = field(default_factory=dict)
    importance: Importance = Importance.MODERATE
    history: list[PolicyChange] = field(default_factory=list)
    rollout: RolloutStatus | None = None
    rollout_base: TrafficPolicy | None = None  # the policy the rollout started from

    @property
    def policy(self) -> TrafficPolicy | None:
        return self.history[-1].policy if self.history else None

    def entry(self, version: str) -> VersionEntry:
        entry = self.versions.get(version)
        if entry is None:
            raise ModelNotFound(self.name, version)
        return entry

    def ready(self) -> list[VersionEntry]:
        ready = [v for v in self.versions.values() if v.state is VersionState.READY]
        return sorted(ready, key=lambda v: _version_order(v.version))

    def production(self) -> VersionEntry:
        """The version whose metadata the deployment reports. Raises ModelNotReady."""
        policy = self.policy
        if policy is not None:
            entry = self.versions[policy.production]
            if entry.state is VersionState.READY:
                return entry
        ready = self.ready()
        if ready:
            return ready[-1]
        newest = max(self.versions.values(), key=lambda v: _version_order(v.version))
        raise ModelNotReady(self.name, newest.version, newest.state.value)

    @property
    def signature(self) -> ModelSignature | None:
        """The signature every version must share: the production version's, or any loaded
        version's while none serves."""
        try:
            loaded = self.production().loaded
        except ModelNotReady:
            loaded = next((v.loaded for v in self.versions.values() if v.loaded), None)
        return loaded.signature if loaded is not None else None

    def check_policy(self, policy: TrafficPolicy) -> None:
        """Raise unless every version the policy names exists and is READY (NotFound /
        InvalidInput); shadows may not also take the primary traffic."""
        for version in sorted(policy.versions):
            entry = self.entry(version)
            if entry.state is not VersionState.READY:
                raise InvalidInput(
                    f"version '{version}' of '{self.name}' is {entry.state.value}, not READY"
                )
        serving = {v for v, w in policy.weights if w > 0}
        both = serving & set(policy.shadows)
        if both:
            raise InvalidInput(f"version(s) {', '.join(sorted(both))} cannot be primary and shadow")

    def record_policy(self, policy: TrafficPolicy, actor: str, reason: str, operation: str) -> None:
        now = datetime.now(UTC).isoformat("T", "milliseconds")
        self.history.append(PolicyChange(policy, actor, now, reason, operation))

    def route(self) -> Route | None:
        policy = self.policy
        if policy is None:
            return None
        return Route(
            [(self.versions[v], w) for v, w in policy.weights],
            policy.sticky,
            [self.versions[v] for v in policy.shadows],
            [self.versions[v] for v in policy.fallback],
        )

    def describe(self) -> dict[str, Any]:
        policy = self.policy
        return {
            "name": self.name,
            "policy": policy.to_dict() if policy else None,
            "production": policy.production if policy else None,
            "importance": self.importance.value,
            "versions": [
                v.describe()
                for v in sorted(self.versions.values(), key=lambda v: _version_order(v.version))
            ],
            "rollout": self.rollout.to_dict() if self.rollout else None,
        }


def _version_order(version: str) -> tuple[int, int | str]:
    # integer labels in numeric order, then any other label alphabetically
    return (0, int(version)) if version.isdigit() else (1, version)


class Registry:
    def __init__(self) -> None:
        self.deployments: dict[str, Deployment] = {}
        self.table: RoutingTable = EMPTY_TABLE

    def deployment(self, name: str) -> Deployment:
        deployment = self.deployments.get(name)
        if deployment is None:
            raise ModelNotFound(name)
        return deployment

    def add(self, entry: VersionEntry) -> Deployment:
        deployment = self.deployments.setdefault(entry.deployment, Deployment(entry.deployment))
        deployment.versions[entry.version] = entry
        return deployment

    def recompile(self) -> None:
        """Publish the routing of every deployment: one assignment the request path sees whole."""
        routes = {}
        for name, deployment in self.deployments.items():
            route = deployment.route()
            if route is not None:
                routes[name] = route
        self.table = RoutingTable(routes)

    def entries(self) -> list[VersionEntry]:
        return [v for d in self.deployments.values() for v in d.versions.values()]

    def loaded(self) -> list[LoadedVersion]:
        return [v.loaded for v in self.entries() if v.loaded is not None]
