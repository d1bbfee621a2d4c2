"""The KServe peer: its own venv (KServe's pins clash with ours), and the command that serves the
same .onnx through `kserve_server.py` (a `kserve.Model` wrapping onnxruntime).

Settings chosen for a one-core comparison with Modelgate: one uvicorn worker (KServe's default),
no latency log and no access log (Modelgate logs none by default either), gRPC on (KServe's
default); no batching (KServe's model server has none of its own). The same venv gives the
tests KServe's Python SDK clients (tests/test_kserve_client.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import venvs
from .clients import Endpoint
from .peers import PeerSpec
from .procs import free_port
from .venvs import VenvRecipe

KSERVE_VERSION = "0.21.0"
_SITE_PACKAGES = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
RECIPE = VenvRecipe(
    "kserve-venv",
    ((f"kserve=={KSERVE_VERSION}", "onnxruntime"),),
    f"{_SITE_PACKAGES}/kserve/__init__.py",
)
SETTINGS_NOTES = [
    "1 uvicorn worker; latency and access logs off",
    "no batching (KServe's model server has none)",
    "model: onnxruntime, 1 intra-op thread, run inline on the event loop",
]


def ensure_venv(cache_dir: Path) -> Path:
    """The KServe venv under `cache_dir`, made if needed; raises PeerSetupError."""
    return venvs.ensure_venv(cache_dir, RECIPE)


def kserve_spec(
    venv: Path, model_name: str, model_file: Path, *, host: str = "127.0.0.1"
) -> PeerSpec:
    """The KServe model server serving `model_file` as `model_name`, on free ports. KServe
    listens on every interface; the bench talks to `host`."""
    http_port, grpc_port = free_port(host), free_port(host)
    script = Path(__file__).with_name("kserve_server.py")
    return PeerSpec(
        name="kserve",
        command=[
            str(venv / "bin" / "python"),
            "-P",  # not the script's folder on sys.path: this module would shadow kserve
            str(script),
            model_name,
            str(model_file.resolve()),
            str(http_port),
            str(grpc_port),
        ],
        endpoint=Endpoint.local(host, http_port, grpc_port),
        notes=list(SETTINGS_NOTES),
    )
