"""Operator actions on deployments, each checked, journaled on the admin stream, then applied.

    load -> warm up + validate -> READY (no traffic) -> set traffic / shadow / canary -> ...
    ... -> rollback (the previous policy) -> unload (after the version drained)

Every change is one record whose payload says everything needed to apply it again, so `replay`
of the admin stream at start-up rebuilds the same deployments, versions and routing. A change
the registry refuses (unknown version, bad weights, a failed warm-up, ...) raises its error
after a `*.failed` record naming the reason; the state is left as it was.

Changes are serialized by one lock: loading a version takes seconds, and a policy set while
it loads must see the registry before or after it, never halfway.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gateway.batching import DynamicBatcher
from gateway.errors import GatewayError, InvalidInput
from gateway.governance.approvals import Importance
from gateway.lifecycle import rollout
from gateway.lifecycle.breaker import BreakerConfig, BreakerState, CircuitBreaker
from gateway.lifecycle.registry import (
    DEFAULT_SLOW_MS,
    Deployment,
    Registry,
    VersionEntry,
    VersionState,
)
from gateway.lifecycle.rollout import Hold, Promote, Rollback, RolloutPlan, RolloutStatus, SetWeight
from gateway.lifecycle.router import TrafficPolicy
from gateway.lifecycle.sources import (
    REPOSITORY,
    UPLOAD,
    OpenedSource,
    Sources,
    check_source,
    open_version,
    store_profile,
    store_upload,
)
from gateway.lifecycle.warmup import Golden, warm_up
from gateway.monitoring.accuracy import TaskSpec
from gateway.monitoring.drift import DriftConfig, DriftMonitor, drift_status
from gateway.monitoring.health import Health
from gateway.protocol.types import ModelSignature
from gateway.repository import VersionSource

logger = logging.getLogger("modelgate")

Journal = Callable[[str, str, dict[str, Any]], Awaitable[None]]

# admin-stream kinds of lifecycle records
VERSION_LOADED = "version.loaded"
VERSION_UNLOADED = "version.unloaded"
VERSION_WARMED = "version.warmed"
POLICY_SET = "policy.set"  # traffic, shadow, rollback and canary steps alike: payload["operation"]
IMPORTANCE_SET = "importance.set"
FAILED = ".failed"  # suffix: the operation's kind + FAILED

STARTUP = "startup"  # the actor of what the gateway does by itself at start
CONTROLLER = "rollout-controller"  # the actor of automatic canary steps


class Lifecycle:
    def __init__(
        self,
        registry: Registry,
        sources: Sources,
        journal: Journal,
        breaker: BreakerConfig | None = None,
        slow_ms: float = DEFAULT_SLOW_MS,
        drift: DriftConfig | None = None,
    ) -> None:
        self.registry = registry
        self._sources = sources
        self._journal = journal
        self._breaker = breaker or BreakerConfig()
        self._slow_ms = slow_ms
        self._drift = drift  # None: no drift sketches
        self._lock = asyncio.Lock()
        self._drivers: dict[str, asyncio.Task[None]] = {}  # deployment -> its rollout's task
        self._watcher: asyncio.Task[None] | None = None

    def _entry(self, deployment: str, version: str, source: dict[str, Any]) -> VersionEntry:
        return VersionEntry(
            deployment,
            version,
            source,
            breaker=CircuitBreaker(self._breaker),
            health=Health(self._slow_ms),
        )

    async def close(self) -> None:
        """Stop the rollout controllers (their state is in the journal) and the health checks."""
        tasks = [*self._drivers.values(), *([self._watcher] if self._watcher else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def watch_health(self, interval_s: float) -> None:
        """Check remote versions' health every `interval_s` and feed their breakers: a failed
        check counts as a failed request, and an ejected version is re-admitted (or ejected
        for longer) by a check rather than by a client's request."""
        self._watcher = asyncio.get_running_loop().create_task(self._check_health(interval_s))

    async def _check_health(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)  # a period, not a synchronization
            for entry in self.registry.entries():
                loaded = entry.loaded
                health = getattr(loaded.runner, "health", None) if loaded else None
                if entry.state is not VersionState.READY or health is None:
                    continue
                healthy = await health()
                if entry.breaker.state is BreakerState.CLOSED:
                    if not healthy:
                        entry.breaker.record_failure()
                else:
                    entry.breaker.record_probe(healthy)

    async def _failed(
        self, kind: str, actor: str, payload: Mapping[str, Any], error: GatewayError
    ) -> None:
        """Journal a refused change with the reason the caller is about to get."""
        await self._journal(kind + FAILED, actor, {**payload, "error": error.message})
        error.journaled = True

    # ---- start-up ------------------------------------------------------------------------

    async def load_repository(self, found: list[VersionSource]) -> None:
        """Load every version found by `repository.scan` (not journaled: the repository is
        configuration) and route each deployment to its newest READY version. A version that
        fails is UNAVAILABLE with the reason; the others load regardless."""
        for version_source in found:
            source = {
                "kind": REPOSITORY,
                "model": version_source.model,
                "version": version_source.version,
            }
            entry = self._entry(version_source.model, version_source.version, source)
            deployment = self.registry.add(entry)
            deployment.importance = Importance.parse(version_source.config.importance)
            if version_source.problem:
                self._fail(entry, version_source.problem)
                continue
            try:
                await self._open(entry, None)
            except Exception as error:  # any load failure is reported per version, not fatal
                self._fail(entry, _describe(error))
        for deployment in self.registry.deployments.values():
            ready = deployment.ready()
            if ready and deployment.policy is None:
                policy = TrafficPolicy.single(ready[-1].version)
                deployment.record_policy(policy, STARTUP, "newest version", "default")
        self.registry.recompile()

    async def _open(self, entry: VersionEntry, golden: Golden | None) -> None:
        """LOADING -> READY: open, warm up and validate. Raises; the caller marks failures."""
        entry.state = VersionState.LOADING
        opened = await open_version(entry.deployment, entry.version, entry.source, self._sources)
        try:
            await warm_up(opened.loaded, opened.samples, golden or opened.golden)
            await self._monitor(entry, opened)
        except BaseException:
            await opened.loaded.close()
            raise
        entry.loaded = opened.loaded
        entry.samples = opened.samples
        entry.state = VersionState.READY
        entry.reason = ""
        logger.info("loaded %s version %s", entry.deployment, entry.version)

    async def _monitor(self, entry: VersionEntry, opened: OpenedSource) -> None:
        """Give a warmed-up version its task (accuracy) and, with a training-data profile, its
        drift sketches, compiled now and fed from here on (so warm-up samples are not
        counted). Raises InvalidInput when the profile or the task config does not fit."""
        loaded = opened.loaded
        config = loaded.config
        try:
            entry.task, entry.task_reason = TaskSpec.decide(
                loaded.signature, opened.profile, config.task or None
            )
        except ValueError as error:
            raise InvalidInput(f"task: {error}") from None
        drift = self._drift
        if opened.profile is None or drift is None:
            return
        if config.feature_importances:
            drift = dataclasses.replace(drift, importances=config.feature_importances)
        monitor = DriftMonitor.from_profile(opened.profile, loaded.signature, drift)
        await asyncio.to_thread(monitor.warm_up)
        entry.drift = monitor
        if isinstance(loaded.runner, DynamicBatcher):
            loaded.runner.observe(monitor.update)
        else:
            entry.observer = monitor.update

    @staticmethod
    def _fail(entry: VersionEntry, reason: str) -> None:
        entry.state = VersionState.UNAVAILABLE
        entry.reason = reason
        logger.error("cannot load %s version %s: %s", entry.deployment, entry.version, reason)

    # ---- versions ------------------------------------------------------------------------

    async def load(
        self,
        actor: str,
        deployment: str,
        version: str,
        source: Any,
        golden: Any = None,
        reason: str = "",
        profile: Any = None,
    ) -> dict[str, Any]:
        """Load, warm up and validate a version; READY but without traffic until a policy
        gives it some. A new deployment gets it as its only version, with all the traffic.
        A training-data `profile` given here is kept (by its id) and replaces the one next to
        the model file."""
        async with self._lock:
            payload = {"deployment": deployment, "version": version, "reason": reason}
            try:
                _check_label(deployment, "deployment")
                _check_label(version, "version")
                existing = self.registry.deployments.get(deployment)
                if existing is not None and version in existing.versions:
                    state = existing.versions[version].state
                    if state not in (VersionState.UNLOADED, VersionState.UNAVAILABLE):
                        raise InvalidInput(
                            f"version '{version}' of '{deployment}' is already {state.value}; "
                            "unload it first"
                        )
                checked = check_source(source)
                if profile is not None:
                    stored = await asyncio.to_thread(store_profile, self._sources.uploads, profile)
                    checked = {**checked, "profile": stored}
                payload["source"] = checked
                entry = self._entry(deployment, version, checked)
                await self._open_checked(entry, existing, golden)
            except GatewayError as error:
                await self._failed(VERSION_LOADED, actor, payload, error)
                raise
            assert entry.loaded is not None
            payload["content_hash"] = entry.loaded.identity.content_hash
            try:
                await self._journal(VERSION_LOADED, actor, payload)
            except BaseException:
                await entry.loaded.close()
                raise
            self._apply_loaded(entry, actor, reason)
            return self.registry.deployment(deployment).describe()

    async def _open_checked(
        self, entry: VersionEntry, deployment: Deployment | None, golden: Any
    ) -> None:
        """Open and validate `entry`, and check it fits `deployment`. Raises GatewayError
        kinds only (a backend's own exception becomes a ValidationFailed-like InvalidInput)."""
        try:
            await self._open(entry, None)
        except GatewayError:
            raise
        except Exception as error:
            raise InvalidInput(f"cannot load the version: {_describe(error)}") from None
        assert entry.loaded is not None
        try:
            signature = deployment.signature if deployment is not None else None
            if signature is not None:
                _check_signature(signature, entry.loaded.signature)
            if golden is not None:
                await warm_up(entry.loaded, [], Golden.from_dict(golden, entry.loaded.signature))
        except BaseException:
            await entry.loaded.close()
            raise

    def _apply_loaded(self, entry: VersionEntry, actor: str, reason: str) -> None:
        deployment = self.registry.add(entry)
        if deployment.policy is None:
            policy = TrafficPolicy.single(entry.version)
            deployment.record_policy(policy, actor, reason or "first version", "load")
            self.registry.recompile()

    async def upload(
        self,
        actor: str,
        deployment: str,
        version: str,
        model: bytes,
        golden: Any = None,
        reason: str = "",
        profile: Any = None,
    ) -> dict[str, Any]:
        """Keep an uploaded ONNX file under its SHA-256, then `load` it."""
        if not model:
            raise InvalidInput("the upload is empty: send the ONNX file as the body")
        digest, stored = await asyncio.to_thread(store_upload, self._sources.uploads, model)
        try:
            source = {"kind": UPLOAD, "sha256": digest}
            return await self.load(actor, deployment, version, source, golden, reason, profile)
        except GatewayError:
            if stored is not None:  # kept only for versions that load (and so can replay)
                await asyncio.to_thread(shutil.rmtree, stored, True)
            raise

    async def unload(
        self, actor: str, deployment_name: str, version: str, reason: str = ""
    ) -> dict[str, Any]:
        """Take a version out of service: refused while the policy uses it; waits for its
        in-flight requests, then releases it."""
        async with self._lock:
            payload = {"deployment": deployment_name, "version": version, "reason": reason}
            try:
                deployment = self.registry.deployment(deployment_name)
                entry = deployment.entry(version)
                policy = deployment.policy
                if policy is not None and version in policy.versions:
                    raise InvalidInput(
                        f"version '{version}' of '{deployment_name}' is in its traffic policy; "
                        "set traffic without it first"
                    )
                if entry.state is VersionState.UNLOADED:
                    raise InvalidInput(f"version '{version}' of '{deployment_name}' is unloaded")
            except GatewayError as error:
                await self._failed(VERSION_UNLOADED, actor, payload, error)
                raise
            await self._journal(VERSION_UNLOADED, actor, payload)
            await self._apply_unloaded(entry)
            return deployment.describe()

    @staticmethod
    async def _apply_unloaded(entry: VersionEntry) -> None:
        entry.state = VersionState.DRAINING
        await entry.drained()
        if entry.loaded is not None:
            await entry.loaded.close()
            entry.loaded = None
        entry.state = VersionState.UNLOADED
        logger.info("unloaded %s version %s", entry.deployment, entry.version)

    async def warm(self, actor: str, deployment_name: str, version: str) -> dict[str, Any]:
        """Run a READY version's warm-up samples and checks again (e.g. after a remote
        server restarted)."""
        async with self._lock:
            payload: dict[str, Any] = {"deployment": deployment_name, "version": version}
            try:
                entry = self.registry.deployment(deployment_name).entry(version)
                if entry.state is not VersionState.READY or entry.loaded is None:
                    raise InvalidInput(f"version '{version}' is {entry.state.value}, not READY")
                payload["runs"] = await warm_up(entry.loaded, entry.samples)
            except GatewayError as error:
                await self._failed(VERSION_WARMED, actor, payload, error)
                raise
            await self._journal(VERSION_WARMED, actor, payload)
            return payload

    # ---- traffic -------------------------------------------------------------------------

    async def set_policy(
        self,
        actor: str,
        deployment_name: str,
        policy: TrafficPolicy | Mapping[str, Any],
        reason: str = "",
        operation: str = "traffic",
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Replace a deployment's traffic policy (one routing-table swap)."""
        async with self._lock:
            return await self._set_policy(actor, deployment_name, policy, reason, operation, extra)

    async def _set_policy(
        self,
        actor: str,
        deployment_name: str,
        policy: TrafficPolicy | Mapping[str, Any],
        reason: str,
        operation: str,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "deployment": deployment_name,
            "operation": operation,
            "reason": reason,
            **(extra or {}),
        }
        try:
            deployment = self.registry.deployment(deployment_name)
            if not isinstance(policy, TrafficPolicy):
                policy = TrafficPolicy.from_dict(policy)
            deployment.check_policy(policy)
        except GatewayError as error:
            await self._failed(POLICY_SET, actor, payload, error)
            raise
        payload["policy"] = policy.to_dict()
        await self._journal(POLICY_SET, actor, payload)
        self._apply_policy(deployment, policy, actor, reason, operation)
        return deployment.describe()

    def _apply_policy(
        self,
        deployment: Deployment,
        policy: TrafficPolicy,
        actor: str,
        reason: str,
        operation: str,
    ) -> None:
        deployment.record_policy(policy, actor, reason, operation)
        self.registry.recompile()
        logger.info("%s: %s by %s: %s", deployment.name, operation, actor, policy.to_dict())

    async def set_shadow(
        self, actor: str, deployment_name: str, version: str, enabled: bool, reason: str = ""
    ) -> dict[str, Any]:
        """Add a version to the shadows of the current policy, or remove it."""
        async with self._lock:
            try:
                current = _current(self.registry.deployment(deployment_name))
            except GatewayError as error:
                payload = {"deployment": deployment_name, "operation": "shadow", "version": version}
                await self._failed(POLICY_SET, actor, payload, error)
                raise
            shadows = [v for v in current.shadows if v != version]
            if enabled:
                shadows.append(version)
            policy = {**current.to_dict(), "shadows": shadows}
            return await self._set_policy(actor, deployment_name, policy, reason, "shadow")

    async def rollback(self, actor: str, deployment_name: str, reason: str = "") -> dict[str, Any]:
        """Restore the policy before the current one."""
        async with self._lock:
            try:
                deployment = self.registry.deployment(deployment_name)
                if len(deployment.history) < 2:
                    raise InvalidInput(f"'{deployment_name}' has no earlier policy to roll back to")
            except GatewayError as error:
                payload = {"deployment": deployment_name, "operation": "rollback"}
                await self._failed(POLICY_SET, actor, payload, error)
                raise
            # no approval needed, but flagged where one would have been
            extra = {"break_glass": True} if deployment.importance.needs_approval else None
            previous = deployment.history[-2].policy
            return await self._set_policy(
                actor, deployment_name, previous, reason, "rollback", extra
            )

    async def set_importance(
        self, actor: str, deployment_name: str, importance: Importance, reason: str = ""
    ) -> dict[str, Any]:
        async with self._lock:
            deployment = self.registry.deployment(deployment_name)
            payload = {
                "deployment": deployment_name,
                "importance": importance.value,
                "reason": reason,
            }
            await self._journal(IMPORTANCE_SET, actor, payload)
            deployment.importance = importance
            return deployment.describe()

    # ---- canary --------------------------------------------------------------------------

    async def start_canary(
        self,
        actor: str,
        deployment_name: str,
        canary: str,
        plan: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Send the plan's first step of traffic to `canary`, against the production version;
        the controller then advances, promotes or rolls back on its own."""
        async with self._lock:
            payload = {"deployment": deployment_name, "operation": "canary.start", "canary": canary}
            try:
                deployment = self.registry.deployment(deployment_name)
                if deployment.rollout is not None and deployment.rollout.phase in rollout.ACTIVE:
                    raise InvalidInput(
                        f"a rollout of '{deployment_name}' is in progress: promote or abort it"
                    )
                base = _current(deployment)
                deployment.entry(canary)
                checked = RolloutPlan.from_dict(plan or {})
                status, _ = rollout.start(
                    deployment_name, canary, base.production, checked, time.time()
                )
            except GatewayError as error:
                await self._failed(POLICY_SET, actor, payload, error)
                raise
            deployment.rollout_base = base
            described = await self._change_rollout(actor, deployment, status, reason, "start")
            self._drive(deployment)
            return described

    async def steer_canary(
        self, actor: str, deployment_name: str, verb: str, reason: str = ""
    ) -> dict[str, Any]:
        """An operator's pause, resume, promote or abort of the running rollout."""
        async with self._lock:
            payload = {"deployment": deployment_name, "operation": f"canary.{verb}"}
            try:
                deployment = self.registry.deployment(deployment_name)
                status = deployment.rollout
                if status is None:
                    raise InvalidInput(f"'{deployment_name}' has no rollout")
                now = time.time()
                if verb == "pause":
                    status, _ = rollout.pause(status, now, reason or "paused by an operator")
                elif verb == "resume":
                    status, _ = rollout.resume(status, now)
                elif verb == "promote":
                    status, _ = rollout.promote(status, now)
                elif verb == "abort":
                    status, _ = rollout.abort(status, now, reason or "aborted by an operator")
                else:
                    raise InvalidInput(f"a rollout is paused, resumed, promoted, aborted: {verb!r}")
            except GatewayError as error:
                await self._failed(POLICY_SET, actor, payload, error)
                raise
            return await self._change_rollout(actor, deployment, status, reason, verb)

    async def _change_rollout(
        self,
        actor: str,
        deployment: Deployment,
        status: RolloutStatus,
        reason: str,
        verb: str,
    ) -> dict[str, Any]:
        """Journal and apply a rollout's new status with the policy it implies."""
        base = deployment.rollout_base
        assert base is not None
        extra = {"rollout": status.to_dict(), "base": base.to_dict()}
        policy = _rollout_policy(base, status)
        described = await self._set_policy(
            actor, deployment.name, policy, reason or status.reason, f"canary.{verb}", extra
        )
        deployment.rollout = status
        return {**described, "rollout": status.to_dict()}

    def _drive(self, deployment: Deployment) -> None:
        """Run the rollout's checks until it ends (one task per deployment)."""
        running = self._drivers.get(deployment.name)
        if running is None or running.done():
            task = asyncio.get_running_loop().create_task(self._run_checks(deployment))
            self._drivers[deployment.name] = task

    async def _run_checks(self, deployment: Deployment) -> None:
        """Every check interval: compare the canary's and the champion's outcomes over the
        interval, and apply what the rollout's rules make of it."""
        while (status := deployment.rollout) is not None and status.phase in rollout.ACTIVE:
            canary = deployment.entry(status.canary).outcomes
            champion = deployment.entry(status.champion).outcomes
            before = canary.snapshot(), champion.snapshot()
            started = time.time()
            # a timer, not a synchronization: the check window is this long
            await asyncio.sleep(status.plan.check_interval_s)
            async with self._lock:
                status = deployment.rollout
                if status is None or status.phase not in rollout.ACTIVE:
                    return
                drift = deployment.entry(status.canary).drift
                result = rollout.check(
                    status.plan.guards,
                    canary.snapshot().since(before[0]),
                    champion.snapshot().since(before[1]),
                    drift_status(drift.scores(since_s=started)) if drift is not None else None,
                )
                changed, action = rollout.on_check(status, result, time.time())
                if isinstance(action, Hold) and result.verdict != "fail":
                    deployment.rollout = changed
                    continue
                try:
                    await self._change_rollout(
                        CONTROLLER, deployment, changed, result.reason, _verb(action)
                    )
                except GatewayError as error:
                    # the policy cannot be applied (e.g. the canary failed): stop here,
                    # visibly, and let an operator decide
                    logger.error("rollout of %s stopped: %s", deployment.name, error)
                    deployment.rollout, _ = rollout.pause(changed, time.time(), str(error))
                    return

    def history(self, deployment_name: str) -> list[dict[str, Any]]:
        return [change.to_dict() for change in self.registry.deployment(deployment_name).history]

    # ---- replay --------------------------------------------------------------------------

    async def replay(self, kind: str, actor: str, payload: Mapping[str, Any]) -> bool:
        """Apply one admin-stream record of this module again; False for other kinds. A record
        that cannot be applied now (a remote server down, a file gone) is logged, leaves what
        it concerns as it is (a version UNAVAILABLE with the reason) and does not stop the
        start."""
        if kind not in (VERSION_LOADED, VERSION_UNLOADED, POLICY_SET, IMPORTANCE_SET):
            return False
        try:
            await self._replay(kind, actor, payload)
        except GatewayError as error:
            logger.error("replay of %s %s: %s", kind, dict(payload), error)
        return True

    async def _replay(self, kind: str, actor: str, payload: Mapping[str, Any]) -> None:
        if kind == VERSION_LOADED:
            entry = self._entry(payload["deployment"], payload["version"], payload["source"])
            try:
                await self._open(entry, None)
            except Exception as error:
                self._fail(entry, f"replay: {_describe(error)}")
                self.registry.add(entry)
                return
            previous = self.registry.deployments.get(entry.deployment)
            old = previous.versions.get(entry.version) if previous is not None else None
            if old is not None and old.loaded is not None:
                await old.loaded.close()
            self._apply_loaded(entry, actor, payload.get("reason", ""))
        elif kind == VERSION_UNLOADED:
            entry = self.registry.deployment(payload["deployment"]).entry(payload["version"])
            await self._apply_unloaded(entry)
        elif kind == IMPORTANCE_SET:
            deployment = self.registry.deployment(payload["deployment"])
            deployment.importance = Importance.parse(payload["importance"])
        else:
            deployment = self.registry.deployment(payload["deployment"])
            policy = TrafficPolicy.from_dict(payload["policy"])
            deployment.check_policy(policy)
            self._apply_policy(deployment, policy, actor, payload["reason"], payload["operation"])
            if "rollout" in payload:
                deployment.rollout = RolloutStatus.from_dict(payload["rollout"])
                deployment.rollout_base = TrafficPolicy.from_dict(payload["base"])
                self._drive(deployment)


def _verb(action: rollout.Action) -> str:
    if isinstance(action, SetWeight):
        return "step"
    if isinstance(action, Promote):
        return "promote"
    if isinstance(action, Rollback):
        return "rollback"
    return "check"  # a failed check that did not reach the limit


def _rollout_policy(base: TrafficPolicy, status: RolloutStatus) -> TrafficPolicy:
    """The policy of a rollout's current share: the base policy with the production traffic
    split between champion and canary (the canary alone once promoted, the base again once
    rolled back or aborted). While the canary shares traffic the champion is its first
    fallback: a request the canary fails is answered by the champion, and still counts
    against the canary in its checks."""
    percent = status.canary_percent
    if percent == 0:
        return base
    fallback = tuple(v for v in base.fallback if v not in (status.canary, status.champion))
    weights = ((status.canary, 100),)
    if percent < 100:
        weights = ((status.champion, 100 - percent), (status.canary, percent))
        fallback = (status.champion, *fallback)
    return TrafficPolicy(
        weights=weights,
        sticky=base.sticky,
        shadows=tuple(v for v in base.shadows if v != status.canary),
        fallback=fallback,
    )


def _current(deployment: Deployment) -> TrafficPolicy:
    policy = deployment.policy
    if policy is None:
        raise InvalidInput(f"'{deployment.name}' has no traffic policy yet")
    return policy


def _check_label(label: Any, what: str) -> None:
    if not isinstance(label, str) or not label or not all(c.isalnum() or c in "._-" for c in label):
        raise InvalidInput(f"a {what} name is letters, digits, '.', '_' and '-', not {label!r}")


def _check_signature(expected: ModelSignature, given: ModelSignature) -> None:
    """Versions of one deployment must take and give the same tensors (platforms may differ:
    ONNX here, a Python model on Triton there)."""
    for what, want, got in (
        ("inputs", expected.inputs, given.inputs),
        ("outputs", expected.outputs, given.outputs),
    ):
        if want != got:
            raise InvalidInput(
                f"the version's {what} {[t.as_dict() for t in got]} differ from the "
                f"deployment's {[t.as_dict() for t in want]}"
            )


def _describe(error: BaseException) -> str:
    return str(error) if isinstance(error, GatewayError) else f"{type(error).__name__}: {error}"
