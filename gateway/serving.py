"""The request path: one object that both transports call.

    route(deployment) -> decode -> pick(version, key) -> check_request -> adapt -> runner
      -> (failover down the fallback chain) -> respond -> encode -> shadows, record

Transports hand in their codec's decode and encode so that timing, statistics, tracing and error
accounting happen here, once, for HTTP and gRPC alike.

State by lifetime:
- per service (event loop): the registry and its routing table (replaced whole by the control
  path), the readiness flag, the tracer, the shadow sender;
- per version: backend and runner (whose worker threads only see batches), statistics, breaker
  and outcomes (event loop only);
- per request: locals of `infer`, including the route it started with.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import time
from collections.abc import Callable
from importlib.metadata import version as package_version
from time import perf_counter_ns
from typing import Any, TypeVar

from gateway.backends.remote import BackendUnavailable
from gateway.batching import BatchError, Timing
from gateway.config import ServerConfig
from gateway.errors import (
    GatewayError,
    InvalidInput,
    ModelFailure,
    ModelNotFound,
    ModelNotReady,
    ModelUnavailable,
    PredictionNotFound,
)
from gateway.governance.journal import JournalStats
from gateway.governance.ledger import Ledger
from gateway.governance.recorder import PredictionRecorder
from gateway.lifecycle.registry import Registry, VersionEntry, VersionState
from gateway.lifecycle.router import FAILOVER, PINNED
from gateway.lifecycle.shadow import ShadowSender
from gateway.loading import LoadedVersion
from gateway.monitoring.accuracy import Accuracy, Predictions
from gateway.monitoring.alerting import Alerting
from gateway.monitoring.health import Health, HealthHistory
from gateway.protocol.types import InferOutput, InferRequest, InferResponse
from gateway.protocol.validation import CheckedRequest, check_request
from gateway.tracing import RequestMarks, make_tracer

logger = logging.getLogger("modelgate")

SERVER_NAME = "modelgate"
# Only extensions served in full on both transports; HTTP also answers Triton's model
# configuration (GET .../config) and the repository index, which are partial.
EXTENSIONS = ("binary_tensor_data", "parameters", "statistics")
ROUTING_KEY = "routing_key"  # request parameter; HTTP also takes the x-routing-key header

Wire = TypeVar("Wire")
Result = TypeVar("Result")


class RequestIds:
    """Ids for answers whose request named none: 64 random bits drawn once, then a counter.
    Unique within the process, and across processes and restarts by the random half, without
    a system call per request (os.urandom per id was about 1.7 % of the loop thread's time)."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def make(self) -> str:
        """32 lowercase hex digits, like a uuid4's."""
        return f"{self._prefix}{next(self._counter):016x}"


class InferenceService:
    def __init__(self, config: ServerConfig, ledger: Ledger | None = None) -> None:
        self.config = config
        self.server_version = package_version("modelgate")
        self.registry = Registry()
        self.loaded = False  # set once the repository's versions were tried
        self._tracer = make_tracer(config.tracing)
        self._ledger = ledger
        self._recorder = None if ledger is None else PredictionRecorder(ledger.journal)
        self._shadows = ShadowSender()
        monitoring = config.monitoring
        self._keep_predictions = monitoring.accuracy
        self._needs_ids = ledger is not None or monitoring.accuracy
        self._ids = RequestIds()
        self._predictions = Predictions(
            monitoring.predictions_kept, monitoring.predictions_max_age_s
        )
        self.accuracy = Accuracy(
            self._predictions, monitoring.accuracy_window_s, monitoring.accuracy_horizon
        )
        self.health_history = HealthHistory(
            self._health_sources, monitoring.health_period_s, monitoring.health_horizon
        )
        self._health_task: asyncio.Task[None] | None = None
        self.alerting: Alerting | None = None  # set by the server when rules are configured

    def _health_sources(self) -> list[tuple[tuple[str, str], Health]]:
        return [((e.deployment, e.version), e.health) for e in self.registry.entries()]

    def start_monitoring(self) -> None:
        """Take the health snapshots every period from now on."""
        self._health_task = asyncio.get_running_loop().create_task(self._snapshot_health())

    async def _snapshot_health(self) -> None:
        while True:
            await asyncio.sleep(self.health_history.period_s)  # a period, not a synchronization
            self.health_history.take()

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        await self._shadows.close()
        for loaded in self.registry.loaded():
            await loaded.close()
        if self._tracer is not None:
            self._tracer.shutdown()

    # ---- the request path ---------------------------------------------------------------

    async def infer(
        self,
        deployment: str,
        version: str | None,
        decode: Callable[[], tuple[InferRequest, Wire]],
        encode: Callable[[InferResponse, Wire], Result],
        routing_key: str | None = None,
    ) -> Result:
        started = perf_counter_ns()
        route = None
        if version:
            chain: tuple[VersionEntry, ...] = (self._pinned(deployment, version),)
            reason = PINNED
        else:
            route = self.registry.table.get(deployment)
            if route is None:
                self.registry.deployment(deployment).production()  # raises why not
                raise ModelNotReady(deployment, "", "no traffic policy")
        blamed = chain[0] if route is None else None  # the version a failure counts against
        attempts_charged = False
        try:
            request, wire = decode()
            decoded = perf_counter_ns()
            if route is not None:
                first, reason = route.pick(routing_key or _routing_key(request))
                chain = route.chain(first)
                blamed = first
            head = chain[0].loaded
            assert head is not None  # routes and pins hold READY versions only
            checked = check_request(request, head.signature, head.config.max_batch_size)
            try:
                answered, outputs, timing = await self._run_chain(chain, checked, started)
            except GatewayError:
                attempts_charged = True  # every version that failed was charged by _run_chain
                raise
            blamed = answered
            inferred = perf_counter_ns()
            target = answered.loaded
            assert target is not None
            if answered is not chain[0]:
                reason = FAILOVER
            chosen = [(name, *target.outputs[name]) for name in checked.output_names]
            response = InferResponse(
                model_name=deployment,
                model_version=answered.version,
                outputs=[InferOutput(name, dt, outputs[i]) for name, i, dt in chosen],
                # an answer that is journaled or kept for actuals can be traced and joined
                # by its id: a request without one gets one made up
                id=request.id or (self._ids.make() if self._needs_ids else ""),
                parameters={"routing": reason} if route is not None else {},
            )
            result = encode(response, wire)
            if answered.task is not None and self._keep_predictions:
                self._predictions.record(
                    response.id, deployment, answered.version, answered.task,
                    {name: outputs[i] for name, (i, _) in target.outputs.items()},
                )  # fmt: skip
            if route is not None and route.shadows:
                for shadow in route.shadows:
                    self._shadows.send(shadow, checked, outputs)
            if self._recorder is not None:
                appending = self._recorder.record(target, request, response, started, reason)
                if appending is not None:
                    await appending
        except GatewayError as error:
            if blamed is None and route is not None:
                # rejected before routing (undecodable): the version it would have reached
                blamed, _ = route.pick(routing_key)
            if blamed is not None:
                elapsed = perf_counter_ns() - started
                if not attempts_charged and blamed.loaded is not None:
                    blamed.loaded.stats.record_failure(elapsed)
                blamed.health.failed(error.kind, elapsed)
            raise
        encoded = perf_counter_ns()
        target.stats.record_success(encoded - started, checked.rows, timing)
        answered.health.answered(
            encoded - started, checked.rows, timing.batch_size, timing.queue_ns
        )
        if self._tracer is not None:
            marks = RequestMarks(started, decoded, inferred, encoded)
            self._tracer.record(deployment, answered.version, response.id, marks, timing)
        return result

    @staticmethod
    async def _run_chain(
        chain: tuple[VersionEntry, ...], checked: CheckedRequest, started: int
    ) -> tuple[VersionEntry, list[Any], Timing]:
        """The first version of `chain` whose breaker lets it try and that answers, with its
        outputs. A failure is charged to the version and the next one tries, within this
        request; when none answers, the last failure is raised."""
        failure: GatewayError | None = None
        for entry in chain:
            if not entry.breaker.allow():
                # a request the version could not take counts against it (a canary's checks)
                entry.outcomes.record(False, 0)
                failure = failure or ModelUnavailable(
                    entry.deployment, entry.version, "its circuit breaker is open"
                )
                continue
            loaded = entry.loaded
            assert loaded is not None
            tried = perf_counter_ns()
            entry.begin()
            try:
                feeds = loaded.backend.adapt(checked.feeds)
                answer = loaded.runner.submit(feeds, checked.rows, checked.batch_key)
                timeout_ms = loaded.config.timeout_ms
                if timeout_ms:
                    # cancelling a queued request drops it from its batch
                    answer = asyncio.wait_for(answer, timeout_ms / 1000)
                outputs, timing = await answer
            except BatchError as error:
                failure = ModelFailure(entry.deployment, entry.version, str(error))
            except BackendUnavailable as error:
                failure = ModelUnavailable(entry.deployment, entry.version, str(error))
            except TimeoutError:
                reason = f"no answer within {loaded.config.timeout_ms} ms"
                failure = ModelUnavailable(entry.deployment, entry.version, reason)
            else:
                entry.breaker.record_success()
                entry.outcomes.record(True, perf_counter_ns() - tried)
                if entry.observer is not None:
                    entry.observer(feeds, outputs)
                return entry, outputs, timing
            finally:
                entry.end()
            now = perf_counter_ns()
            entry.breaker.record_failure()
            entry.outcomes.record(False, now - tried)
            loaded.stats.record_failure(now - started)
            after = "failing over" if entry is not chain[-1] else "no fallback left"
            logger.warning("%s; %s", failure.message, after)
        assert failure is not None
        raise failure

    def _pinned(self, deployment: str, version: str) -> VersionEntry:
        entry = self.registry.deployment(deployment).entry(version)
        if entry.state is not VersionState.READY or entry.loaded is None:
            raise ModelNotReady(deployment, version, entry.state.value)
        return entry

    async def prediction(self, request_id: str) -> dict[str, Any]:
        """The prediction record of `request_id` (the traceability API). Raises NotFound."""
        record = None
        if self._ledger is not None:
            record = await asyncio.to_thread(self._ledger.find_prediction, request_id)
        if record is None:
            raise PredictionNotFound(request_id)
        return {
            "stream": record.stream,
            "seq": record.seq,
            "hash": record.hash,
            "time_ns": record.time_ns,
            "actor": record.actor,
            **record.payload,
        }

    def resolve(self, deployment: str, version: str | None = None) -> LoadedVersion:
        """What a metadata request describes: the pinned version, or the deployment's
        production version. Raises ModelNotFound, or ModelNotReady when it cannot serve."""
        if version:
            loaded = self._pinned(deployment, version).loaded
        else:
            loaded = self.registry.deployment(deployment).production().loaded
        assert loaded is not None
        return loaded

    # ---- health and metadata ------------------------------------------------------------

    @property
    def ready(self) -> bool:
        if not self.loaded:
            return False
        if not self.config.strict_readiness:
            return True
        return all(entry.state is not VersionState.UNAVAILABLE for entry in self.registry.entries())

    def model_ready(self, deployment: str, version: str | None = None) -> bool:
        if version:
            try:
                self._pinned(deployment, version)
            except ModelNotReady:
                return False
            return True
        self.registry.deployment(deployment)  # raises ModelNotFound
        return self.registry.table.get(deployment) is not None

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.server_version, "extensions": list(EXTENSIONS)}

    def model_metadata(self, deployment: str, version: str | None = None) -> dict[str, Any]:
        entry = self.resolve(deployment, version)
        signature = entry.signature
        ready = [v.version for v in self.registry.deployment(deployment).ready()]
        return {
            "name": deployment,
            "versions": ready if not version else [entry.version],
            "platform": signature.platform,
            "inputs": [t.as_dict() for t in signature.inputs],
            "outputs": [t.as_dict() for t in signature.outputs],
        }

    def model_config(self, deployment: str, version: str | None = None) -> dict[str, Any]:
        """The version in the JSON form of Triton's model configuration extension."""
        entry = self.resolve(deployment, version)
        batching = entry.config.max_batch_size > 0

        def tensor(t: Any) -> dict[str, Any]:
            type_name = "STRING" if t.datatype == "BYTES" else t.datatype
            dims = list(t.shape[1:] if batching else t.shape)
            return {"name": t.name, "data_type": f"TYPE_{type_name}", "dims": dims}

        config: dict[str, Any] = {
            "name": deployment,
            "platform": entry.signature.platform,
            "backend": "onnxruntime",
            "max_batch_size": entry.config.max_batch_size,
            "input": [tensor(t) for t in entry.signature.inputs],
            "output": [tensor(t) for t in entry.signature.outputs],
            "instance_group": [{"count": entry.config.instances, "kind": "KIND_CPU"}],
        }
        if batching:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": entry.config.max_queue_delay_us
            }
        return config

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        index = []
        for name in sorted(self.registry.deployments):
            for entry in self.registry.deployments[name].versions.values():
                if ready_only and entry.state is not VersionState.READY:
                    continue
                index.append(
                    {
                        "name": name,
                        "version": entry.version,
                        "state": entry.state.value,
                        "reason": entry.reason,
                    }
                )
        return index

    def statistics(self, deployment: str = "", version: str | None = None) -> list[dict[str, Any]]:
        """Triton statistics-extension entries: one version, every version of a deployment,
        or all."""
        if deployment:
            versions = self.registry.deployment(deployment).versions
            if version and version not in versions:
                raise ModelNotFound(deployment, version)
            chosen = [versions[version]] if version else list(versions.values())
        else:
            chosen = self.registry.entries()
        return [v.loaded.stats.as_triton_dict(v.deployment, v.version) for v in chosen if v.loaded]

    def health(self, deployment: str, version: str | None, window_s: float) -> dict[str, Any]:
        """Service health of a deployment's versions (or one) over the last `window_s`."""
        chosen = self._chosen(deployment, version)
        return {
            "deployment": deployment,
            "versions": [
                {
                    "version": e.version,
                    "state": e.state.value,
                    **self.health_history.window((deployment, e.version), e.health, window_s),
                }
                for e in chosen
            ],
        }

    def drift(self, deployment: str, version: str | None, window_s: float) -> dict[str, Any]:
        """Drift scores of a deployment's versions (or one) over the last `window_s`: each
        version's live sketches against its training-data profile."""
        return {
            "deployment": deployment,
            "versions": [
                {
                    "version": e.version,
                    "state": e.state.value,
                    **(
                        e.drift.scores(since_s=time.time() - window_s)
                        if e.drift is not None
                        else {
                            "error": "drift is not monitored: no training-data profile, "
                            "or [monitoring] sketches = false"
                        }
                    ),
                }
                for e in self._chosen(deployment, version)
            ],
        }

    def accuracy_report(
        self, deployment: str, version: str | None, window_s: float
    ) -> dict[str, Any]:
        """Accuracy against the actuals received over the last `window_s`."""
        self._chosen(deployment, version)  # raises ModelNotFound
        windows = max(1, math.ceil(window_s / self.config.monitoring.accuracy_window_s))
        return self.accuracy.metrics(deployment, version, windows)

    def add_actuals(self, deployment: str, entries: Any) -> dict[str, Any]:
        """Join actuals with the predictions they are for (monitoring/accuracy.py)."""
        self.registry.deployment(deployment)  # raises ModelNotFound
        return self.accuracy.add_actuals(deployment, entries)

    def _chosen(self, deployment: str, version: str | None) -> list[VersionEntry]:
        entries = self.registry.deployment(deployment).versions
        if version and version not in entries:
            raise ModelNotFound(deployment, version)
        return [entries[version]] if version else list(entries.values())

    @property
    def journal_stats(self) -> Callable[[], JournalStats] | None:
        """The journal's stats source, for /metrics; None without a journal."""
        return self._ledger.journal.stats if self._ledger is not None else None


def _routing_key(request: InferRequest) -> str | None:
    key = request.parameters.get(ROUTING_KEY)
    if key is None or isinstance(key, str):
        return key
    raise InvalidInput(f"parameter '{ROUTING_KEY}' must be a string")
