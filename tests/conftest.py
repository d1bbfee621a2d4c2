"""Fixtures for the integration tests: a model repository and real gateway processes on 127.0.0.1.

`server` is one gateway for the whole session, serving `repository`: the example credit_risk
model (two versions), the test models of `onnx_models`, a folder whose model.onnx is garbage and
a model whose config.toml is invalid (both must be reported unavailable while the others serve;
`strict_readiness = false` lets the server report ready regardless). `start_server` runs another
gateway with a custom config for the tests that need one; `server_factory` is its
function-scoped form, stopping every server it started when the test ends.

A server's stderr is read by a background thread, so the pipe never fills; start-up waits on the
`ready:` line with a bounded timeout, and teardown sends SIGTERM and asserts a clean exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx_models
import onnxruntime as ort
import pytest
import triton_server
from gateway.bench import mlserver, triton
from gateway.bench.model import ModelSpec
from gateway.bench.peers import PeerError, RunningServer
from gateway.bench.venvs import PeerSetupError, default_cache_dir

ROOT = Path(__file__).resolve().parent.parent
CREDIT_RISK = ROOT / "examples" / "models" / "credit_risk"
CREDIT_RISK_FEATURES = 20
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 30.0

# The session server's config: a broken model must not make the whole server unready.
SESSION_CONFIG = "strict_readiness = false\n"

_LISTENING = re.compile(r"listening: HTTP [\d.]+:(\d+), gRPC [\d.]+:(\d+)")


@dataclass
class Server:
    """A gateway process and what it has written to stderr so far."""

    process: subprocess.Popen[str]
    repository: Path
    journal: Path
    http_port: int = 0
    grpc_port: int = 0
    ready_line: str = ""
    lines: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)
    _new_line: threading.Condition = field(default_factory=threading.Condition)

    @property
    def http_address(self) -> str:
        """host:port, as tritonclient.http takes it."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.http_address}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return "".join(self.lines)

    @property
    def admin_token(self) -> str:
        """The admin token the gateway made on its first start (kept next to its tokens)."""
        return (self.journal / "admin-token").read_text().strip()

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT_S) -> str:
        """The first stderr line matching the regex `pattern`, waiting for it to be written."""
        regex = re.compile(pattern)

        def found() -> str | None:
            return next((line for line in self.lines if regex.search(line)), None)

        with self._new_line:
            if not self._new_line.wait_for(found, timeout):
                pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{self.log()}")
        return found() or ""

    def _read(self) -> None:
        """Background thread: drain stderr until the process closes it."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
            found = _LISTENING.search(line)
            if found:
                self.http_port, self.grpc_port = int(found[1]), int(found[2])
            if " ready: " in line:
                self.ready_line = line
                self._ready.set()
        self._ready.set()  # the process ended: stop waiting


def _stop(server: Server, signum: int = signal.SIGTERM) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signum)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"the gateway ignored SIGTERM for {STOP_TIMEOUT_S} s:\n{server.log()}")


@contextlib.contextmanager
def start_server(
    repository: Path,
    config: str = "",
    *,
    config_dir: Path | None = None,
    expect_ready: bool = True,
    kill_signal: int = signal.SIGTERM,
    journal_dir: Path | None = None,
    wait_for_ready: bool = True,
) -> Iterator[Server]:
    """Run `python -m gateway serve` on `repository` with the TOML text `config`, yield it once
    it reports readiness (or, without `wait_for_ready`, once it listens: models may still be
    loading), then stop it with `kill_signal` and assert it exits as it should: with status 0
    after SIGTERM, killed by the signal otherwise (a crash, for recovery tests)."""
    command = [
        sys.executable,
        "-m",
        "gateway",
        "serve",
        "--repository",
        str(repository),
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
    ]
    # every gateway gets a journal of its own (one process may hold a journal at a time),
    # unless the test hands it one to reuse
    journal = journal_dir or Path(
        tempfile.mkdtemp(prefix="journal-", dir=config_dir or repository.parent)
    )
    command += ["--journal", str(journal)]
    if config:
        config_file = (config_dir or repository.parent) / f"server-{os.urandom(4).hex()}.toml"
        config_file.write_text(config)
        command += ["--config", str(config_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    server = Server(process, repository, journal)
    reader = threading.Thread(target=server._read, name="gateway-stderr", daemon=True)
    reader.start()
    try:
        if not wait_for_ready:
            server.wait_for_line("listening: ")
        elif not server._ready.wait(START_TIMEOUT_S):
            pytest.fail(f"no 'ready' line within {START_TIMEOUT_S} s:\n{server.log()}")
        elif not server.ready_line or not server.http_port or not server.grpc_port:
            pytest.fail(f"the gateway exited during start-up:\n{server.log()}")
        elif expect_ready and "ready: yes" not in server.ready_line:
            pytest.fail(f"the gateway did not become ready:\n{server.log()}")
        yield server
    finally:
        status = _stop(server, kill_signal)
        reader.join(timeout=STOP_TIMEOUT_S)
    expected = 0 if kill_signal == signal.SIGTERM else -kill_signal
    assert status == expected, f"the gateway exited with status {status}:\n{server.log()}"


def copy_credit_risk(
    destination: Path, name: str = "credit_risk", config: str | None = None
) -> Path:
    """Copy the example model into the repository `destination` as `name`; `config`, when given,
    replaces its config.toml."""
    folder = destination / name
    shutil.copytree(CREDIT_RISK, folder)
    if config is not None:
        (folder / "config.toml").write_text(config)
    return folder


# ---- the session repository and server -----------------------------------------------------


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    copy_credit_risk(root)
    onnx_models.write_test_models(root)
    # The reshape model fails on zero-filled warm-up samples by design: warm it up with none.
    (root / "reshape" / "config.toml").write_text("warmup_samples = 0\n")
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    broken.joinpath("model.onnx").write_bytes(b"\x00garbage, not a protobuf\xff" * 8)
    bad_config = root / "bad_config"
    (bad_config / "1").mkdir(parents=True)
    (bad_config / "1" / "model.onnx").write_bytes(onnx_models.identity("FP32"))
    (bad_config / "config.toml").write_text('max_batch_size = "many"\n')
    return root


@pytest.fixture(scope="session")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config_dir = tmp_path_factory.mktemp("config")
    with start_server(repository, SESSION_CONFIG, config_dir=config_dir) as running:
        yield running


@pytest.fixture(scope="session")
def http_url(server: Server) -> str:
    """http://127.0.0.1:PORT of the session server."""
    return server.http_url


