"""What the measuring commands (`compare`, `journal`, `routing`, `monitoring`) share: starting a
server and checking its paths, running one point, and the list of what could not be measured. A
failure is recorded and the run goes on, so one broken server or point does not void the others.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import peers
from .clients import check_path
from .measure import ClientMode, Target, measure_point
from .payloads import RequestSet
from .stats import RunResult

# What `skipped` entries say was not measured:
SERVER = "server"  # did not start, or could not be set up
PATH = "path"  # the server does not serve it: expected (MLServer has no binary extension)
POINT = "point"  # a run failed


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The knobs every measuring command has (the CLI's `_run_options`); each command's config
    adds its own."""

    duration_s: float = 5.0
    repeats: int = 3
    warmup_s: float = 1.0
    client: ClientMode = "auto"
    pin: bool = True
    server_cores: tuple[int, ...] | None = None  # None: the first allowed core
    client_cores: tuple[int, ...] | None = None  # None: the second allowed core
    seed: int = 0
    distinct_requests: int = 16
    request_timeout_s: float = 10.0
    ready_timeout_s: float = 120.0
    host: str = "127.0.0.1"


def run_meta(
    settings: RunSettings, server_cores: Sequence[int] | None, client_cores: Sequence[int] | None
) -> dict[str, Any]:
    """What every report records of the machine and the run's settings."""
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "server_cores": list(server_cores) if server_cores else None,
        "client_cores": list(client_cores) if client_cores else None,
        "duration_s": settings.duration_s,
        "repeats": settings.repeats,
        "warmup_s": settings.warmup_s,
        "seed": settings.seed,
        "client_mode": settings.client,
    }


def broke(skipped: Iterable[Mapping[str, str]]) -> bool:
    """Whether anything but an unserved path was skipped: a failed run."""
    return any(skip.get("kind") != PATH for skip in skipped)


class Recorder:
    """One command's measuring, owned by its thread. Points run with the settings' load
    generator and request timeout, pinned to `client_cores` (the cores chosen); `say` gets
    progress and every skip."""

    def __init__(
        self,
        settings: RunSettings,
        client_cores: Sequence[int] | None,
        say: Callable[[str], None],
    ) -> None:
        self._mode = settings.client
        self._client_cores = list(client_cores) if client_cores else None
        self._timeout_s = settings.request_timeout_s
        self.say = say
        self.skipped: list[dict[str, str]] = []

    def skip(self, kind: str, server: str, path: str, reason: str) -> None:
        self.skipped.append({"kind": kind, "server": server, "path": path, "reason": reason})
        self.say(f"skip {server} {path}: {reason}")

    def start(
        self,
        stack: contextlib.ExitStack,
        spec: peers.PeerSpec,
        *,
        cores: Sequence[int] | None,
        ready_path: str,
        log_dir: Path,
        ready_timeout_s: float,
    ) -> peers.RunningServer | None:
        """Start `spec` (stopped when `stack` closes); None, recorded, if it does not come up."""
        self.say(f"starting {spec.name}: {' '.join(spec.command)}")
        try:
            return stack.enter_context(
                peers.RunningServer(
                    spec,
                    cores=cores,
                    ready_path=ready_path,
                    log_dir=log_dir,
                    ready_timeout_s=ready_timeout_s,
                )
            )
        except (peers.PeerError, OSError) as err:
            self.skip(SERVER, spec.name, "*", str(err))
            return None

    def targets(
        self, server: str, spec: peers.PeerSpec, infer_path: str, requests: Mapping[str, RequestSet]
    ) -> dict[str, Target]:
        """The paths of `requests` that one real request shows `server` serves; the others are
        recorded as unserved."""
        found = {}
        for path, request_set in requests.items():
            check = check_path(request_set, spec.endpoint, infer_path, self._timeout_s)
            if check.ok:
                found[path] = Target(request_set, spec.endpoint, infer_path, check.response_bytes)
            else:
                self.skip(PATH, server, path, check.detail)
        return found

    def measure(
        self, server: str, path: str, target: Target, c: int, seconds: float, tag: str
    ) -> RunResult | None:
        """One point at `c` in flight for `seconds`; None, recorded, if the run broke."""
        result, error = measure_point(
            target,
            concurrency=c,
            duration_s=seconds,
            mode=self._mode,
            client_cores=self._client_cores,
            timeout_s=self._timeout_s,
            label=f"{tag} {server} {path} c={c}",
        )
        if error:
            self.skip(POINT, server, path, f"{tag} c={c}: {error}")
        return result
