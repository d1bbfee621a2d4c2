"""Training-data profiles: the reference distribution that drift scores compare live traffic to.

A profile is a JSON document, format ``modelgate.profile/1``::

    {
      "format": "modelgate.profile/1",
      "id": "<first 16 hex chars of SHA-256 over the canonical JSON of all other top-level keys>",
      "created_from": {"rows": N, "source": "<free text: a file path, a data set name>"},
      "input": "features",
      "features": [
        {"name": "income", "index": 0, "kind": "numeric",
         "edges": [bins + 1 ascending floats],
         "proportions": {"bins": [bins floats], "below_min": f, "above_max": f, "missing": f},
         "min": f, "max": f, "mean": f, "std": f, "missing_rate": f},
        {"name": "region", "index": 1, "kind": "categorical",
         "categories": ["3", "1", ...], "other_values": ["7", "12", ...],
         "proportions": {"categories": [f, ...], "other": f, "new_level": 0.0, "missing": f},
         "missing_rate": f},
        ...
      ],
      "outputs": [
        {"name": "label", "kind": "categorical", "categories": ["0", "1"], "proportions": [f, f]},
        {"name": "probabilities", "kind": "numeric", "column": 1, "edges": [...],
         "proportions": {...}, "min": f, "max": f, "mean": f, "std": f, "missing_rate": f}
      ]
    }

``input`` names the model input whose columns the features are; it is optional (profiles made
before it existed have none) and then means the model's only input. ``index`` is the feature's
column in that tensor (the order of the mapping given to `build_profile`). ``column`` picks one
column of a 2-D output (e.g. P(class 1)); it is absent for 1-D outputs.

Categorical features hold category codes in a numeric tensor (what an ONNX model takes).
``categories`` are the ``top_k`` most frequent values (ties: smaller value first), in that order;
``other_values`` are the other values seen at profiling time, ascending, whose rows count as
``other``; ``new_level`` (0 in the reference) counts live values in neither list (±inf too,
unless profiled); NaN is missing. Values are written as labels (`category_label`): an integral
value as a decimal integer ("3" for 3.0, "0" for -0.0), any other as the shortest decimal that
reads back as the same value in its dtype ("0.1" for FP32 0.1), ±inf as "inf" / "-inf". A live
value belongs to the category whose label parses, in the input tensor's dtype, to a value equal
to it (`category_value`) — the same as comparing labels.

Canonical JSON is ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
allow_nan=False)``; every number in a profile is finite.

Binning rule (shared with the streaming drift kernel; `bin_counts` is its NumPy reference)::

    NaN                 -> missing
    value < edges[0]    -> below_min
    value > edges[-1]   -> above_max
    otherwise           -> bin clip(searchsorted(edges, value, side="right") - 1, 0, bins - 1)

so bins are ``[edges[i], edges[i+1])`` except the last, which is closed and holds the maximum.
±inf follow the same rule (below_min / above_max). The reference proportions are the training
rows' counts under this rule divided by the row count, so the ``bins + 3`` numbers sum to 1.
``min``, ``max``, ``mean`` and ``std`` (population, ddof=0) are over the finite values;
``missing_rate`` repeats ``proportions.missing``.

Edges (`bin_edges`): the ``k/bins`` quantiles (``inverted_cdf``, so every edge is a data value) of
the finite values; ``edges[0]`` is the minimum and ``edges[-1]`` the maximum. Quantiles that tie
(discrete or zero-inflated features) are merged, and the edges are topped up to ``bins + 1`` by
splitting the bin with the most rows at the value that halves it best, so a feature with few
distinct values gets one bin per value; bins without two distinct values are then split at the
middle of the widest gap. Only when nothing can be split is the last edge repeated: a constant
column ``c`` gets ``edges = [c] * (bins + 1)`` and all its rows in the last bin.

Hazard: profile the data in the dtype the model receives (the FP32 cast of the training data), or
a training row equal to the maximum can land in ``above_max`` once it travels as FP32.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "FORMAT",
    "MAX_CATEGORY_VALUES",
    "OutputColumn",
    "Profile",
    "bin_counts",
    "bin_edges",
    "build_profile",
    "category_label",
    "category_value",
    "load_profile",
    "profile_id",
    "save_profile",
]

FORMAT = "modelgate.profile/1"
_ID_HEX_CHARS = 16
# More distinct values than this is an identifier or a measurement, not a category: refused.
MAX_CATEGORY_VALUES = 10_000

Profile = dict[str, Any]
"""A profile document as described in the module docstring (plain JSON types only)."""


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """One model output to profile alongside the features.

    ``values`` holds one entry per training row: a 1-D array, or a 2-D array with ``column``
    naming the column to profile. ``kind="categorical"`` needs integer, boolean or string values;
    ``categories`` fixes their order and defaults to the sorted distinct values.
    """

    name: str
    values: npt.ArrayLike
    kind: str = "numeric"
    column: int | None = None
    categories: tuple[str, ...] | None = None


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Count ``values`` per the module's binning rule.

    Requires ``edges`` 1-D, non-decreasing, with at least two entries. Returns an int64 array of
    length ``len(edges) + 2`` laid out as ``[bin_0, ..., bin_{k-1}, below_min, above_max,
    missing]`` with ``k = len(edges) - 1``. This is the reference the streaming kernel is tested
    against, so it favours clarity over speed.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"edges must be 1-D with at least 2 entries, got shape {e.shape}")
    k = e.size - 1
    missing = np.isnan(v)
    below = v < e[0]
    above = v > e[-1]
    inside = v[~(missing | below | above)]
    idx = np.clip(np.searchsorted(e, inside, side="right") - 1, 0, k - 1)
    counts = np.bincount(idx, minlength=k).astype(np.int64)
    tail = np.array([below.sum(), above.sum(), missing.sum()], dtype=np.int64)
    return np.concatenate([counts, tail])


def bin_edges(values: npt.ArrayLike, bins: int = 10) -> npt.NDArray[np.float64]:
    """Return ``bins + 1`` non-decreasing bin edges for ``values`` (rule: module docstring).

    NaN and ±inf are ignored. Raises ValueError when ``bins < 1`` or no finite value is left.
    The edges are strictly ascending unless the finite values cannot be split that finely
    (a constant column, or a range only a few floats wide), where the last edge repeats.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    v = np.asarray(values, dtype=np.float64).ravel()
    finite = np.sort(v[np.isfinite(v)])
    if finite.size == 0:
        raise ValueError("no finite values to place bin edges on")
    quantiles = np.quantile(finite, np.linspace(0.0, 1.0, bins + 1), method="inverted_cdf")
    edges: list[float] = np.unique(quantiles).tolist()
    while len(edges) < bins + 1:
        split = _heaviest_split(finite, edges)
        if split is None:
            split = _widest_gap_split(edges)
        if split is None:
            break
        edges.insert(split[0] + 1, split[1])
    edges.extend([edges[-1]] * (bins + 1 - len(edges)))
    return np.asarray(edges, dtype=np.float64)