@pytest.fixture(scope="session")
def http_address(server: Server) -> str:
    """127.0.0.1:PORT of the session server's HTTP side (tritonclient.http's `url`)."""
    return server.http_address


@pytest.fixture(scope="session")
def grpc_address(server: Server) -> str:
    return server.grpc_address


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start gateways with a custom config: `start(repository, config_toml, expect_ready=True)`.
    Every server started is stopped (SIGTERM, exit status 0 asserted) when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(repository: Path, config: str = "", *, expect_ready: bool = True) -> Server:
            return stack.enter_context(
                start_server(repository, config, config_dir=tmp_path, expect_ready=expect_ready)
            )

        yield start


# ---- the oracle ----------------------------------------------------------------------------


@cache
def ort_session(model_file: Path) -> ort.InferenceSession:
    """A direct onnxruntime session on a model file, the oracle the gateway is compared with."""
    return ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])


def run_direct(model_file: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output of `model_file` for `feeds`, by name, computed by onnxruntime alone."""
    session = ort_session(model_file)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def model_file(repository: Path, model: str, version: str = "1") -> Path:
    return repository / model / version / "model.onnx"


def credit_risk_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Random but plausible credit_risk feature rows, scaled like the warm-up samples."""
    scale = np.array(
        [50, 5e4, 60, 0.1, 0.2, 10, 1, 1, 1, 700, 15, 1e4, 2e3, 5e4, 1e3, 1, 1e4, 30, 0.1, 0.2],
        dtype=np.float32,
    )
    return (rng.random((rows, CREDIT_RISK_FEATURES), dtype=np.float32) * 2 * scale).astype(
        np.float32
    )


def identity_values(rng: np.random.Generator, datatype: str, rows: int) -> np.ndarray:
    """Random [rows, 3] values of a V2 datatype, spanning its range (BYTES: non-ASCII UTF-8)."""
    shape = (rows, onnx_models.IDENTITY_WIDTH)
    _, dtype = onnx_models.IDENTITY_TYPES[datatype]
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    if datatype == "BYTES":
        alphabet = list("aZ09 ~äöüßé€中文日本語🙂\u00a0")
        words = [
            "".join(rng.choice(alphabet, size=int(rng.integers(0, 9)))).encode()
            for _ in range(int(np.prod(shape)))
        ]
        array = np.empty(len(words), dtype=object)
        array[:] = words
        return array.reshape(shape)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        values.flat[0] = info.min
        values.flat[-1] = info.max
        return values
    values = (rng.standard_normal(shape) * 1000).astype(dtype)
    values.flat[0] = np.finfo(dtype).max
    values.flat[-1] = np.finfo(dtype).tiny
    return values


def as_bytes_array(values: np.ndarray) -> np.ndarray:
    """A BYTES array with every element as `bytes` (clients return str or bytes)."""
    flat = [v.encode() if isinstance(v, str) else bytes(v) for v in values.reshape(-1)]
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(values.shape)


def assert_same(datatype: str, got: np.ndarray, expected: np.ndarray) -> None:
    """Exact equality for a round trip, with dtype and shape checked (BYTES compared as bytes)."""
    assert got.shape == expected.shape
    if datatype == "BYTES":
        assert as_bytes_array(got).tolist() == as_bytes_array(expected).tolist()
    else:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


# ---- raw HTTP --------------------------------------------------------------------------------


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    method: str,
    url: str,
    body: bytes | dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    """One plain HTTP request (urllib), for what a client library would hide or refuse to send.
    A dict body is sent as JSON. Error statuses are returned, not raised."""
    headers = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return HttpAnswer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return HttpAnswer(error.code, dict(error.headers), error.read())


def infer_credit_risk(server: Server, rows: np.ndarray, request_id: str | None = None) -> Any:
    """The JSON answer of a V2 JSON request with `rows` of credit_risk features (and the
    client's `request_id`, when given), which must succeed."""
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": list(rows.shape),
                "data": rows.ravel().tolist(),
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    answer = http_request("POST", f"{server.http_url}/v2/models/credit_risk/infer", body)
    assert answer.status == 200, answer.body
    return answer.json()


# ---- remote V2 servers: a real tritonserver and a real MLServer ------------------------------

# What the remote servers serve as "credit_risk": the example's version 2.
REMOTE_CREDIT_RISK = CREDIT_RISK / "2" / "model.onnx"
SLEEPING_S = 0.5  # how long the `sleeping` Triton model takes per execute
MLSERVER_READY_TIMEOUT_S = 60.0


def peer_cache_dir(peer: str) -> Path:
    """Where a peer's venv is kept for the tests: inside our own venv, so that `make clean`
    removes it and a fresh clone builds it once (with PyPI at hand: MLServer about 25 s and
    400 MB, Triton about 10 s and 330 MB)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / f"modelgate-{peer}"
    return default_cache_dir()


def write_triton_repository(root: Path) -> Path:
    """The session tritonserver's models:
    credit_risk          REMOTE_CREDIT_RISK with max_batch_size 0: metadata exactly the .onnx's
    credit_risk_batched  the same with max_batch_size 64 and dynamic batching (label: [-1, 1])
    failing              raises in every execute
    identity_bytes       BYTES [-1, -1] answered as it came
    sleeping             sleeps SLEEPING_S, then answers FP32 [-1] as it came"""
    triton.add_onnx_model(root, "credit_risk", REMOTE_CREDIT_RISK, max_batch_size=0)
    triton.add_onnx_model(
        root, "credit_risk_batched", REMOTE_CREDIT_RISK, max_batch_size=64, dynamic_batching=True
    )
    triton_server.add_failing_model(root, "failing")
    triton_server.add_identity_model(root, "identity_bytes", "BYTES")
    triton_server.add_sleeping_model(root, "sleeping", SLEEPING_S)
    return root


@pytest.fixture(scope="session")
def triton_install() -> triton.TritonInstall:
    """The bench's Triton venv (made on first use); skips where the wheel does not exist (it is
    Linux only), fails where it cannot be installed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tritonserver (nvidia-pytriton) exists for Linux only")
    try:
        return triton.TritonInstall.find(triton.ensure_venv(peer_cache_dir("triton")))
    except PeerSetupError as error:
        pytest.fail(f"cannot install tritonserver: {error}")


