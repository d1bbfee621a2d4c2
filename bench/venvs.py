"""Private venvs for the peers whose pins clash with ours (MLServer, Triton's wheel).

Each peer's venv is made from the interpreter behind ours (same Python version: Triton's Python
backend stub embeds that version's libpython) and lives under a cache folder, reused while its
marker file lists the same interpreter version and pip steps. A half-finished install has no
marker, so the next call rebuilds it from scratch.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT_S = 900.0
MARKER = ".modelgate-bench-requirements"
logger = logging.getLogger(__name__)


class PeerSetupError(RuntimeError):
    """A peer's venv could not be created or installed, or lacks what the peer needs."""


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelgate-bench"


@dataclass(frozen=True)
class VenvRecipe:
    """How to build one peer's venv: `folder` under the cache dir, the `pip install` argument
    lists run in order, and a file (relative to the venv) whose presence shows the install."""

    folder: str
    installs: tuple[tuple[str, ...], ...]
    installed_file: str


def ensure_venv(cache_dir: Path, recipe: VenvRecipe) -> Path:
    """Return the venv of `recipe` under `cache_dir`, creating it if needed.

    It is made from the interpreter behind ours (`sys._base_executable`): a venv made from a
    venv's python would work too, but would point at our venv's (mutable) interpreter link.
    Raises PeerSetupError with the end of pip's output when a step fails or times out.
    """
    venv = (cache_dir / recipe.folder).absolute()  # servers started from it may chdir
    marker = venv / MARKER
    wanted = "\n".join(
        [f"python {platform.python_version()}", *(" ".join(step) for step in recipe.installs)]
    )
    if marker.exists() and marker.read_text() == wanted and (venv / recipe.installed_file).exists():
        return venv
    if venv.exists():
        shutil.rmtree(venv)
    cache_dir.mkdir(parents=True, exist_ok=True)
    base_python = getattr(sys, "_base_executable", sys.executable)
    steps: list[Sequence[str]] = [[base_python, "-m", "venv", str(venv)]]
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    steps += [[*pip, *install] for install in recipe.installs]
    for step in steps:
        logger.info("%s: %s", recipe.folder, " ".join(step))
        try:
            done = subprocess.run(
                step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise PeerSetupError(f"timed out after {INSTALL_TIMEOUT_S:g} s: {step}") from err
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-3000:]
            raise PeerSetupError(f"{' '.join(step)} exited {done.returncode}:\n{tail}")
    if not (venv / recipe.installed_file).exists():
        raise PeerSetupError(f"{venv}: installed, yet {recipe.installed_file} is missing")
    marker.write_text(wanted)
    return venv
