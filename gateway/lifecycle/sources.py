"""Where a version comes from, as the JSON that the admin stream records and replays.

    {"kind": "repository", "model": "credit_risk", "version": "3"}   <repository>/<model>/<version>
    {"kind": "upload", "sha256": "..."}                              <uploads>/<sha256>/model.onnx
    {"kind": "remote", "url": "host:port", "model": "m", "version": "", "timeout_s": 5.0}

`open_version` turns one into a LoadedVersion plus its warm-up samples and golden outputs;
the caller warms it up and validates it (lifecycle/warmup.py) before it may take traffic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.backends.remote import RemoteBackend, RemoteSpec
from gateway.config import ModelConfig
from gateway.errors import InvalidInput
from gateway.lifecycle.warmup import Golden, Sample
from gateway.loading import (
    LoadedVersion,
    VersionIdentity,
    open_backend,
    read_json,
    serve_version,
    warmup_samples,
)
from gateway.monitoring.profile import FORMAT as PROFILE_FORMAT
from gateway.monitoring.profile import Profile, load_profile, profile_id, save_profile
from gateway.repository import MODEL_FILE, VersionSource, version_source
from gateway.statistics import VersionStats

REPOSITORY = "repository"
UPLOAD = "upload"
REMOTE = "remote"
PROFILES = "profiles"  # <uploads>/profiles/<id>.json: profiles given at load
GOLDEN_FILE = "golden.json"  # next to a version's model file: outputs it must reproduce


@dataclass(frozen=True)
class Sources:
    """Where sources point: the model repository, the uploads folder, model defaults."""

    repository: Path
    uploads: Path
    defaults: ModelConfig


@dataclass(frozen=True)
class OpenedSource:
    loaded: LoadedVersion
    samples: list[Sample]
    golden: Golden | None
    profile: Profile | None  # the training-data profile next to the model file, if any


def check_source(source: Any) -> dict[str, Any]:
    """The source as the journal keeps it. Raises InvalidInput for a malformed one."""
    if not isinstance(source, Mapping):
        raise InvalidInput("'source' must be an object with a 'kind'")
    kind = source.get("kind")
    fields: dict[str, type | tuple[type, ...]]
    if kind == REPOSITORY:
        fields = {"model": str, "version": str}
    elif kind == UPLOAD:
        fields = {"sha256": str}
    elif kind == REMOTE:
        fields = {"url": str, "model": str, "version": str, "timeout_s": (int, float)}
    else:
        raise InvalidInput(f"source kind must be {REPOSITORY}, {UPLOAD} or {REMOTE}, not {kind!r}")
    unknown = set(source) - set(fields) - {"kind", "profile"}
    if unknown:
        raise InvalidInput(f"unknown {kind} source keys: {', '.join(sorted(unknown))}")
    optional = {"version": "", "timeout_s": RemoteSpec.timeout_s} if kind == REMOTE else {}
    checked: dict[str, Any] = {"kind": kind}
    for name, expected in fields.items():
        value = source.get(name, optional.get(name))
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InvalidInput(f"{kind} source needs '{name}'")
        if (value == "" and name not in optional) or (isinstance(value, float) and value <= 0):
            raise InvalidInput(f"{kind} source: '{name}' must not be empty or zero")
        checked[name] = value
    profile = source.get("profile")
    if profile is not None:
        if not isinstance(profile, str) or not profile.isalnum():
            raise InvalidInput("a source's 'profile' is the id of a stored profile")
        checked["profile"] = profile
    return checked


async def open_version(
    deployment: str, version: str, source: dict[str, Any], sources: Sources
) -> OpenedSource:
    """Open the backend `source` names as `version` of `deployment`. Raises GatewayError
    kinds for what the operator got wrong and whatever loading raises otherwise."""
    opened = await _open(deployment, version, source, sources)
    if "profile" not in source:
        return opened
    profile_file = sources.uploads / PROFILES / f"{source['profile']}.json"
    if not profile_file.is_file():
        await opened.loaded.close()
        raise InvalidInput(f"no stored profile with id {source['profile']}")
    loaded = opened.loaded
    identity = dataclasses.replace(loaded.identity, profile_id=source["profile"])
    loaded = dataclasses.replace(loaded, identity=identity)
    return dataclasses.replace(opened, loaded=loaded, profile=load_profile(profile_file))


async def _open(
    deployment: str, version: str, source: dict[str, Any], sources: Sources
) -> OpenedSource:
    if source["kind"] == REMOTE:
        return await _open_remote(deployment, version, source, sources.defaults)
    if source["kind"] == REPOSITORY:
        found = version_source(
            sources.repository, source["model"], source["version"], sources.defaults
        )
    else:
        folder = sources.uploads / source["sha256"]
        if not (folder / MODEL_FILE).is_file():
            raise InvalidInput(f"no uploaded model with SHA-256 {source['sha256']}")
        found = VersionSource(deployment, version, folder, sources.defaults)
    if found.problem:
        raise InvalidInput(f"{found.folder}: {found.problem}")
    found = dataclasses.replace(found, model=deployment, version=version)
    opened = await asyncio.to_thread(open_backend, found)
    loaded = serve_version(found, opened)
    samples = warmup_samples(found.config, found.folder, loaded.signature)
    golden_file = found.folder / GOLDEN_FILE
    golden = None
    if golden_file.is_file():
        golden = Golden.from_dict(read_json(golden_file, "golden file"), loaded.signature)
    profile = load_profile(found.profile_file) if found.profile_file.is_file() else None
    return OpenedSource(loaded, samples, golden, profile)


async def _open_remote(
    deployment: str, version: str, source: dict[str, Any], defaults: ModelConfig
) -> OpenedSource:
    spec = RemoteSpec(source["url"], source["model"], source["version"], source["timeout_s"])
    backend = await RemoteBackend.open(spec)
    # the remote server batches; the gateway only checks the batch dimension of requests
    config = dataclasses.replace(defaults, max_batch_size=backend.max_batch_size)
    signature = backend.signature
    loaded = LoadedVersion(
        deployment,
        version,
        config,
        backend,
        backend,
        VersionStats(),
        {t.name: (i, t.datatype) for i, t in enumerate(signature.outputs)},
        VersionIdentity(backend.content_id, ""),
    )
    return OpenedSource(loaded, warmup_samples(config, Path(), signature), None, None)


def store_profile(uploads: Path, profile: Any) -> str:
    """Keep a training-data profile given at load under its id (checked against its content),
    so that the version and a replay find it; the id."""
    if not isinstance(profile, Mapping) or profile.get("format") != PROFILE_FORMAT:
        raise InvalidInput(f"'profile' must be a {PROFILE_FORMAT} document")
    if profile.get("id") != profile_id(profile):
        raise InvalidInput("the profile's id does not match its content (edited or damaged)")
    identifier = str(profile["id"])
    path = uploads / PROFILES / f"{identifier}.json"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_profile(profile, path)
    return identifier


def store_upload(uploads: Path, model: bytes) -> tuple[str, Path | None]:
    """Keep an uploaded model file under its SHA-256 (written whole, then renamed) so that a
    replay of the admin stream finds it; the hash, and the folder when this call created it."""
    digest = hashlib.sha256(model).hexdigest()
    folder = uploads / digest
    if (folder / MODEL_FILE).is_file():
        return digest, None
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as file:
        file.write(model)
        file.flush()
        os.fsync(file.fileno())
    os.replace(file.name, folder / MODEL_FILE)
    return digest, folder
