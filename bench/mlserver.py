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
import shutil
from collections.abc import Sequence
from pathlib import Path

from . import venvs
from .clients import Endpoint
from .model import ModelSpec, TensorSpec
from .peers import PeerSpec
from .procs import free_port
from .venvs import VenvRecipe

MLSERVER_VERSION = "1.7.1"
# MLServer 1.7.1 breaks with uvloop 0.22 (it is not pinned upstream).
REQUIREMENTS = (f"mlserver=={MLSERVER_VERSION}", "uvloop<0.22", "onnxruntime", "numpy")
RUNTIME_MODULE = "modelgate_onnx_runtime"
SETTINGS_NOTES = [
    "parallel_workers=0 (inference in the server process)",
    "debug=false (no access log), metrics off, gzip off",
    "adaptive batching off (default)",
    "runtime: onnxruntime, 1 intra-op thread, run inline on the event loop",
]
RECIPE = VenvRecipe("mlserver-venv", (REQUIREMENTS,), "bin/mlserver")


def ensure_venv(cache_dir: Path) -> Path:
    """The MLServer venv under `cache_dir`, made if needed; raises PeerSetupError."""
    return venvs.ensure_venv(cache_dir, RECIPE)


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
