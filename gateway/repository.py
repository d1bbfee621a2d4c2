"""The model repository on disk: `<root>/<model>/<version>/model.onnx`, integer versions, and an
optional `<root>/<model>/config.toml` (ModelConfig keys) shared by the model's versions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import ConfigError, ModelConfig, from_mapping, read_toml
from gateway.errors import ModelNotFound

MODEL_FILE = "model.onnx"
PROFILE_FILE = "profile.json"  # the version's training-data profile, optional
CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class VersionSource:
    """One version found on disk. `problem` is empty when it can be loaded; otherwise it says why
    not, and the version is reported unavailable without stopping the others."""

    model: str
    version: str
    folder: Path
    config: ModelConfig
    problem: str = ""

    @property
    def model_file(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def profile_file(self) -> Path:
        return self.folder / PROFILE_FILE


def scan(root: Path, defaults: ModelConfig) -> list[VersionSource]:
    """Every model version under `root`, in name then version order. Raises ConfigError only when
    `root` itself is unusable; a broken model becomes VersionSources with a problem."""
    if not root.is_dir():
        raise ConfigError(f"model repository {root} is not a folder")
    found: list[VersionSource] = []
    for model_folder in sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    ):
        found.extend(_scan_model(model_folder, defaults))
    return found


def _scan_model(folder: Path, defaults: ModelConfig) -> list[VersionSource]:
    name = folder.name
    problem = ""
    config = defaults
    config_file = folder / CONFIG_FILE
    if config_file.exists():
        try:
            config = from_mapping(ModelConfig, read_toml(config_file), str(config_file), defaults)
        except ConfigError as error:
            problem = str(error)
    versions = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not versions:
        return [VersionSource(name, "", folder, config, "no integer version folders")]
    sources: list[VersionSource] = []
    for version_folder in versions:
        version_problem = problem
        if not version_problem and not (version_folder / MODEL_FILE).is_file():
            version_problem = f"{MODEL_FILE} is missing"
        sources.append(
            VersionSource(
                name, str(int(version_folder.name)), version_folder, config, version_problem
            )
        )
    return sources


def version_source(root: Path, model: str, version: str, defaults: ModelConfig) -> VersionSource:
    """One version of the repository, read now (it may have arrived after start-up). Raises
    ModelNotFound when `<root>/<model>/<version>` is not there."""
    folder = root / model
    if not model or "/" in model or model.startswith(".") or not folder.is_dir():
        raise ModelNotFound(model)
    for source in _scan_model(folder, defaults):
        if source.version == version:
            return source
    raise ModelNotFound(model, version)
