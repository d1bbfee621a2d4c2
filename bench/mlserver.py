"""The MLServer peer: its own venv (MLServer's pins clash with ours), a model folder serving the
same .onnx through `mlserver_runtime.OnnxRuntime`, and the command that starts it.

Settings chosen for a one-core comparison with Modelgate (written to settings.json):
  parallel_workers = 0   inference in the server process itself. The default (1) adds a worker
                         process and an IPC hop per request, and a second process on one core.
  debug = false          no per-request access log (Modelgate logs none by default either).
  metrics_endpoint = null, gzip_enabled = false   no metrics server, no compression middleware.
Adaptive batching stays off (MLServer's default: no max_batch_size in model-settings).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .clients import Endpoint
from .model import ModelSpec, TensorSpec
from .peers import PeerSpec
from .procs import free_port

MLSERVER_VERSION = "1.7.1"
# MLServer 1.7.1 breaks with uvloop 0.22 (it is not pinned upstream).
REQUIREMENTS = (f"mlserver=={MLSERVER_VERSION}", "uvloop<0.22", "onnxruntime", "numpy")
RUNTIME_MODULE = "modelgate_onnx_runtime"
INSTALL_TIMEOUT_S = 900.0
logger = logging.getLogger(__name__)
SETTINGS_NOTES = [
    "parallel_workers=0 (inference in the server process)",
    "debug=false (no access log), metrics off, gzip off",
    "adaptive batching off (default)",
    "runtime: onnxruntime, 1 intra-op thread, run inline on the event loop",
]


class MlserverSetupError(RuntimeError):
    """The MLServer venv could not be created or installed."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelgate-bench"


def ensure_venv(cache_dir: Path, *, python: str | None = None) -> Path:
    """Return a venv with MLServer installed, creating it under `cache_dir` if needed.

    Reused when its marker file lists the same requirements; rebuilt from scratch otherwise (a
    half-finished install has no marker). Raises MlserverSetupError with pip's output tail.
    """
    venv = cache_dir / "mlserver-venv"
    marker = venv / ".modelgate-bench-requirements"
    wanted = "\n".join(REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted and (venv / "bin" / "mlserver").exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # `sys._base_executable` is the interpreter behind our own venv; a venv made from a venv's
    # python would still work, but would point at our venv's (mutable) interpreter link.
    base_python = python or getattr(sys, "_base_executable", sys.executable)
    steps = [
        [base_python, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
    ]
    for step in steps:
        logger.info("mlserver venv: %s", " ".join(step))
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise MlserverSetupError(f"timed out after {INSTALL_TIMEOUT_S:g} s: {step}") from err
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise MlserverSetupError(f"{' '.join(step)} exited {done.returncode}:\n{tail}")
    marker.write_text(wanted)
    return venv


def write_model_dir(
    root: Path, model: ModelSpec, model_file: Path, *, host: str, http_port: int, grpc_port: int
) -> None:
    """Write settings.json, the model's model-settings.json and the runtime module into `root`."""
    model_dir = root / model.name
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "debug": False,
        "parallel_workers": 0,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        # Disabled, but MLServer still validates the port, so give it one that is free.
        "metrics_port": free_port(host),
        "metrics_endpoint": None,
        "gzip_enabled": False,
        "load_models_at_startup": True,
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))

    def tensors(specs: Sequence[TensorSpec]) -> list[dict[str, object]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in specs]

    model_settings = {
        "name": model.name,
        "implementation": f"{RUNTIME_MODULE}.OnnxRuntime",
        # Listed so that the V2 metadata endpoint describes the model like Modelgate's does.
        "inputs": tensors(model.inputs),
        "outputs": tensors(model.outputs),
        "parameters": {"uri": str(model_file.resolve()), "version": model.version or "1"},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    shutil.copyfile(
        Path(__file__).with_name("mlserver_runtime.py"), model_dir / f"{RUNTIME_MODULE}.py"
    )


def mlserver_spec(
    venv: Path,
    root: Path,
    model: ModelSpec,
    model_file: Path,
    *,
    host: str = "127.0.0.1",
) -> PeerSpec:
    """Prepare `root` and describe the `mlserver start` command for it, on free ports."""
    http_port, grpc_port = free_port(host), free_port(host)
    write_model_dir(root, model, model_file, host=host, http_port=http_port, grpc_port=grpc_port)
    return PeerSpec(
        name="mlserver",
        command=[str(venv / "bin" / "mlserver"), "start", str(root)],
        endpoint=Endpoint.local(host, http_port, grpc_port),
        cwd=root,  # MLServer writes .envs/.metrics into its working directory
        notes=list(SETTINGS_NOTES),
    )
