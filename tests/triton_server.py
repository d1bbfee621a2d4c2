"""A real Triton Inference Server for the tests, on free 127.0.0.1 ports, CPU only.

The binary comes from the `nvidia-pytriton` wheel (test extra, Linux only): `pytriton/tritonserver/
bin/tritonserver`, its libraries found through the binary's RPATH, and the Python backend with one
stub per Python version. Models are Python-backend models (`model.py` using
`triton_python_backend_utils`): Triton's ONNX Runtime backend is not in the wheel, so
`add_onnx_model` serves a .onnx file through onnxruntime inside the stub.

What it takes to run here, found by trial:
  - the backend directory is built per server in a temp dir (links to the wheel's backend, plus
    the stub of *this* interpreter's version, as pytriton itself does);
  - the stub embeds libpython: our interpreter's LIBDIR goes first on LD_LIBRARY_PATH;
  - the embedded interpreter ignores PYTHONPATH; it finds its home by looking up `python3` on
    PATH, so our interpreter's bin folder goes first on PATH: in a venv, that makes the stub read
    pyvenv.cfg and import numpy and onnxruntime from the venv's site-packages;
  - `--disable-auto-complete-config` skips one stub launch per model at start-up (our configs
    are complete);
  - each stub talks to the server through /dev/shm regions, which a SIGKILL leaves behind: each
    server gets its own region prefix and removes what matches it when it stops.

`TritonServer(repository)` is a context manager (or `start()` / `stop()` / `kill()`); start-up
waits on `/v2/health/ready` (strict readiness: every model loaded) by polling with a deadline,
and every error raised here carries the server's log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import onnxruntime as ort
import pytest

from gateway.protocol.datatypes import BY_ORT_TYPE

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
EXIT_TIMEOUT_S = 5  # Triton's own wait for in-flight requests on SIGTERM
POLL_S = 0.05
PORT_ATTEMPTS = 3
SHM_DIR = Path("/dev/shm")


def find_tritonserver() -> Path | None:
    """The pytriton package folder holding `tritonserver/`, or None where it is not installed."""
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    return package if (package / "tritonserver" / "bin" / "tritonserver").is_file() else None


def require_tritonserver() -> None:
    """Skip where the wheel does not exist (it is Linux only); on Linux, a missing tritonserver
    is a broken test install and fails."""
    if find_tritonserver() is not None:
        return
    if not sys.platform.startswith("linux"):
        pytest.skip("tritonserver (nvidia-pytriton) exists for Linux only")
    pytest.fail("tritonserver not found: install the test extra (pip install -e '.[test]')")


# ---- model repository ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str  # V2 name
    shape: tuple[int, ...]  # full shape, -1 for dynamic dimensions


_ONNX_MODEL_PY = '''
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

_FAILING_MODEL_PY = """
class TritonPythonModel:
    def execute(self, requests):
        raise RuntimeError("this model fails on purpose")
"""

_SLEEPING_MODEL_PY = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({seconds})
        answers = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", data)]))
        return answers
"""

_IDENTITY_MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", data)]))
        return answers
"""


def onnx_tensors(onnx_file: Path) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs of a .onnx file as onnxruntime reads them (symbolic dims: -1)."""
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])

    def convert(args: list[ort.NodeArg]) -> list[Tensor]:
        return [
            Tensor(
                arg.name,
                BY_ORT_TYPE[arg.type].name,
                tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape),
            )
            for arg in args
        ]

    return convert(session.get_inputs()), convert(session.get_outputs())


def add_onnx_model(
    repository: Path,
    name: str,
    onnx_file: Path,
    *,
    max_batch_size: int = 64,
    dynamic_batching: bool = False,
    max_queue_delay_us: int = 0,
) -> None:
    """Serve `onnx_file` as model `name`, version 1, with the file's own tensor names, datatypes
    and shapes. With `max_batch_size` > 0 the first dimension of every tensor is Triton's batch
    dimension; Triton cannot declare a batched tensor of rank 1, so such an output (a [-1] label)
    is declared [1] with `reshape: []` and Triton reports and returns it as [-1, 1]. With 0 the
    metadata repeats the .onnx shapes exactly, and Triton does not batch."""
    inputs, outputs = onnx_tensors(onnx_file)
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    shutil.copyfile(onnx_file, folder / "model.onnx")
    (folder / "model.py").write_text(_ONNX_MODEL_PY.lstrip())
    (repository / name / "config.pbtxt").write_text(
        model_config(inputs, outputs, max_batch_size, dynamic_batching, max_queue_delay_us)
    )


def add_failing_model(repository: Path, name: str) -> None:
    """A model that raises in every execute: INPUT and OUTPUT, FP32 [-1]."""
    tensors = [Tensor("INPUT", "FP32", (-1,))], [Tensor("OUTPUT", "FP32", (-1,))]
    _add_python_model(repository, name, _FAILING_MODEL_PY, *tensors)


def add_identity_model(repository: Path, name: str, datatype: str = "BYTES") -> None:
    """A model that answers its INPUT as OUTPUT, both `datatype` [-1, -1]."""
    tensors = [Tensor("INPUT", datatype, (-1, -1))], [Tensor("OUTPUT", datatype, (-1, -1))]
    _add_python_model(repository, name, _IDENTITY_MODEL_PY, *tensors)


