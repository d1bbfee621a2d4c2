"""Per-version circuit breaker, in the spirit of Envoy's outlier detection.

A version is ejected (OPEN) after `consecutive_failures` failures in a row, or when failures reach
`error_rate` of the outcomes in the last `window_s` seconds with at least `min_requests` of them.
After the ejection one request is let through as a probe (HALF_OPEN): success closes the breaker,
failure ejects again for twice as long, up to `max_ejection_s`.

Pure logic on an injected clock; owned by the event loop, so no locks. `allow()` and the
`record_*()` calls sit on every request's path: in the closed state they allocate no objects and
cost O(1). The window is therefore a ring of ten counting buckets with running totals, not a list
of timestamps; an outcome counts for between 0.9 and 1.0 times `window_s`, depending on where in
its bucket it fell.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import InvalidInput

# The error-rate window is a ring of this many buckets, each window_s / _BUCKETS wide.
_BUCKETS = 10


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When to eject a version and for how long; validated on construction (InvalidInput)."""

    consecutive_failures: int = 5  # open after this many failures in a row
    error_rate: float = 0.5  # or when the failure share over the window reaches this...
    window_s: float = 10.0
    min_requests: int = 20  # ...with at least this many outcomes in the window
    base_ejection_s: float = 30.0  # the first ejection; each re-open before recovery doubles it
    max_ejection_s: float = 300.0

    def __post_init__(self) -> None:
        if self.consecutive_failures < 1:
            raise InvalidInput(
                f"breaker: consecutive_failures must be >= 1, got {self.consecutive_failures}"
            )
        if not 0.0 < self.error_rate <= 1.0:
            raise InvalidInput(f"breaker: error_rate must be in (0, 1], got {self.error_rate}")
        if not 0.0 < self.window_s < math.inf:
            raise InvalidInput(
                f"breaker: window_s must be a positive duration, got {self.window_s}"
            )
        if self.min_requests < 1:
            raise InvalidInput(f"breaker: min_requests must be >= 1, got {self.min_requests}")
        if not 0.0 < self.base_ejection_s < math.inf:
            raise InvalidInput(
                f"breaker: base_ejection_s must be a positive duration, got {self.base_ejection_s}"
            )
        if not self.base_ejection_s <= self.max_ejection_s < math.inf:
            raise InvalidInput(
                f"breaker: max_ejection_s must be finite and >= base_ejection_s "
                f"({self.base_ejection_s}), got {self.max_ejection_s}"
            )


class BreakerState(enum.Enum):
    CLOSED = "closed"  # serving
    OPEN = "open"  # ejected: no requests until the ejection has elapsed
    HALF_OPEN = "half_open"  # one probe request is outstanding


