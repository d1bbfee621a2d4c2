"""The request path: one object that both transports call.

    resolve(model, version) -> decode -> check_request -> adapt -> batcher -> respond -> encode

Transports hand in their codec's decode and encode so that timing, statistics, tracing and error
accounting happen here, once, for HTTP and gRPC alike.

State by lifetime:
- per service (event loop): the model table, the readiness flag, the tracer;
- per version: backend and batcher (whose worker threads only see batches), statistics (event
  loop only);
- per request: locals of `infer`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from time import perf_counter_ns
from typing import Any, TypeVar

from gateway.batching import BatchError
from gateway.config import ServerConfig
from gateway.errors import (
    GatewayError,
    ModelFailure,
    ModelNotFound,
    ModelNotReady,
    PredictionNotFound,
)
from gateway.governance.access import PRINCIPAL
from gateway.governance.journal import JournalStats
from gateway.governance.ledger import PREDICTIONS, Ledger
from gateway.governance.predictions import prediction_payload
from gateway.loading import LoadedVersion, open_backend, serve_version
from gateway.protocol.types import InferOutput, InferRequest, InferResponse
from gateway.protocol.validation import check_request
from gateway.repository import VersionSource
from gateway.tracing import RequestMarks, make_tracer

logger = logging.getLogger("modelgate")

SERVER_NAME = "modelgate"
# Only extensions served in full on both transports; HTTP also answers Triton's model
# configuration (GET .../config) and the repository index, which are partial.
EXTENSIONS = ("binary_tensor_data", "parameters", "statistics")

Wire = TypeVar("Wire")
Result = TypeVar("Result")


class ModelState(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass
class ModelVersion:
    """A version found in the repository, loaded or not."""

    name: str
    version: str
    state: ModelState = ModelState.LOADING
    reason: str = ""
    loaded: LoadedVersion | None = None


class InferenceService:
    def __init__(self, config: ServerConfig, ledger: Ledger | None = None) -> None:
        self.config = config
        self.server_version = package_version("modelgate")
        self._models: dict[str, dict[str, ModelVersion]] = {}
        self._loaded = False
        self._tracer = make_tracer(config.tracing)
        self._ledger = ledger

    # ---- control: loading ---------------------------------------------------------------

    async def load(self, sources: list[VersionSource]) -> None:
        """Load every version found by `repository.scan`; a version that fails is marked
        UNAVAILABLE with the reason and the others load regardless."""
        for source in sources:
            entry = ModelVersion(source.model, source.version)
            self._models.setdefault(source.model, {})[source.version] = entry
            if source.problem:
                self._fail(entry, source.problem)
                continue
            try:
                opened = await asyncio.to_thread(open_backend, source)
            except Exception as error:  # any load failure is reported per version, not fatal
                self._fail(entry, f"{type(error).__name__}: {error}")
                continue
            entry.loaded = serve_version(source, opened)
            entry.state = ModelState.READY
            logger.info("loaded %s version %s", source.model, source.version)
        self._loaded = True

    @staticmethod
    def _fail(entry: ModelVersion, reason: str) -> None:
        entry.state = ModelState.UNAVAILABLE
        entry.reason = reason
        logger.error("cannot load %s version %s: %s", entry.name, entry.version, reason)

    async def close(self) -> None:
        for loaded in self.loaded_versions():
            await loaded.batcher.close()
            loaded.backend.close()
        if self._tracer is not None:
            self._tracer.shutdown()

    # ---- the request path ---------------------------------------------------------------

    async def infer(
        self,
        model: str,
        version: str | None,
        decode: Callable[[], tuple[InferRequest, Wire]],
        encode: Callable[[InferResponse, Wire], Result],
    ) -> Result:
        started = perf_counter_ns()
        target = self.resolve(model, version)
        try:
            request, wire = decode()
            decoded = perf_counter_ns()
            checked = check_request(request, target.signature, target.config.max_batch_size)
            feeds = target.backend.adapt(checked.feeds)
            try:
                outputs, timing = await target.batcher.submit(
                    feeds, checked.rows, checked.batch_key
                )
            except BatchError as error:
                raise ModelFailure(model, target.version, str(error)) from None
            inferred = perf_counter_ns()
            chosen = [(name, *target.outputs[name]) for name in checked.output_names]
            response = InferResponse(
                model_name=target.name,
                model_version=target.version,
                outputs=[InferOutput(name, dt, outputs[i]) for name, i, dt in chosen],
                # with a ledger every answer is traceable: a request without an id gets one
                id=request.id or (uuid.uuid4().hex if self._ledger else ""),
            )
            result = encode(response, wire)
            if self._ledger is not None:
                routing = "pinned" if version else "latest"
                await self._record(self._ledger, target, request, response, started, routing)
        except GatewayError:
            target.stats.record_failure(perf_counter_ns() - started)
            raise
        encoded = perf_counter_ns()
        target.stats.record_success(encoded - started, checked.rows, timing)
        if self._tracer is not None:
            marks = RequestMarks(started, decoded, inferred, encoded)
            self._tracer.record(target.name, target.version, response.id, marks, timing)
        return result

    @staticmethod
    async def _record(
        ledger: Ledger,
        target: LoadedVersion,
        request: InferRequest,
        response: InferResponse,
        started: int,
        routing: str,
    ) -> None:
        """Journal the prediction: queued without waiting (back-pressure only when the queue is
        full), or, for a model with record_durable, awaited until it is on disk."""
        config = target.config
        payload = prediction_payload(
            request,
            response,
            capture=config.record_capture,
            sample_percent=config.record_sample_percent,
            content_hash=target.identity.content_hash,
            profile_id=target.identity.profile_id,
            latency_ns=perf_counter_ns() - started,
            routing=routing,
        )
        await ledger.journal.append(
            PREDICTIONS, "prediction", PRINCIPAL.get().actor, payload, durable=config.record_durable
        )

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

    def resolve(self, model: str, version: str | None = None) -> LoadedVersion:
        """The version that serves `model` (the highest READY one when `version` is None).
        Raises ModelNotFound, or ModelNotReady when it exists but cannot serve."""
        versions = self._models.get(model)
        if not versions:
            raise ModelNotFound(model)
        if version:
            entry = versions.get(version)
            if entry is None:
                raise ModelNotFound(model, version)
        else:
            ready = [v for v in versions.values() if v.state is ModelState.READY]
            if not ready:
                newest = max(versions.values(), key=lambda v: int(v.version or 0))
                raise ModelNotReady(model, newest.version, newest.state.value)
            entry = max(ready, key=lambda v: int(v.version))
        if entry.loaded is None:
            raise ModelNotReady(model, entry.version, entry.state.value)
        return entry.loaded

    # ---- health and metadata ------------------------------------------------------------

    @property
    def ready(self) -> bool:
        if not self._loaded:
            return False
        if not self.config.strict_readiness:
            return True
        return all(v.state is ModelState.READY for vs in self._models.values() for v in vs.values())

    def model_ready(self, model: str, version: str | None = None) -> bool:
        try:
            self.resolve(model, version)
        except ModelNotReady:
            return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.server_version, "extensions": list(EXTENSIONS)}

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        entry = self.resolve(model, version)
        signature = entry.signature
        return {
            "name": model,
            "versions": self._ready_versions(model) if not version else [entry.version],
            "platform": signature.platform,
            "inputs": [t.as_dict() for t in signature.inputs],
            "outputs": [t.as_dict() for t in signature.outputs],
        }

    def _ready_versions(self, model: str) -> list[str]:
        versions = self._models[model].values()
        return sorted((v.version for v in versions if v.state is ModelState.READY), key=int)

    def model_config(self, model: str, version: str | None = None) -> dict[str, Any]:
        """The model in the JSON form of Triton's model configuration extension."""
        entry = self.resolve(model, version)
        batching = entry.config.max_batch_size > 0

        def tensor(t: Any) -> dict[str, Any]:
            type_name = "STRING" if t.datatype == "BYTES" else t.datatype
            dims = list(t.shape[1:] if batching else t.shape)
            return {"name": t.name, "data_type": f"TYPE_{type_name}", "dims": dims}

        config: dict[str, Any] = {
            "name": model,
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
        for name in sorted(self._models):
            for entry in self._models[name].values():
                if ready_only and entry.state is not ModelState.READY:
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

    def statistics(self, model: str = "", version: str | None = None) -> list[dict[str, Any]]:
        """Triton statistics-extension entries: one version, every version of a model, or all."""
        if model:
            versions = self._models.get(model)
            if not versions or (version and version not in versions):
                raise ModelNotFound(model, version or None)
            chosen = [versions[version]] if version else list(versions.values())
        else:
            chosen = [v for vs in self._models.values() for v in vs.values()]
        return [v.loaded.stats.as_triton_dict(v.name, v.version) for v in chosen if v.loaded]

    @property
    def journal_stats(self) -> Callable[[], JournalStats] | None:
        """The journal's stats source, for /metrics; None without a journal."""
        return self._ledger.journal.stats if self._ledger is not None else None

    def loaded_versions(self) -> list[LoadedVersion]:
        return [v.loaded for vs in self._models.values() for v in vs.values() if v.loaded]
