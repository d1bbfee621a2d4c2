"""Drift scores of merged window counts against a profile's reference, per column and overall.

Per feature or output column (segment layouts: kernels/sketch.py):

- ``psi``: population stability index over every slot, missing and out-of-range included.
- ``js``: Jensen-Shannon distance, base 2, in [0, 1], over the same slots.
- ``wasserstein``: Wasserstein-1 on the bins divided by the reference std (a pure mean shift of
  d standard deviations scores about d), the end bins narrowed as
  `drift_layout.wasserstein_edges` says; null for categorical columns, and 0 for a constant
  reference column (std 0: no bin has width, so any move shows as out-of-range in psi / js).
- ``ks``: Kolmogorov-Smirnov statistic of the binned CDFs; null for categorical columns.

A column is ``alert`` when any measure reaches its alert threshold (``breaches`` names which),
else ``warn`` when psi reaches ``psi_warn``, else ``ok``; with fewer than ``min_rows`` rows it is
``insufficient_data`` (the measures are still reported: with few rows sampling noise alone
reaches the thresholds).

Overall: ``score`` is the mean feature ``js`` weighted by the importances (equal weights when none
are given); ``drifted_share`` the share of features in ``alert``. The overall status is
``alert`` when the score reaches ``js_alert``, the share reaches ``drifted_share_alert`` or an
output is in ``alert``; ``warn`` when any feature or output is not ``ok``; else ``ok`` (or
``insufficient_data`` below ``min_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.kernels.divergence import (
    PSI_EPSILON,
    binned_ks,
    binned_wasserstein,
    js_distance,
    psi,
)
from gateway.monitoring.drift_layout import NUMERIC, Segment

if TYPE_CHECKING:
    from gateway.monitoring.drift import DriftConfig

__all__ = ["ALERT", "INSUFFICIENT", "OK", "WARN", "overall_scores", "segment_scores"]

OK = "ok"
WARN = "warn"
ALERT = "alert"
INSUFFICIENT = "insufficient_data"


def segment_scores(segment: Segment, counts: np.ndarray, config: DriftConfig) -> dict[str, Any]:
    """The measures and status of one segment, from a merged counts vector (JSON-ready)."""
    live_counts = counts[segment.start : segment.start + segment.size]
    rows = int(live_counts.sum())
    k = segment.size - 3
    found: dict[str, Any] = {"name": segment.name, "kind": segment.kind}
    if segment.column is not None:
        found["column"] = segment.column
    measures: dict[str, float | None] = dict.fromkeys(("psi", "js", "wasserstein", "ks"))
    live = live_counts / rows if rows else live_counts.astype(np.float64)
    reference = segment.reference
    if rows:
        measures["psi"] = psi(live, reference, PSI_EPSILON)
        measures["js"] = js_distance(live, reference)
        if segment.kind == NUMERIC:
            measures["ks"] = _defined(binned_ks(live, reference))
            distance = binned_wasserstein(live, reference, segment.wasserstein_edges)
            # std 0 means every edge is one value: no bin has width, so the distance is 0 too.
            measures["wasserstein"] = _defined(distance / segment.std if segment.std else distance)
    found.update(measures)
    found["rows"] = rows
    found["missing"] = float(live[k + 2])
    if segment.kind == NUMERIC:
        found["out_of_range"] = float(live[k] + live[k + 1])
    else:
        found["other"] = float(live[k])
        found["new_level"] = float(live[k + 1])
    limits = {
        "psi": config.psi_alert,
        "js": config.js_alert,
        "wasserstein": config.wasserstein_alert,
        "ks": config.ks_alert,
    }
    breaches = [m for m, limit in limits.items() if (v := measures[m]) is not None and v >= limit]
    found["breaches"] = breaches
    if rows < config.min_rows:
        found["status"] = INSUFFICIENT
    elif breaches:
        found["status"] = ALERT
    elif measures["psi"] is not None and measures["psi"] >= config.psi_warn:
        found["status"] = WARN
    else:
        found["status"] = OK
    return found


def overall_scores(
    features: Sequence[dict[str, Any]],
    outputs: Sequence[dict[str, Any]],
    weights: np.ndarray,
    rows: int,
    config: DriftConfig,
) -> dict[str, Any]:
    """The overall score and status (module docstring) from `segment_scores` results;
    ``weights`` has one entry per feature, in order."""
    js = np.array([np.nan if f["js"] is None else f["js"] for f in features], dtype=np.float64)
    scored = np.isfinite(js)
    weight = float(weights[scored].sum())
    score = float(weights[scored] @ js[scored]) / weight if weight > 0 else None
    drifted = [f["name"] for f in features if f["status"] == ALERT]
    share = len(drifted) / len(features)
    statuses = {s["status"] for s in (*features, *outputs)}
    if rows < config.min_rows:
        status = INSUFFICIENT
    elif (
        (score is not None and score >= config.js_alert)
        or share >= config.drifted_share_alert
        or any(o["status"] == ALERT for o in outputs)
    ):
        status = ALERT
    elif statuses & {WARN, ALERT}:
        status = WARN
    else:
        status = OK
    return {"score": score, "drifted_share": share, "drifted": drifted, "status": status}


def _defined(value: float) -> float | None:
    """NaN (undefined: only missing values on one side) becomes null in the JSON."""
    return None if np.isnan(value) else float(value)
