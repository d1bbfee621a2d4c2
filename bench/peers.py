"""Starting and stopping the V2 servers under test, pinned to the server core.

A peer is a command line plus the ports it will listen on. `RunningServer` starts it in its own
process group with its output in a log file, waits (bounded) until `/v2/health/ready` and the
model's `/ready` say yes, and on exit stops exactly the process group it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from .clients import Endpoint
from .procs import free_port, pin_command

READY_POLL_S = 0.2
STOP_GRACE_S = 10.0
MODELGATE_NOTE = "model config from the repository applies (dynamic batching included)"


class PeerError(RuntimeError):
    """A server did not start or did not become ready; `log_tail` is the end of its output."""

    def __init__(self, name: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{name}: {reason}\n--- last lines of its log ---\n{log_tail}")
        self.name = name
        self.reason = reason
        self.log_tail = log_tail


@dataclass(frozen=True)
class PeerSpec:
    """How to start one server; `notes` describe its settings in reports. Which paths it serves
    is not declared: each is checked with a real request once it is up. `cleanup` runs after
    its process group has gone, however it went (what a SIGKILL leaves behind)."""

    name: str
    command: list[str]
    endpoint: Endpoint
    env: dict[str, str] | None = None
    cwd: Path | None = None
    notes: list[str] = field(default_factory=list)
    cleanup: Callable[[], None] | None = None


def modelgate_spec(
    repository: Path,
    *,
    host: str = "127.0.0.1",
    name: str = "modelgate",
    config: Path | None = None,
    journal: Path | None = None,
    notes: Sequence[str] = (MODELGATE_NOTE,),
) -> PeerSpec:
    """`modelgate serve` on free ports; the console script next to this Python if there is one
    (the same venv), else `python -m gateway`. `config` is a server TOML (`--config`), `journal`
    the journal folder (`--journal`); without them the server's defaults apply (journal on, in
    `./journal`). `name` names the log file too, so servers run side by side need distinct ones."""
    http_port, grpc_port = free_port(host), free_port(host)
    script = Path(sys.executable).with_name("modelgate")
    found = str(script) if script.exists() else shutil.which("modelgate")
    base = [found] if found else [sys.executable, "-m", "gateway"]
    command = [
        *base,
        "serve",
        "--repository",
        str(repository),
        "--host",
        host,
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
    ]
    if config is not None:
        command += ["--config", str(config)]
    if journal is not None:
        command += ["--journal", str(journal)]
    return PeerSpec(
        name=name,
        command=command,
        endpoint=Endpoint.local(host, http_port, grpc_port),
        notes=list(notes),
    )


def _get(url: str, timeout_s: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, OSError):
        return 0


class RunningServer:
    """Context manager around one started server. Raises PeerError from `__enter__` if the
    process exits early or is not ready within `ready_timeout_s`. Leaving it stops the server
    (SIGTERM, SIGKILL after STOP_GRACE_S); `kill()` stops it as a crash would."""

    def __init__(
        self,
        spec: PeerSpec,
        *,
        cores: Sequence[int] | None,
        ready_path: str,
        log_dir: Path,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.spec = spec
        self._cores = list(cores) if cores else None
        self._ready_path = ready_path
        self._ready_timeout_s = ready_timeout_s
        self.log_file = log_dir / f"{spec.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        env = {**os.environ, **(self.spec.env or {})}
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            # A new session makes the server its own process group, so stopping it also stops
            # any workers it forks, and nothing else.
            self._proc = subprocess.Popen(
                pin_command(self.spec.command, self._cores),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.spec.cwd,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self) -> None:
        if self._proc is None:
            raise RuntimeError("server not started")
        base = self.spec.endpoint.http_base
        deadline = time.monotonic() + self._ready_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PeerError(
                    self.spec.name, f"exited with {self._proc.returncode}", self.log_tail()
                )
            if (
                _get(base + "/v2/health/ready", 1.0) == 200
                and _get(base + self._ready_path, 1.0) == 200
            ):
                return
            time.sleep(READY_POLL_S)
        raise PeerError(
            self.spec.name, f"not ready after {self._ready_timeout_s:g} s", self.log_tail()
        )

    def kill(self) -> None:
        """SIGKILL to the whole process group at once, as a crashed host would look."""
        self._stop(signal.SIGKILL)

    def _stop(self, signum: int = signal.SIGTERM) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                os.killpg(proc.pid, signum)
                proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        finally:
            if self.spec.cleanup is not None:
                self.spec.cleanup()