def _heaviest_split(
    sorted_values: npt.NDArray[np.float64], edges: list[float]
) -> tuple[int, float] | None:
    """Pick the bin with the most rows that holds two distinct values, and where to cut it.

    Returns ``(bin index, cut)`` with ``edges[i] < cut < edges[i + 1]`` and rows on both sides of
    the cut, the cut chosen to balance them; None when no bin qualifies.
    """
    best: tuple[int, int, float] | None = None  # (rows, bin, cut)
    last = len(edges) - 2
    for i in range(last + 1):
        lo, hi = edges[i], edges[i + 1]
        start = int(np.searchsorted(sorted_values, lo, side="left"))
        stop = int(np.searchsorted(sorted_values, hi, side="right" if i == last else "left"))
        seg = sorted_values[start:stop]
        if seg.size < 2 or (best is not None and seg.size <= best[0]):
            continue
        # On sorted data a new distinct value starts where the value changes; its position is
        # the number of rows a cut at that value leaves on the left.
        starts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
        if starts.size == 0:
            continue
        j = int(np.argmin(np.abs(starts - seg.size / 2)))
        cut = float(seg[starts[j]])
        if cut >= hi:
            # Only the closed last bin can hold hi itself; cut below it so the edges stay strict.
            cut = 0.5 * (float(seg[starts[j] - 1]) + hi)
            if not lo < cut < hi:
                continue
        best = (int(seg.size), i, cut)
    return None if best is None else (best[1], best[2])


def _widest_gap_split(edges: list[float]) -> tuple[int, float] | None:
    """Cut the widest bin at its midpoint; None when no bin has a float strictly inside it."""
    if len(edges) < 2:
        return None
    widths = np.diff(np.asarray(edges, dtype=np.float64))
    for i in np.argsort(-widths, kind="stable"):
        lo, hi = edges[int(i)], edges[int(i) + 1]
        mid = lo + 0.5 * (hi - lo)
        if lo < mid < hi:
            return int(i), float(mid)
    return None


