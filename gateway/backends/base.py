"""What the serving core needs from a model runtime."""

from __future__ import annotations

from collections.abc import Awaitable, Hashable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

from gateway.protocol.types import ModelSignature

if TYPE_CHECKING:
    from gateway.batching import Timing


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


class Runner(Protocol):
    """Where the request path sends one request's checked feeds: a DynamicBatcher in front of a
    local backend, or a remote backend that batches on its own server.

    `submit` raises BatchError when the model failed on the request, and BackendUnavailable
    (backends/remote.py) when the backend could not be reached in time."""

    def submit(
        self, feeds: Mapping[str, np.ndarray], rows: int, key: Hashable
    ) -> Awaitable[tuple[list[np.ndarray], Timing]]: ...

    async def close(self) -> None: ...
