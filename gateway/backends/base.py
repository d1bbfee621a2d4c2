"""What the serving core needs from a model runtime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from gateway.protocol.types import ModelSignature


class Backend(Protocol):
    """One loaded model version.

    `run` is called from worker threads, possibly from several at once, and must be thread-safe;
    it blocks until the outputs are ready and returns them in `signature.outputs` order.
    """

    signature: ModelSignature

    def adapt(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Convert validated inputs to what `run` takes; runs on the event loop, before
        queueing, so a bad input fails alone rather than its whole batch (raises InvalidInput)."""
        ...

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None: ...
