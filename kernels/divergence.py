"""Divergence measures between a live and a reference distribution over the same bins.

Every function takes proportions in a segment layout of `gateway.kernels.sketch`: ``live`` and
``reference`` have equal length and each sums to 1 (the caller divides counts by their total).

- `psi` and `js_distance` treat every slot as a category, out-of-range and missing included.
- `binned_ks` and `binned_wasserstein` need a *numeric* segment ``[bins..., below_min,
  above_max, missing]``: they drop ``missing``, renormalize the rest, and place below_min at the
  first edge and above_max at the last. Within a bin the mass is taken as uniform.

They return NaN when a measure is undefined (no non-missing mass on one side); scores map that
to null. Pure functions, compiled ahead of time; they run off the request path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types

__all__ = ["PSI_EPSILON", "binned_ks", "binned_wasserstein", "js_distance", "psi"]

# An empty bin counts as 0.01 % in PSI (the floor Evidently and most PSI write-ups use): without
# it one empty bin makes PSI infinite; with it, one bin's term is at most about p * ln(p / 1e-4).
PSI_EPSILON = 1e-4

_VEC = types.Array(types.float64, 1, "C")
_PAIR = types.float64(_VEC, _VEC)


@njit(types.float64(_VEC, _VEC, types.float64), nogil=True, cache=True)
def psi(live: np.ndarray, reference: np.ndarray, epsilon: float) -> float:
    """Population stability index: sum of (l - r) * ln(l / r), each proportion floored at
    ``epsilon`` (no renormalization after the floor). 0 for equal inputs, never negative."""
    total = 0.0
    for i in range(live.shape[0]):
        lv = max(live[i], epsilon)
        rv = max(reference[i], epsilon)
        total += (lv - rv) * math.log(lv / rv)
    return total


@njit(_PAIR, nogil=True, cache=True)
def js_distance(live: np.ndarray, reference: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2: the square root of the JS divergence, in [0, 1]
    (scipy.spatial.distance.jensenshannon(live, reference, base=2) on normalized inputs)."""
    divergence = 0.0
    for i in range(live.shape[0]):
        p = live[i]
        q = reference[i]
        m = 0.5 * (p + q)
        if p > 0.0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0.0:
            divergence += 0.5 * q * math.log2(q / m)
    # Rounding can leave a hair below 0 for equal inputs.
    return math.sqrt(min(max(divergence, 0.0), 1.0))


@njit(_PAIR, nogil=True, cache=True)
def binned_ks(live: np.ndarray, reference: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic of the binned CDFs: the largest gap between the two CDFs
    at the points the bins resolve (below the first edge, and the end of every bin).

    It never exceeds the KS statistic of the raw rows, and falls short of it by at most the
    largest share one bin holds on either side."""
    k = live.shape[0] - 3
    live_mass = 1.0 - live[k + 2]
    reference_mass = 1.0 - reference[k + 2]
    if live_mass <= 0.0 or reference_mass <= 0.0:
        return math.nan
    live_cdf = live[k] / live_mass
    reference_cdf = reference[k] / reference_mass
    largest = abs(live_cdf - reference_cdf)
    for i in range(k):
        live_cdf += live[i] / live_mass
        reference_cdf += reference[i] / reference_mass
        largest = max(largest, abs(live_cdf - reference_cdf))
    return largest


@njit(types.float64(_VEC, _VEC, _VEC), nogil=True, cache=True)
def binned_wasserstein(live: np.ndarray, reference: np.ndarray, edges: np.ndarray) -> float:
    """Wasserstein-1 distance (in the feature's units) between the two binned distributions:
    the integral of |F_live - F_reference|, with each bin's mass spread evenly over the bin and
    the out-of-range masses on the end edges (so far outliers count as if at the edge)."""
    k = live.shape[0] - 3
    live_mass = 1.0 - live[k + 2]
    reference_mass = 1.0 - reference[k + 2]
    if live_mass <= 0.0 or reference_mass <= 0.0:
        return math.nan
    # CDF gap at the start of the bin; it moves linearly to the gap at the bin's end.
    start = live[k] / live_mass - reference[k] / reference_mass
    total = 0.0
    for i in range(k):
        end = start + live[i] / live_mass - reference[i] / reference_mass
        width = edges[i + 1] - edges[i]
        a = abs(start)
        b = abs(end)
        if start * end >= 0.0:
            total += width * 0.5 * (a + b)
        else:
            # the gap crosses zero inside the bin: two triangles
            total += width * 0.5 * (a * a + b * b) / (a + b)
        start = end
    return total