def add_sleeping_model(repository: Path, name: str, seconds: float) -> None:
    """A model that sleeps `seconds` in every execute, then answers INPUT as OUTPUT (FP32 [-1])."""
    tensors = [Tensor("INPUT", "FP32", (-1,))], [Tensor("OUTPUT", "FP32", (-1,))]
    _add_python_model(repository, name, _SLEEPING_MODEL_PY.format(seconds=seconds), *tensors)


def _add_python_model(
    repository: Path, name: str, source: str, inputs: list[Tensor], outputs: list[Tensor]
) -> None:
    folder = repository / name / "1"
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(source.lstrip())
    (repository / name / "config.pbtxt").write_text(model_config(inputs, outputs, 0, False, 0))


def model_config(
    inputs: list[Tensor],
    outputs: list[Tensor],
    max_batch_size: int,
    dynamic_batching: bool,
    max_queue_delay_us: int,
) -> str:
    """config.pbtxt text of a Python-backend model with one CPU instance."""

    def entry(tensor: Tensor) -> str:
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TritonServer:
    """One tritonserver process serving `repository`; a context manager, or `start()` then
    `stop()` (SIGTERM) or `kill()` (SIGKILL, for crash tests); `close()` also removes the temp
    dir. `start_seconds` is how long the last start took until ready."""

    def __init__(self, repository: Path) -> None:
        package = find_tritonserver()
        if package is None:
            raise RuntimeError("tritonserver not found: install the test extra (nvidia-pytriton)")
        self._dist = package / "tritonserver"
        self.repository = repository
        self._tmp = tempfile.TemporaryDirectory(prefix="modelgate-triton-")
        self.directory = Path(self._tmp.name)
        self._backends = self._backend_directory()
        self._shm_prefix = f"modelgate_triton_{os.getpid()}_{os.urandom(4).hex()}_"
        self.process: subprocess.Popen[bytes] | None = None
        self.http_port = self.grpc_port = self.metrics_port = 0
        self.start_seconds = 0.0

    @property
    def grpc_url(self) -> str:
        """host:port of the gRPC endpoint, as tritonclient.grpc and RemoteSpec take it."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> TritonServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self) -> str:
        path = self.directory / "tritonserver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, *, keep_ports: bool = False) -> None:
        """Start on fresh free ports, or on the last ones with `keep_ports` (a restart that
        clients must find again), and wait until the server and every model are ready."""
        if self.process is not None:
            raise RuntimeError("tritonserver is already running")
        began = time.monotonic()
        attempts = 1 if keep_ports and self.grpc_port else PORT_ATTEMPTS
        for _ in range(attempts):
            if attempts > 1:
                self.http_port, self.grpc_port = free_port(), free_port()
                self.metrics_port = free_port()
            if self._launch():
                self.start_seconds = time.monotonic() - began
                return
        raise RuntimeError(f"tritonserver could not bind its ports:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then wait for the exit (Triton lets in-flight requests finish first)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to the server and its stubs at once, as a crashed host would look."""
        self._end(signal.SIGKILL)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self._tmp.cleanup()

    def _backend_directory(self) -> Path:
        python = self.directory / "backends" / "python"
        python.mkdir(parents=True)
        source = self._dist / "backends" / "python"
        for item in source.iterdir():
            if item.is_file():
                (python / item.name).symlink_to(item)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = self._dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise RuntimeError(f"pytriton has no Python backend stub for Python {version}")
        (python / stub.name).symlink_to(stub)
        return python.parent

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p
        )
        # not resolved: a venv's bin/python3 is a link, and its folder is what marks the venv
        env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
        return env

    def _command(self) -> list[str]:
        return [
            str(self._dist / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self._backends}",
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            "--allow-http=true",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--allow-grpc=true",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            # CPU only: no pinned host memory, no CUDA pool
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            "--log-verbose=0",
        ]

    def _launch(self) -> bool:
        """One start on the chosen ports. False when a port was taken meanwhile."""
        with open(self.directory / "tritonserver.log", "wb") as log:
            # its own session: kill() reaches the Python stubs too, and nothing else
            self.process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )
        try:
            return self._wait_ready(self.process)
        except BaseException:
            self._end(signal.SIGKILL)
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                self._end(signal.SIGKILL)
                if "already in use" in self.log():
                    return False
                raise RuntimeError(f"tritonserver exited at start-up:\n{self.log()}")
            if self._ready():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"tritonserver not ready in {START_TIMEOUT_S} s:\n{self.log()}")
            # a short poll, bounded by the deadline; wait() also notices an early exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(min(POLL_S, remaining))

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1.0) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _end(self, signum: int) -> None:
        """SIGTERM goes to the server alone (it stops its stubs itself); SIGKILL to the whole
        process group, stubs included."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                if signum == signal.SIGKILL:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.send_signal(signum)
                try:
                    process.wait(STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    raise RuntimeError(
                        f"tritonserver ignored signal {signum}:\n{self.log()}"
                    ) from None
        finally:
            # a SIGKILL leaves the stubs' shared-memory regions behind
            for region in SHM_DIR.glob(f"{self._shm_prefix}*"):
                with contextlib.suppress(OSError):
                    region.unlink()