def _numeric_entry(values: npt.NDArray[Any], bins: int, what: str) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        raise ValueError(f"{what}: no finite values")
    edges = bin_edges(finite, bins)
    counts = bin_counts(v, edges)
    shares = counts / v.size
    return {
        "edges": edges.tolist(),
        "proportions": {
            "bins": shares[:bins].tolist(),
            "below_min": float(shares[bins]),
            "above_max": float(shares[bins + 1]),
            "missing": float(shares[bins + 2]),
        },
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean()),
        "std": float(finite.std()),
        "missing_rate": float(shares[bins + 2]),
    }


def category_label(value: npt.ArrayLike) -> str:
    """The label of one category value (rule: module docstring). Raises ValueError for NaN
    (missing, never a category) and for anything but one number."""
    v = np.asarray(value)
    if v.ndim != 0 or v.dtype.kind not in "biuf":
        raise ValueError(f"a category value is one number, got {value!r}")
    if v.dtype.kind in "biu":
        return str(int(v))
    if np.isnan(v):
        raise ValueError("NaN is missing, not a category value")
    if v == 0:
        return "0"  # -0.0 equals 0.0, so they are one category
    return np.format_float_positional(v[()], unique=True, trim="-")


def category_value(label: str, dtype: npt.DTypeLike) -> float:
    """The value ``label`` stands for in a tensor of ``dtype``, widened to float64 as the
    drift kernel compares values. Raises ValueError when ``label`` is not a number that
    ``dtype`` holds (e.g. "2.5" or "300" for INT8)."""
    kind = np.dtype(dtype)
    try:
        if kind.kind in "biu":
            number = int(label)
            if kind.kind == "b":
                if number not in (0, 1):
                    raise ValueError
            elif not np.iinfo(kind).min <= number <= np.iinfo(kind).max:
                raise ValueError
            return float(np.asarray(number, dtype=kind))
        if kind.kind == "f":
            parsed = float(label)
            if parsed != parsed:
                raise ValueError
            return float(np.asarray(parsed, dtype=kind))
    except ValueError:
        raise ValueError(f"category {label!r} is not a {kind} value") from None
    raise ValueError(f"categories need a numeric tensor, not {kind}")


def _categorical_feature_entry(values: npt.NDArray[Any], top_k: int, what: str) -> dict[str, Any]:
    missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    distinct, counts = np.unique(values[~missing], return_counts=True)
    if distinct.size == 0:
        raise ValueError(f"{what}: no values besides missing ones")
    if distinct.size > MAX_CATEGORY_VALUES:
        raise ValueError(
            f"{what}: {distinct.size} distinct values, more than {MAX_CATEGORY_VALUES}: "
            "profile it as numeric"
        )
    # np.unique sorts ascending and the sort is stable, so ties keep the smaller value first.
    by_count = np.argsort(-counts, kind="stable")
    top, rest = by_count[:top_k], np.sort(by_count[top_k:])
    n = values.size
    return {
        "categories": [category_label(distinct[i]) for i in top],
        "other_values": [category_label(distinct[i]) for i in rest],
        "proportions": {
            "categories": (counts[top] / n).tolist(),
            "other": float(counts[rest].sum() / n),
            "new_level": 0.0,
            "missing": float(missing.sum() / n),
        },
        "missing_rate": float(missing.sum() / n),
    }


def _categorical_entry(
    values: npt.NDArray[Any], categories: Iterable[str] | None, what: str
) -> dict[str, Any]:
    if values.dtype.kind not in "biuUSO":
        raise ValueError(f"{what}: categorical values must be integer, boolean or string")
    labels = values.astype(str)
    cats = (
        [str(c) for c in np.unique(values)] if categories is None else [str(c) for c in categories]
    )
    if len(set(cats)) != len(cats):
        raise ValueError(f"{what}: duplicate categories {cats}")
    position = {c: i for i, c in enumerate(cats)}
    counts = np.zeros(len(cats), dtype=np.int64)
    unique, n = np.unique(labels, return_counts=True)
    for label, count in zip(unique.tolist(), n.tolist(), strict=True):
        if label not in position:
            raise ValueError(f"{what}: value {label!r} is not one of the categories {cats}")
        counts[position[label]] = count
    return {"categories": cats, "proportions": (counts / labels.size).tolist()}


