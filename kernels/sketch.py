"""The drift sketch update: count a batch of rows into per-feature segments of a counts vector.

A *plan* (int64 matrix, one row per counted column, fields `COLUMN` ... `SEGMENT_LEN`) says which
column of ``x`` each segment counts, how, and where its counts live. Segment layouts:

    numeric      [bin_0, ..., bin_{k-1}, below_min, above_max, missing]      (k + 3 counts)
    categorical  [category_0, ..., category_{K-1}, other, new_level, missing] (K + 3 counts)

A numeric segment's ``table`` slice holds its ``k + 1`` edges and follows the binning rule of
`gateway.monitoring.profile` (`bin_counts` is the reference): NaN is missing, below the first
edge is below_min, above the last is above_max, otherwise bin
``clip(searchsorted(edges, v, side="right") - 1, 0, k - 1)``. A categorical segment's ``table``
slice holds every known value in ascending order and the same slice of ``slots`` the slot each
one counts in (a top category's own, or ``other``); a value equal to none of them (±inf
included) is a new level, NaN is missing. Values are compared as float64, as `bin_counts` does.

Hazard: the kernel does not check bounds (Numba does not); the caller guarantees that every
plan column is < ``x.shape[1]``, every table slice is inside ``table`` and ``slots``, and every
segment is inside ``counts``.
"""

from __future__ import annotations

import numpy as np
from numba import from_dtype, njit, types

__all__ = [
    "CATEGORICAL",
    "COLUMN",
    "COUNT_START",
    "KIND",
    "NUMERIC",
    "PLAN_FIELDS",
    "SEGMENT_LEN",
    "TABLE_LEN",
    "TABLE_START",
    "X_DTYPES",
    "count_rows",
]

# kinds of segment
NUMERIC = 0
CATEGORICAL = 1
# fields of a plan row
COLUMN = 0
KIND = 1
TABLE_START = 2
TABLE_LEN = 3
COUNT_START = 4
SEGMENT_LEN = 5
PLAN_FIELDS = 6

# Input dtypes compiled ahead of time; anything else is converted to float64 by the caller.
X_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def _signatures() -> list[types.Type]:
    plan = types.Array(types.int64, 2, "C")
    table = types.Array(types.float64, 1, "C")
    slots = types.Array(types.int64, 1, "C")
    counts = types.Array(types.int64, 1, "C")
    found = []
    for dtype in X_DTYPES:
        # Feeds decoded with np.frombuffer are read-only, and Numba types those apart.
        for readonly in (False, True):
            x = types.Array(from_dtype(dtype), 2, "C", readonly=readonly)
            found.append(types.void(x, plan, table, slots, counts))
    return found


@njit(_signatures(), nogil=True, cache=True)
def count_rows(
    x: np.ndarray, plan: np.ndarray, table: np.ndarray, slots: np.ndarray, counts: np.ndarray
) -> None:
    """Add every row of ``x`` (rows, columns) to ``counts`` as ``plan`` says (module docstring)."""
    segments = plan.shape[0]
    for r in range(x.shape[0]):
        for s in range(segments):
            v = np.float64(x[r, plan[s, COLUMN]])
            start = plan[s, TABLE_START]
            size = plan[s, TABLE_LEN]
            m = plan[s, SEGMENT_LEN]
            if v != v:
                slot = m - 1
            elif plan[s, KIND] == NUMERIC:
                k = size - 1
                if v < table[start]:
                    slot = k
                elif v > table[start + k]:
                    slot = k + 1
                else:
                    # searchsorted(edges, v, "right") - 1 clipped to k - 1 is the number of inner
                    # edges <= v. Counted without branches: 3x a binary search at 10 bins, on
                    # par at 100, as unpredictable branches cost more than the extra compares.
                    slot = 0
                    for i in range(1, k):
                        slot += table[start + i] <= v
            else:
                # exact match among the sorted known values, else a new level
                lo = 0
                hi = size
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if table[start + mid] < v:
                        lo = mid + 1
                    else:
                        hi = mid
                slot = slots[start + lo] if lo < size and table[start + lo] == v else m - 2
            counts[plan[s, COUNT_START] + slot] += 1