# Module-level aliases: the hot path compares identities without an attribute lookup on the class.
_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class CircuitBreaker:
    """One version's breaker.

    Contract: every request that `allow()` admitted ends in exactly one `record_success()` or
    `record_failure()`; a timeout or a cancelled request is a failure. Hazards that follow:

    - A HALF_OPEN breaker waits for its probe's outcome; if the caller never records it, the version
      stays ejected until `record_probe()` (a health check) settles it.
    - Outcomes recorded while OPEN (requests admitted before the breaker opened) are ignored. In
      HALF_OPEN the next outcome recorded is taken as the probe's, whichever request it came from.

    Recovery: the ejection doubles when the breaker re-opens less than one ejection's length
    (the last `ejection_s`) after it closed; a version that served that long without tripping has
    recovered, and its next ejection starts again at `base_ejection_s`. Resetting on every close
    would give a flapping version no backoff; never resetting would punish an old incident forever.
    """

    __slots__ = (
        "_bucket_end",
        "_clock",
        "_closed_at",
        "_config",
        "_consecutive",
        "_ejection_s",
        "_ejections",
        "_failures",
        "_open_until",
        "_requests",
        "_slot",
        "_state",
        "_tick",
        "_tick_width",
        "_window_failures",
        "_window_requests",
    )

    def __init__(
        self, config: BreakerConfig = BreakerConfig(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        # Configuration, fixed for the breaker's life.
        self._config = config
        self._clock = clock
        self._tick_width = config.window_s / _BUCKETS
        # State machine.
        self._state = _CLOSED
        self._consecutive = 0
        self._ejections = 0
        self._ejection_s = config.base_ejection_s  # the current (or last) ejection's length
        self._open_until = 0.0
        self._closed_at = -math.inf  # when a probe last closed the breaker; never so far
        # Error-rate window: per-bucket counts in a ring and their running totals. `_tick` is the
        # absolute bucket number (clock // width) of the newest bucket, `_slot` its place in the
        # ring, `_bucket_end` the time it ends (a clock that steps back keeps writing into it).
        self._requests = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self._window_requests = 0
        self._window_failures = 0
        self._tick = int(clock() // self._tick_width)
        self._slot = self._tick % _BUCKETS
        self._bucket_end = (self._tick + 1) * self._tick_width

    @property
    def state(self) -> BreakerState:
        """The stored state: an OPEN breaker whose ejection elapsed stays OPEN until `allow()`."""
        return self._state

    def allow(self) -> bool:
        """May a request go to this version? In HALF_OPEN, True exactly once (the probe)."""
        state = self._state
        if state is _CLOSED:
            return True
        if state is _OPEN and self._clock() >= self._open_until:
            self._state = _HALF_OPEN
            return True
        return False

    def record_success(self) -> None:
        """An admitted request succeeded."""
        state = self._state
        if state is _CLOSED:
            self._consecutive = 0
            now = self._clock()
            if now >= self._bucket_end:
                self._advance(now)
            self._requests[self._slot] += 1
            self._window_requests += 1
        elif state is _HALF_OPEN:
            self._close(self._clock())

    def record_failure(self) -> None:
        """An admitted request failed, timed out or was cancelled."""
        state = self._state
        if state is _CLOSED:
            now = self._clock()
            self._consecutive += 1
            if now >= self._bucket_end:
                self._advance(now)
            slot = self._slot
            self._requests[slot] += 1
            self._failures[slot] += 1
            self._window_requests += 1
            self._window_failures += 1
            # Evaluated on failures only, so a breaker never opens on a success: at worst the rate
            # trips one failure later than a check on every outcome would.
            config = self._config
            if self._consecutive >= config.consecutive_failures or (
                self._window_requests >= config.min_requests
                and self._window_failures >= config.error_rate * self._window_requests
            ):
                self._open(now, self._next_ejection_s(now))
        elif state is _HALF_OPEN:
            now = self._clock()
            self._open(now, self._doubled_ejection_s())

    def record_probe(self, healthy: bool) -> None:
        """Settle the probe from a background health check (remote backends).

        Acts only while the breaker waits for a probe: OPEN with the ejection elapsed, or
        HALF_OPEN. Then healthy closes it like a successful probe request, and unhealthy ejects
        again with the doubled ejection like a failed one. Otherwise it is ignored: while CLOSED
        real requests are the better evidence, and an ejection in progress runs to its end, since
        its growing length is what protects a version that flaps.
        """
        state = self._state
        now = self._clock()
        if state is _HALF_OPEN or (state is _OPEN and now >= self._open_until):
            if healthy:
                self._close(now)
            else:
                self._open(now, self._doubled_ejection_s())

    def snapshot(self) -> dict[str, object]:
        """JSON-able state for the admin API; `ejection_s` is the ejection in force while OPEN or
        HALF_OPEN, and the one the next open would get while CLOSED."""
        now = self._clock()
        if now >= self._bucket_end:
            self._advance(now)
        state = self._state
        return {
            "state": state.value,
            "consecutive_failures": self._consecutive,
            "window_requests": self._window_requests,
            "window_failures": self._window_failures,
            "ejections": self._ejections,
            "open_until_s": max(0.0, self._open_until - now) if state is _OPEN else 0.0,
            "ejection_s": self._next_ejection_s(now) if state is _CLOSED else self._ejection_s,
        }

    def _advance(self, now: float) -> None:
        """Move the window to `now`'s bucket, emptying the buckets that fell out of it. Called
        only once `now` has passed `_bucket_end`, so the common path pays one comparison."""
        tick = int(now // self._tick_width)
        if tick > self._tick:
            requests, failures = self._requests, self._failures
            for passed in range(1, min(tick - self._tick, _BUCKETS) + 1):
                slot = (self._tick + passed) % _BUCKETS
                self._window_requests -= requests[slot]
                self._window_failures -= failures[slot]
                requests[slot] = 0
                failures[slot] = 0
            self._tick = tick
            self._slot = tick % _BUCKETS
        self._bucket_end = (self._tick + 1) * self._tick_width

    def _next_ejection_s(self, now: float) -> float:
        """The length of an ejection starting now from CLOSED (see the class doc on recovery)."""
        if now - self._closed_at < self._ejection_s:
            return self._doubled_ejection_s()
        return self._config.base_ejection_s

    def _doubled_ejection_s(self) -> float:
        return min(2.0 * self._ejection_s, self._config.max_ejection_s)

    def _open(self, now: float, ejection_s: float) -> None:
        self._state = _OPEN
        self._ejections += 1
        self._ejection_s = ejection_s
        self._open_until = now + ejection_s

    def _close(self, now: float) -> None:
        # A fresh start: outcomes from before the ejection must not trip the breaker again.
        self._state = _CLOSED
        self._closed_at = now
        self._consecutive = 0
        self._requests[:] = [0] * _BUCKETS
        self._failures[:] = [0] * _BUCKETS
        self._window_requests = 0
        self._window_failures = 0
