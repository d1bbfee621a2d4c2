"""The Triton peer: a real `tritonserver` (CPU only) from the `nvidia-pytriton` wheel, in a venv of
its own, serving a .onnx through a Python-backend model that wraps onnxruntime.

Why a venv of its own: the wheel pins numpy < 2, and the Python backend stub embeds an
interpreter that imports numpy from wherever it finds its home. Built against numpy 1, the stub
answers empty tensors under numpy 2 (pybind's numpy ABI), so the stub's environment must keep
numpy < 2 while ours moves on. The wheel is installed without its dependencies (its client side
is of no use here), next to numpy < 2 and our own onnxruntime version.

What it takes to run (found by trial, see the git history of tests/triton_server.py):
  - the backend directory is built per server (links to the wheel's Python backend, plus the
    stub of the venv's Python version, as pytriton itself does);
  - the stub links libpython dynamically and would find the system's first: the LIBDIR of the
    interpreter the venv was made from goes first on LD_LIBRARY_PATH;
  - the embedded interpreter ignores PYTHONPATH and finds its home by looking up `python3` on
    PATH: the Triton venv's bin goes first, so the stub reads its pyvenv.cfg and imports numpy
    and onnxruntime from that venv;
  - `--disable-auto-complete-config` skips one stub launch per model at start-up (our configs
    are complete);
  - each stub talks to the server through /dev/shm regions, which a SIGKILL leaves behind: each
    server gets its own region prefix, removed when it stops, however it stopped.

Triton's ONNX Runtime backend is not in the wheel: every inference crosses from the server to
the stub process through shared memory and runs in Python, so this is not Triton's best case.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from types import TracebackType
from typing import Self

from .clients import Endpoint
from .model import ModelSpec, TensorSpec
from .peers import PeerError, PeerSpec, RunningServer
from .procs import free_port
from .venvs import PeerSetupError, VenvRecipe
from .venvs import ensure_venv as ensure_recipe

PYTRITON_VERSION = "0.7.0"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
SITE_PACKAGES = f"lib/python{PYTHON_VERSION}/site-packages"
DIST = f"{SITE_PACKAGES}/pytriton/tritonserver"  # inside the venv
EXIT_TIMEOUT_S = 5  # Triton's own wait for in-flight requests on SIGTERM
READY_S = 60.0  # a server of TritonServer: the wheel starts in a few seconds
PORT_ATTEMPTS = 3
HOST = "127.0.0.1"
SHM_DIR = Path("/dev/shm")
HEALTH_READY = "/v2/health/ready"


def recipe() -> VenvRecipe:
    """The wheel without its dependencies, numpy < 2 for the stub, and the onnxruntime version
    we run (the same kernels as Modelgate's), or the newest where ours is not installed."""
    try:
        onnxruntime = f"onnxruntime=={installed_version('onnxruntime')}"
    except PackageNotFoundError:
        onnxruntime = "onnxruntime"
    return VenvRecipe(
        "triton-venv",
        (("--no-deps", f"nvidia-pytriton=={PYTRITON_VERSION}"), ("numpy<2", onnxruntime)),
        f"{DIST}/bin/tritonserver",
    )


def ensure_venv(cache_dir: Path) -> Path:
    """The Triton venv under `cache_dir`, made if needed (about a minute with PyPI at hand);
    raises PeerSetupError."""
    return ensure_recipe(cache_dir, recipe())


@dataclass(frozen=True)
class TritonInstall:
    """Where a Triton venv keeps what a server needs: the venv, the wheel's `tritonserver/`
    folder and the Python backend stub of our Python version."""

    venv: Path
    dist: Path
    stub: Path

    @classmethod
    def find(cls, venv: Path) -> TritonInstall:
        """Raises PeerSetupError where the venv lacks the binary or a stub for our Python."""
        venv = venv.absolute()  # the backend directory links to it from elsewhere
        dist = venv / DIST
        if not (dist / "bin" / "tritonserver").is_file():
            raise PeerSetupError(f"{venv}: no tritonserver in {dist}")
        stub = dist / "python_backend_stubs" / PYTHON_VERSION / "triton_python_backend_stub"
        if not stub.is_file():
            raise PeerSetupError(f"pytriton {PYTRITON_VERSION} has no stub for {PYTHON_VERSION}")
        return cls(venv, dist, stub)

    @property
    def binary(self) -> Path:
        return self.dist / "bin" / "tritonserver"

    def environment(self) -> dict[str, str]:
        """PATH and LD_LIBRARY_PATH for a server (see the module docstring). The venv was made
        from the interpreter behind ours, so our LIBDIR is its LIBDIR."""
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        library_path = [libdir, os.environ.get("LD_LIBRARY_PATH", "")]
        # not resolved: the venv's bin/python3 is a link, and its folder is what marks the venv
        path = [str(self.venv / "bin"), os.environ.get("PATH", "")]
        return {
            "LD_LIBRARY_PATH": os.pathsep.join(p for p in library_path if p),
            "PATH": os.pathsep.join(p for p in path if p),
        }

    def write_backends(self, folder: Path) -> Path:
        """A backend directory under `folder`: the wheel's Python backend plus our stub."""
        python = folder / "backends" / "python"
        python.mkdir(parents=True)
        for item in (self.dist / "backends" / "python").iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        (python / self.stub.name).symlink_to(self.stub)
        return python.parent


# ---- model repository ----------------------------------------------------------------------

ONNX_MODEL_PY = '''
"""Serves model.onnx of this version folder through onnxruntime; the requests of one execute
call (a dynamic batch) are concatenated into one run and split back by rows."""
import itertools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [node.name for node in self.session.get_inputs()]
        self.outputs = [node.name for node in self.session.get_outputs()]

    def execute(self, requests):
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            for r in requests
        ]
        if len(feeds) == 1:
            merged = feeds[0]
        else:
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        results = self.session.run(self.outputs, merged)
        bounds = np.cumsum([0] + [len(f[self.inputs[0]]) for f in feeds])
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor(n, r[a:b]) for n, r in zip(self.outputs, results)]
            )
            for a, b in itertools.pairwise(bounds)
        ]
'''


def add_onnx_model(
    repository: Path,
    name: str,
    onnx_file: Path,
    *,
    version: str = "1",
    max_batch_size: int = 64,
    dynamic_batching: bool = False,
    max_queue_delay_us: int = 0,
) -> None:
    """Serve `onnx_file` as model `name`, `version`, with the file's own tensor names, datatypes
    and shapes. With `max_batch_size` > 0 the first dimension of every tensor is Triton's batch
    dimension; Triton cannot declare a batched tensor of rank 1, so such an output (a [-1] label)
    is declared [1] with `reshape: []` and Triton reports and returns it as [-1, 1]. With 0 the
    metadata repeats the .onnx shapes exactly, and Triton does not batch."""
    spec = ModelSpec.from_onnx(onnx_file, name)
    folder = repository / name / version
    folder.mkdir(parents=True)
    shutil.copyfile(onnx_file, folder / "model.onnx")
    (folder / "model.py").write_text(ONNX_MODEL_PY.lstrip())
    (repository / name / "config.pbtxt").write_text(
        model_config(
            spec.inputs, spec.outputs, max_batch_size, dynamic_batching, max_queue_delay_us
        )
    )


def add_python_model(
    repository: Path,
    name: str,
    source: str,
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
) -> None:
    """A Python-backend model `name`, version 1, whose model.py is `source`; no batching."""
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(source.lstrip())
    (repository / name / "config.pbtxt").write_text(model_config(inputs, outputs, 0, False, 0))


def model_config(
    inputs: tuple[TensorSpec, ...],
    outputs: tuple[TensorSpec, ...],
    max_batch_size: int,
    dynamic_batching: bool,
    max_queue_delay_us: int,
) -> str:
    """config.pbtxt text of a Python-backend model with one CPU instance; raises ValueError for
    a batched tensor without a dynamic first dimension, or dynamic batching without batches."""

    def entry(tensor: TensorSpec) -> str:
        data_type = "TYPE_STRING" if tensor.datatype == "BYTES" else f"TYPE_{tensor.datatype}"
        dims = tensor.shape
        if max_batch_size:
            if not dims or dims[0] != -1:
                raise ValueError(f"{tensor.name}: batching needs a dynamic first dimension")
            dims = dims[1:]
        reshape = ""
        if not dims:  # a batch of scalars: Triton wants at least one dimension
            dims, reshape = (1,), " reshape: { shape: [ ] }"
        listed = ", ".join(str(d) for d in dims)
        return f'{{ name: "{tensor.name}" data_type: {data_type} dims: [ {listed} ]{reshape} }}'

    lines = [
        'backend: "python"',
        f"max_batch_size: {max_batch_size}",
        "input [ " + ", ".join(entry(t) for t in inputs) + " ]",
        "output [ " + ", ".join(entry(t) for t in outputs) + " ]",
        "instance_group [ { kind: KIND_CPU, count: 1 } ]",
    ]
    if dynamic_batching:
        if not max_batch_size:
            raise ValueError("dynamic batching needs max_batch_size > 0")
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}")
    return "\n".join(lines) + "\n"