@pytest.fixture(scope="session", name="triton")
def triton_fixture(
    triton_install: triton.TritonInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[triton.TritonServer]:
    """One tritonserver for the session (write_triton_repository's models); tests that stop or
    kill a server start one of their own."""
    root = write_triton_repository(tmp_path_factory.mktemp("triton-repository"))
    with triton.TritonServer(triton_install, root) as server:
        yield server


@pytest.fixture(scope="session", name="mlserver")
def mlserver_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real MLServer (the bench's peer: its own venv, our ONNX runtime module) serving
    REMOTE_CREDIT_RISK as credit_risk on 127.0.0.1."""
    try:
        venv = mlserver.ensure_venv(peer_cache_dir("mlserver"))
    except PeerSetupError as error:
        pytest.fail(f"cannot install MLServer: {error}")
    root = tmp_path_factory.mktemp("mlserver")
    model = ModelSpec.from_onnx(REMOTE_CREDIT_RISK, "credit_risk")
    spec = mlserver.mlserver_spec(venv, root, model, REMOTE_CREDIT_RISK)
    running = RunningServer(
        spec,
        cores=None,
        ready_path="/v2/models/credit_risk/ready",
        log_dir=root,
        ready_timeout_s=MLSERVER_READY_TIMEOUT_S,
    )
    try:
        running.__enter__()
    except PeerError as error:
        pytest.fail(str(error))
    try:
        yield running
    finally:
        running.__exit__(None, None, None)
