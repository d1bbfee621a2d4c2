"""Inline drift sketches of one model version: live counts in time windows, scored on demand.

`DriftMonitor.update` takes every executed batch (its inputs and outputs) and adds each row to
per-feature and per-output counts over the version's profile bins or categories
(`gateway.kernels.sketch`, GIL released), in the window of fixed length that the clock is in.
Batches are staged and counted together, one kernel call per tensor for up to `STAGE_ROWS`
rows: a call costs about a microsecond whatever the rows, and every call releases and retakes
the GIL, which with one batch per request (lone requests, or gRPC without a batching wait)
cost the gateway more than the counting. Anything that reads the counts counts what is staged first,
and the stage is counted before the window changes, so reads are exact and rows land in the
window they arrived in.
Windows are aligned to multiples of ``window_s`` since the epoch, so windows of several workers
or replicas with the same profile line up and merge by adding their counts (`export_windows`,
`merge`). `scores` merges the windows asked for and scores them (`drift_scores`) off the
request path.

Live values: NaN is missing; ±inf is out of range (numeric) or a new level (categorical);
neither is an error. An update that cannot be counted (a tensor missing or of another shape)
is dropped whole, so every column of a window counts the same rows; it is counted in `errors`
and logged at most once a minute, and never raises.

Threads: `update` runs in the batcher's worker threads (several at once when a version has
several instances) or on the event loop; `scores`, `export_windows` and `merge` on the control
path. One lock guards the stage, the windows and the counters; the kernel runs under it with the
GIL released, so other threads keep running Python meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gateway.errors import InvalidInput
from gateway.kernels.sketch import X_DTYPES, count_rows
from gateway.monitoring.drift_layout import ROWS, Layout, Source, build_layout
from gateway.monitoring.drift_scores import overall_scores, segment_scores
from gateway.protocol.types import ModelSignature

__all__ = ["DriftConfig", "DriftMonitor", "drift_status"]

logger = logging.getLogger(__name__)

# A failing update is logged at most this often (with the count so far); each one is counted.
ERROR_LOG_INTERVAL_S = 60.0
# Rows staged before they are counted (module docstring): enough that the kernels' call cost
# vanishes per request, few enough that the staged tensors stay small.
STAGE_ROWS = 256


@dataclass(frozen=True)
class DriftConfig:
    """Windows and thresholds of a DriftMonitor (scores: gateway/monitoring/drift_scores.py).

    Threshold defaults follow common practice: PSI 0.1 (warn) and 0.25 (alert), the usual
    rule of thumb; Jensen-Shannon distance and normed Wasserstein 0.1, Evidently's defaults for
    large data; KS statistic 0.1, on the same scale (a KS p-value would flag negligible shifts
    at serving volumes); a data set drifts when half its features do (Evidently's share).
    ``min_rows``: below it a window range is too small to judge (PSI's sampling noise alone is
    about (bins - 1) / rows: 0.012 at 1000 rows with 10 bins). With these defaults, on the
    example's credit data (bench drift), 2 % of unshifted windows of 1000 rows have a feature in
    alert (0.1 % of feature-windows), none of 10 000 rows.
    """

    window_s: float = 60.0
    horizon_windows: int = 60  # windows kept: older ones are dropped
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    js_alert: float = 0.1
    wasserstein_alert: float = 0.1
    ks_alert: float = 0.1
    drifted_share_alert: float = 0.5
    min_rows: int = 1000
    # feature name -> weight in the overall score; empty: equal weights
    importances: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.horizon_windows < 1:
            raise ValueError(f"horizon_windows must be >= 1, got {self.horizon_windows}")
        if self.min_rows < 0:
            raise ValueError(f"min_rows must be >= 0, got {self.min_rows}")
        limits = ("psi_warn", "psi_alert", "js_alert", "wasserstein_alert", "ks_alert")
        for name in (*limits, "drifted_share_alert"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.psi_warn > self.psi_alert:
            raise ValueError(f"psi_warn {self.psi_warn} is above psi_alert {self.psi_alert}")
        if any(not w >= 0 for w in self.importances.values()):
            raise ValueError("importances must be >= 0")


class DriftMonitor:
    """The drift sketches of one model version (module docstring)."""

    def __init__(
        self,
        layout: Layout,
        profile_id: str,
        config: DriftConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Prefer `from_profile`, which checks the profile against the model. ``clock`` gives
        seconds since the epoch (>= 0)."""
        # fixed at construction
        self._layout = layout
        self._profile_id = profile_id
        self._config = config
        self._clock = clock
        self._sources = (layout.feature_source, *layout.output_sources)
        names = [s.name for s in layout.features]
        if unknown := sorted(config.importances.keys() - set(names)):
            raise InvalidInput(f"importances name features the profile lacks: {unknown}")
        if config.importances:
            self._weights = np.array([config.importances.get(n, 0.0) for n in names])
            if not self._weights.sum() > 0:
                raise InvalidInput("importances give every feature weight 0")
        else:
            self._weights = np.ones(len(names))
        # guarded by _lock: shared by the worker threads, the event loop and the control path
        self._lock = threading.Lock()
        self._windows: dict[int, np.ndarray] = {}  # window index -> counts vector
        self._current_index = -1
        self._current = np.zeros(layout.size, dtype=np.int64)
        self._staged: list[list[np.ndarray]] = []  # checked batches not counted yet...
        self._staged_index = -1  # ... all of this window
        self._staged_rows = 0
        self._rows = 0
        self._errors = 0
        self._logged_at = -math.inf

    @classmethod
    def from_profile(
        cls,
        profile: Mapping[str, Any],
        signature: ModelSignature,
        config: DriftConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> DriftMonitor:
        """A monitor of ``profile`` for a model of ``signature``. Raises InvalidInput when the
        profile does not fit the model (drift_layout.build_layout says how it must) or the
        importances name unknown features."""
        layout = build_layout(profile, signature)
        return cls(layout, str(profile.get("id", "")), config or DriftConfig(), clock)

    @property
    def profile_id(self) -> str:
        return self._profile_id

    @property
    def rows(self) -> int:
        """Rows counted so far, by `update` or `merge` (older windows dropped included)."""
        return self._rows

    @property
    def errors(self) -> int:
        """Updates dropped because they could not be counted."""
        return self._errors

    def warm_up(self) -> None:
        """Run every kernel this monitor uses once, on no rows, and score a made-up window:
        call at load, before traffic. The kernels are compiled ahead of time (or read from
        Numba's cache) at import; this makes sure of it and of every first-call cost on the
        way. Counts nothing."""
        counts = np.ones(self._layout.size, dtype=np.int64)
        for source in self._sources:
            dtype = np.float64 if source.convert else source.dtype
            empty = np.zeros((0, source.width), dtype=dtype)
            count_rows(empty, source.plan, source.table, source.slots, counts)
            empty.flags.writeable = False
            count_rows(empty, source.plan, source.table, source.slots, counts)
        self._score(counts, [])

    def update(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray]) -> None:
        """Count one executed batch: ``feeds`` by input name, ``outputs`` in the signature's
        order. Never raises (module docstring)."""
        try:
            tensors = self._checked(feeds, outputs)
            rows = tensors[0].shape[0]
            index = math.floor(self._clock() / self._config.window_s)
            with self._lock:
                if index != self._staged_index:
                    self._count_staged()
                    self._staged_index = index
                self._staged.append(tensors)
                self._staged_rows += rows
                self._rows += rows
                if self._staged_rows >= STAGE_ROWS:
                    self._count_staged()
        except Exception:
            self._failed()

    def _checked(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[np.ndarray]
    ) -> list[np.ndarray]:
        """The batch's counted tensors, in `_sources` order; raises ValueError when one has not
        the shape its source expects, so that a bad batch is dropped before it is staged."""
        x = feeds[self._layout.input_name]
        rows = x.shape[0]
        tensors = [x, *(outputs[s.position] for s in self._layout.output_sources)]
        for tensor, source in zip(tensors, self._sources, strict=True):
            shape = tensor.shape
            if (
                len(shape) != source.ndim
                or shape[0] != rows
                or (source.ndim == 2 and shape[1] != source.width)
            ):
                raise ValueError(
                    f"tensor '{source.tensor}' has shape {list(shape)}, expected {rows} rows"
                    + (f" of {source.width} columns" if source.ndim == 2 else "")
                )
        return tensors

    def _count_staged(self) -> None:
        """Under the lock: count the staged batches into their window, one kernel call per
        tensor."""
        if not self._staged:
            return
        staged, rows = self._staged, self._staged_rows
        self._staged, self._staged_rows = [], 0
        index = self._staged_index
        counts = self._current if index <= self._current_index else self._rotate(index)
        for position, source in enumerate(self._sources):
            parts = [tensors[position] for tensors in staged]
            tensor = _kernel_array(parts[0] if len(parts) == 1 else np.concatenate(parts), source)
            count_rows(tensor, source.plan, source.table, source.slots, counts)
        counts[ROWS] += rows

    def _rotate(self, index: int) -> np.ndarray:
        """Under the lock: make window ``index`` the current one."""
        self._current_index = index
        self._current = self._windows.setdefault(index, np.zeros(self._layout.size, dtype=np.int64))
        self._trim()
        return self._current

    def _trim(self) -> None:
        """Under the lock: drop the windows older than the horizon of the newest one."""
        oldest = max(self._windows) - self._config.horizon_windows + 1
        for index in [i for i in self._windows if i < oldest]:
            del self._windows[index]
        if self._current_index not in self._windows:
            # a merge brought windows so much newer that the current one fell off
            self._current_index = -1

    def _failed(self) -> None:
        """In an except block: count the failure, log it now and then."""
        now = time.monotonic()
        with self._lock:
            self._errors += 1
            errors = self._errors
            log = now - self._logged_at >= ERROR_LOG_INTERVAL_S
            if log:
                self._logged_at = now
        if log:
            logger.warning("drift: a batch could not be counted (%d so far)", errors, exc_info=True)

    def scores(
        self,
        last_windows: int | None = None,
        since_s: float | None = None,
        until_s: float | None = None,
    ) -> dict[str, Any]:
        """Scores of the windows kept that are among the ``last_windows`` (the current one
        included) and overlap [``since_s``, ``until_s``); every window kept when none is given.

        Returns JSON-ready ``{"profile_id", "window": {"from_s", "to_s", "rows", "windows"},
        "features": [...], "outputs": [...], "overall": {...}}`` (drift_scores.py says what each
        holds); from_s and to_s are null when no window was chosen."""
        window_s = self._config.window_s
        with self._lock:
            self._count_staged()
            now = math.floor(self._clock() / window_s)
            chosen = [
                (index, counts)
                for index, counts in self._windows.items()
                if (last_windows is None or index > now - last_windows)
                and (since_s is None or (index + 1) * window_s > since_s)
                and (until_s is None or index * window_s < until_s)
            ]
            merged = np.zeros(self._layout.size, dtype=np.int64)
            for _, counts in chosen:
                merged += counts
        return self._score(merged, [index for index, _ in chosen])

    def _score(self, counts: np.ndarray, indexes: list[int]) -> dict[str, Any]:
        config = self._config
        rows = int(counts[ROWS])
        features = [segment_scores(s, counts, config) for s in self._layout.features]
        outputs = [segment_scores(s, counts, config) for s in self._layout.outputs]
        window_s = config.window_s
        return {
            "profile_id": self._profile_id,
            "window": {
                "from_s": min(indexes) * window_s if indexes else None,
                "to_s": (max(indexes) + 1) * window_s if indexes else None,
                "rows": rows,
                "windows": len(indexes),
            },
            "features": features,
            "outputs": outputs,
            "overall": overall_scores(features, outputs, self._weights, rows, config),
        }

    def export_windows(self) -> list[dict[str, Any]]:
        """The windows kept, oldest first, as JSON-ready dicts that `merge` adds into a monitor
        of the same profile (in this process or another)."""
        window_s = self._config.window_s
        with self._lock:
            self._count_staged()
            windows = sorted((index, counts.copy()) for index, counts in self._windows.items())
        return [
            {
                "profile_id": self._profile_id,
                "window_s": window_s,
                "start_s": index * window_s,
                "rows": int(counts[ROWS]),
                "counts": counts[ROWS + 1 :].tolist(),
            }
            for index, counts in windows
        ]

    def merge(self, windows: Iterable[Mapping[str, Any]]) -> None:
        """Add windows exported by monitors of the same profile and window length: counts of
        the same window add up. Raises ValueError, before adding any, when one does not fit."""
        size = self._layout.size
        window_s = self._config.window_s
        found: list[tuple[int, np.ndarray]] = []
        for window in windows:
            if window.get("profile_id") != self._profile_id:
                raise ValueError(
                    f"a window of profile {window.get('profile_id')!r} cannot merge into "
                    f"profile {self._profile_id!r}"
                )
            if window.get("window_s") != window_s:
                raise ValueError(
                    f"a window of {window.get('window_s')} s cannot merge into {window_s} s"
                )
            counts = np.asarray([window.get("rows"), *window.get("counts", [])])
            if counts.shape != (size,) or counts.dtype.kind != "i" or np.any(counts < 0):
                raise ValueError(f"a window needs rows and {size - 1} counts, all integers >= 0")
            found.append((round(window["start_s"] / window_s), counts.astype(np.int64)))
        if not found:
            return
        with self._lock:
            for index, counts in found:
                self._windows.setdefault(index, np.zeros(size, dtype=np.int64))
                self._windows[index] += counts
                self._rows += int(counts[ROWS])
            self._trim()


def drift_status(scores: Mapping[str, Any]) -> str:
    """The overall status of `DriftMonitor.scores`: "ok", "warn", "alert" or
    "insufficient_data" (too few rows to judge: a canary guard should wait, not pass)."""
    return str(scores["overall"]["status"])


def _kernel_array(tensor: np.ndarray, source: Source) -> np.ndarray:
    """``tensor`` (of the shape ``source`` expects) as the kernel takes it: 2-D, C-contiguous,
    a compiled dtype. Staged batches of different dtypes concatenate to float64, which is also
    how the kernel compares values."""
    if source.convert or tensor.dtype not in X_DTYPES:
        tensor = tensor.astype(np.float64)
    if tensor.ndim == 1:
        tensor = tensor.reshape(-1, 1)
    return np.ascontiguousarray(tensor)