# ---- the server ----------------------------------------------------------------------------


def triton_spec(
    install: TritonInstall,
    root: Path,
    repository: Path,
    *,
    name: str = "triton",
    host: str = "127.0.0.1",
    ports: tuple[int, int] | None = None,
    notes: tuple[str, ...] = (),
) -> PeerSpec:
    """`tritonserver` serving `repository` on (HTTP, gRPC) `ports`, free ones by default, metrics
    off; its backend directory goes into `root` (a fresh folder per spec). Every model must be
    ready before /v2/health/ready says so (strict readiness)."""
    http_port, grpc_port = ports or (free_port(host), free_port(host))
    backends = install.write_backends(root)
    shm_prefix = f"modelgate_triton_{os.getpid()}_{os.urandom(4).hex()}_"

    def remove_regions() -> None:
        for region in SHM_DIR.glob(f"{shm_prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()

    command = [
        str(install.binary),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        f"--http-address={host}",
        f"--http-port={http_port}",
        f"--grpc-address={host}",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        # CPU only: no pinned host memory, no CUDA pool
        "--pinned-memory-pool-byte-size=0",
        "--cuda-memory-pool-byte-size=0:0",
        "--log-verbose=0",
    ]
    return PeerSpec(
        name=name,
        command=command,
        endpoint=Endpoint.local(host, http_port, grpc_port),
        env=install.environment(),
        notes=list(notes),
        cleanup=remove_regions,
    )


PYTHON_BACKEND_NOTE = (
    "Python backend: onnxruntime (1 intra-op thread) in the backend's stub process, each "
    "request crossing to it through shared memory; the wheel has no ONNX Runtime backend, so "
    "this is not Triton's best case"
)


def bench_spec(
    install: TritonInstall,
    root: Path,
    model: ModelSpec,
    model_file: Path,
    *,
    name: str,
    max_batch_size: int,
    dynamic_batching: bool,
    max_queue_delay_us: int,
    host: str,
) -> PeerSpec:
    """A Triton peer for the bench: `model_file` served as `model` (its version; "1" where it
    names none) from a repository under `root`, with one model instance. Raises ValueError for
    dynamic batching with `max_batch_size` 0."""
    repository = root / "models"
    add_onnx_model(
        repository,
        model.name,
        model_file,
        version=model.version or "1",
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        max_queue_delay_us=max_queue_delay_us,
    )
    batching = (
        f"dynamic batching on (max_batch_size {max_batch_size}, max_queue_delay "
        f"{max_queue_delay_us} us)"
        if dynamic_batching
        else f"dynamic batching off (max_batch_size {max_batch_size})"
    )
    notes = (PYTHON_BACKEND_NOTE, batching, "one model instance, metrics off")
    return triton_spec(install, root, repository, name=name, host=host, notes=notes)


class TritonServer:
    """One tritonserver serving `repository` on 127.0.0.1, unpinned, for tests and tools: a
    context manager, or `start()` then `stop()` (SIGTERM: in-flight requests finish) or `kill()`
    (SIGKILL to the server and its stubs, as a crash would look); `close()` also removes its
    temp folder. Start-up waits until every model is ready; a PeerError carries the end of the
    server's log."""

    def __init__(self, install: TritonInstall, repository: Path) -> None:
        self._install = install
        self.repository = repository
        self._tmp = tempfile.TemporaryDirectory(prefix="modelgate-triton-")
        self._directory = Path(self._tmp.name)
        # the latest start's, kept after it stopped: a restart may reuse the ports
        self._starts = 0
        self._ports: tuple[int, int] | None = None
        self._running: RunningServer | None = None

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint, as tritonclient.grpc and RemoteSpec take it."""
        return f"{HOST}:{self._started_ports()[1]}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self._started_ports()[0]}"

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, *, keep_ports: bool = False) -> None:
        """Start on fresh free ports, or on the last ones with `keep_ports` (a restart that
        clients must find again). Raises PeerError when it does not become ready."""
        if self._running is not None:
            raise RuntimeError("tritonserver is already running")
        attempts = 1 if keep_ports and self._ports else PORT_ATTEMPTS
        for attempt in range(attempts):
            if attempts > 1:
                self._ports = (free_port(HOST), free_port(HOST))
            self._starts += 1
            root = self._directory / f"start-{self._starts}"
            spec = triton_spec(self._install, root, self.repository, host=HOST, ports=self._ports)
            running = RunningServer(
                spec, cores=None, ready_path=HEALTH_READY, log_dir=root, ready_timeout_s=READY_S
            )
            try:
                self._running = running.__enter__()
                return
            except PeerError as err:
                # the usual bind-to-0 race: another process took a free port meanwhile
                if "already in use" not in err.log_tail or attempt + 1 == attempts:
                    raise

    def stop(self) -> None:
        """SIGTERM, then wait for the exit (Triton lets in-flight requests finish first)."""
        running, self._running = self._running, None
        if running is not None:
            running.__exit__(None, None, None)

    def kill(self) -> None:
        """SIGKILL to the server and its stubs at once."""
        running, self._running = self._running, None
        if running is not None:
            running.kill()

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def _started_ports(self) -> tuple[int, int]:
        if self._ports is None:
            raise RuntimeError("tritonserver was never started")
        return self._ports