def build_profile(
    columns: Mapping[str, npt.ArrayLike],
    *,
    bins: int = 10,
    outputs: Iterable[OutputColumn] = (),
    source: str = "",
    categorical: Iterable[str] = (),
    top_k: int = 20,
    input_name: str | None = None,
) -> Profile:
    """Profile training data: per-feature reference bins and summary statistics.

    ``columns`` maps feature name to a 1-D numeric array, one entry per row, in the order of the
    model's input columns (that order becomes ``index``). NaN counts as missing. The features
    named in ``categorical`` get the ``top_k`` most frequent values as categories, the others
    numeric bins. ``outputs`` adds the model's outputs on the same rows. ``source`` is recorded
    as given; ``input_name``, when given, becomes the profile's ``input``.

    Returns a JSON-ready dict in the ``modelgate.profile/1`` format (module docstring), ``id``
    included. Deterministic: the same inputs give the same document and id.

    Raises ValueError for: no columns, zero rows, columns of unequal length, a non-numeric or
    non-1-D feature, a feature or numeric output without one finite value, ``bins < 1``,
    ``top_k < 1``, a ``categorical`` name that is not a column, a categorical feature with more
    than `MAX_CATEGORY_VALUES` distinct values, and an output whose shape, ``column``, ``kind``
    or categories do not fit its values.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not columns:
        raise ValueError("no feature columns to profile")
    categorical = frozenset(categorical)
    if unknown := sorted(categorical - columns.keys()):
        raise ValueError(f"categorical names no such column: {unknown}")
    arrays = {name: np.asarray(col) for name, col in columns.items()}
    for name, a in arrays.items():
        if a.ndim != 1 or a.dtype.kind not in "biuf":
            raise ValueError(f"feature {name!r}: need a 1-D numeric array, got {a.dtype} {a.shape}")
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"feature columns differ in length: {lengths}")
    n_rows = next(iter(lengths.values()))
    if n_rows == 0:
        raise ValueError("no rows to profile")

    features: list[dict[str, Any]] = []
    for index, (name, a) in enumerate(arrays.items()):
        what = f"feature {name!r}"
        if name in categorical:
            entry = {"name": name, "index": index, "kind": "categorical"}
            entry.update(_categorical_feature_entry(a, top_k, what))
        else:
            entry = {"name": name, "index": index, "kind": "numeric"}
            entry.update(_numeric_entry(a, bins, what))
        features.append(entry)

    output_entries: list[dict[str, Any]] = []
    for out in outputs:
        what = f"output {out.name!r}"
        a = np.asarray(out.values)
        if a.ndim == 2 and out.column is not None:
            if not 0 <= out.column < a.shape[1]:
                raise ValueError(f"{what}: column {out.column} out of range for shape {a.shape}")
            a = a[:, out.column]
        elif a.ndim != 1 or out.column is not None:
            raise ValueError(f"{what}: need 1-D values, or 2-D with column set; got {a.shape}")
        if a.shape[0] != n_rows:
            raise ValueError(f"{what}: {a.shape[0]} rows, features have {n_rows}")
        entry = {"name": out.name, "kind": out.kind}
        if out.kind == "categorical":
            entry.update(_categorical_entry(a, out.categories, what))
        elif out.kind == "numeric":
            if a.dtype.kind not in "biuf":
                raise ValueError(f"{what}: numeric output needs numeric values, got {a.dtype}")
            if out.column is not None:
                entry["column"] = out.column
            entry.update(_numeric_entry(a, bins, what))
        else:
            raise ValueError(f"{what}: kind must be 'numeric' or 'categorical', got {out.kind!r}")
        output_entries.append(entry)

    profile: Profile = {
        "format": FORMAT,
        "id": "",
        "created_from": {"rows": n_rows, "source": source},
        "features": features,
        "outputs": output_entries,
    }
    if input_name is not None:
        # only when given, so that a profile without it keeps its document and id
        profile["input"] = input_name
    profile["id"] = profile_id(profile)
    return profile


def _canonical_json(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def profile_id(profile: Mapping[str, Any]) -> str:
    """The content id of ``profile``: SHA-256 over the canonical JSON of all keys but ``id``."""
    content = {k: v for k, v in profile.items() if k != "id"}
    return hashlib.sha256(_canonical_json(content).encode("ascii")).hexdigest()[:_ID_HEX_CHARS]


def save_profile(profile: Mapping[str, Any], path: str | Path) -> None:
    """Write ``profile`` as indented JSON (sorted keys, trailing newline) to ``path``."""
    text = json.dumps(profile, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="ascii")


def load_profile(path: str | Path) -> Profile:
    """Read a profile written by `save_profile`.

    Raises ValueError when the format is not ``modelgate.profile/1`` or the stored ``id`` does
    not match the content (the file was edited or damaged), OSError when it cannot be read.
    """
    profile = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(profile, dict) or profile.get("format") != FORMAT:
        found = profile.get("format") if isinstance(profile, dict) else type(profile).__name__
        raise ValueError(f"{path}: not a {FORMAT} document (format {found!r})")
    expected = profile_id(profile)
    if profile.get("id") != expected:
        raise ValueError(
            f"{path}: id {profile.get('id')!r} does not match its content ({expected})"
        )
    return profile
