"""Loading a model version: open its backend and assemble what the request path needs of it.
Runs on the control path; `open_backend` blocks and runs in a worker thread. Warm-up and
validation, which go through the assembled version like any request, are in
lifecycle/warmup.py."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from gateway.backends.base import Backend, Runner
from gateway.backends.onnx import OnnxBackend
from gateway.batching import DynamicBatcher
from gateway.config import ModelConfig
from gateway.errors import InvalidInput
from gateway.governance.predictions import PredictionPayloads
from gateway.monitoring.profile import load_profile
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import ModelSignature
from gateway.repository import VersionSource
from gateway.statistics import VersionStats


@dataclass(frozen=True)
class VersionIdentity:
    """What a prediction record names to trace an answer to the exact model that gave it."""

    content_hash: str  # hex SHA-256 of the model file
    profile_id: str  # id of the training-data profile next to the model file, "" if none


@dataclass(frozen=True)
class OpenedVersion:
    backend: Backend
    identity: VersionIdentity


@dataclass(frozen=True)
class LoadedVersion:
    """What the request path needs of a READY version, fixed at load time."""

    name: str
    version: str
    config: ModelConfig  # max_batch_size is 0 when the signature cannot batch
    backend: Backend
    runner: Runner  # a DynamicBatcher over `backend`, or a remote backend itself
    stats: VersionStats
    # output name -> (position in the backend's outputs, V2 datatype)
    outputs: dict[str, tuple[int, str]]
    identity: VersionIdentity
    # its prediction records' payloads (the deployment is the version's `name`)
    payloads: PredictionPayloads = field(init=False, repr=False)

    def __post_init__(self) -> None:
        config, identity = self.config, self.identity
        payloads = PredictionPayloads(
            self.name, self.version, identity.content_hash, identity.profile_id,
            config.record_capture, config.record_sample_percent,
        )  # fmt: skip
        object.__setattr__(self, "payloads", payloads)  # frozen: derived once, here

    @property
    def signature(self) -> ModelSignature:
        return self.backend.signature

    async def close(self) -> None:
        """Fail what is queued, let running work finish, release the backend."""
        await self.runner.close()
        if self.runner is not self.backend:
            self.backend.close()


def _batchable(signature: ModelSignature) -> bool:
    """Batching needs a dynamic first dimension on every input and output to merge and split."""
    return all(t.shape and t.shape[0] == -1 for t in (*signature.inputs, *signature.outputs))


def serve_version(source: VersionSource, opened: OpenedVersion) -> LoadedVersion:
    """Event loop: wrap an opened backend with its batcher and statistics."""
    backend = opened.backend
    signature = backend.signature
    config = source.config
    if not _batchable(signature):
        config = replace(config, max_batch_size=0)
    stats = VersionStats()
    batcher = DynamicBatcher(
        backend.run,
        name=f"{source.model}-{source.version}",
        max_batch_size=config.max_batch_size,
        max_queue_delay_ns=config.max_queue_delay_us * 1000,
        adaptive_wait=config.batch_wait == "adaptive",
        instances=config.instances,
        on_batch=stats.record_batch,
    )
    outputs = {t.name: (i, t.datatype) for i, t in enumerate(signature.outputs)}
    return LoadedVersion(
        source.model, source.version, config, backend, batcher, stats, outputs, opened.identity
    )


def open_backend(source: VersionSource) -> OpenedVersion:
    """Worker thread: hash the model file, read its profile's id and open the session. Raises
    whatever loading raises."""
    identity = VersionIdentity(_file_sha256(source.model_file), _profile_id(source.profile_file))
    return OpenedVersion(OnnxBackend(source.model_file, source.config), identity)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _profile_id(path: Path) -> str:
    return str(load_profile(path)["id"]) if path.is_file() else ""


def warmup_samples(
    config: ModelConfig, folder: Path, signature: ModelSignature
) -> list[dict[str, np.ndarray]]:
    """The model's warm-up samples (`warmup_file`, relative to the model's folder above
    `folder`), or `warmup_samples` samples of zeros shaped from the metadata. Raises
    InvalidInput naming the file when it is not what the model takes."""
    if config.warmup_file:
        return _samples_from_file(folder.parent / config.warmup_file, signature)
    shapes = {t.name: tuple(1 if d == -1 else d for d in t.shape) for t in signature.inputs}
    samples = []
    for _ in range(config.warmup_samples):
        sample = {}
        for t in signature.inputs:
            datatype = BY_NAME[t.datatype]
            if datatype.is_bytes:
                sample[t.name] = np.full(shapes[t.name], b"", dtype=object)
            else:
                sample[t.name] = np.zeros(shapes[t.name], dtype=datatype.dtype)
        samples.append(sample)
    return samples


def _samples_from_file(path: Path, signature: ModelSignature) -> list[dict[str, np.ndarray]]:
    """One sample per row of a warm-up file: `{input name: [row, ...]}`."""
    rows_by_input = read_json(path, "warmup_file")
    if not isinstance(rows_by_input, dict):
        raise InvalidInput(f"warmup_file {path}: not an object of input name -> rows")
    rows = {t.name: rows_by_input.get(t.name) for t in signature.inputs}
    lacking = [name for name, given in rows.items() if not isinstance(given, list) or not given]
    if lacking:
        raise InvalidInput(f"warmup_file {path}: no list of rows for {', '.join(lacking)}")
    samples = []
    for row in range(min((len(given) for given in rows.values()), default=0)):
        try:
            samples.append(
                {
                    t.name: np.asarray([rows[t.name][row]], BY_NAME[t.datatype].dtype)
                    for t in signature.inputs
                }
            )
        except (TypeError, ValueError, OverflowError) as error:
            raise InvalidInput(f"warmup_file {path}: row {row}: {error}") from None
    return samples


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a model version; raises InvalidInput naming `what` and the file."""
    try:
        return orjson.loads(path.read_bytes())
    except OSError as error:
        raise InvalidInput(f"{what} {path}: {error.strerror or error}") from None
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"{what} {path}: not JSON: {error}") from None
