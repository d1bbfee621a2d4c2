"""One JSON line per request on the `modelgate.access` logger, the same shape for both
transports. Off by default (`access_log = true` turns it on)."""

from __future__ import annotations

import logging
import time

import orjson

logger = logging.getLogger("modelgate.access")


def record(protocol: str, peer: str | None, method: str, status: int | str, started: float) -> None:
    """Log one finished request; `started` is its time.perf_counter() at arrival."""
    entry = {
        "protocol": protocol,
        "peer": peer,
        "method": method,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 3),
    }
    logger.info("%s", orjson.dumps(entry).decode())
