"""Tests for the Numba kernels (gateway.kernels): the sketch update against the profile's NumPy
binning reference and a label-based categorical oracle, and the divergence measures against
SciPy, on the bins and on raw rows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from gateway.kernels import sketch
from gateway.kernels.divergence import (
    PSI_EPSILON,
    binned_ks,
    binned_wasserstein,
    js_distance,
    psi,
)
from gateway.kernels.sketch import count_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import ks_2samp, wasserstein_distance

from gateway.monitoring.profile import bin_counts, bin_edges, category_label, category_value

# --- the sketch update --------------------------------------------------------------------------


def _plan(segments: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Plan rows from (column, kind, table length, segment length), tables and counts packed."""
    rows = []
    table_start, count_start = 0, 0
    for column, kind, table_len, size in segments:
        rows.append([column, kind, table_start, table_len, count_start, size])
        table_start += table_len
        count_start += size
    return np.asarray(rows, dtype=np.int64)


def _count_numeric(x: np.ndarray, edge_sets: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Count column i of ``x`` over ``edge_sets[i]`` with the kernel; one counts array each."""
    plan = _plan([(i, sketch.NUMERIC, e.size, e.size + 2) for i, e in enumerate(edge_sets)])
    table = np.concatenate(edge_sets).astype(np.float64)
    counts = np.zeros(int(plan[-1, sketch.COUNT_START] + plan[-1, sketch.SEGMENT_LEN]), np.int64)
    count_rows(x, plan, table, np.zeros(table.size, np.int64), counts)
    return [counts[s : s + n] for s, n in plan[:, [sketch.COUNT_START, sketch.SEGMENT_LEN]]]


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
special = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])


@st.composite
def numeric_cases(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray]]:
    """A few columns of live values, each with edges: from training values (so ties, constant
    columns and adjacent floats occur), and live values that hit edges exactly."""
    dtype = draw(st.sampled_from(sketch.X_DTYPES))
    columns = draw(st.integers(1, 4))
    rows = draw(st.integers(0, 40))
    edge_sets, cols = [], []
    for _ in range(columns):
        train = draw(st.lists(finite, min_size=1, max_size=30))
        if dtype.kind == "i":
            train = [round(v) for v in train]
        edges = bin_edges(train, draw(st.integers(1, 12)))
        pool = st.one_of(finite, st.sampled_from(edges.tolist()))
        if dtype.kind == "f":
            pool = st.one_of(pool, special)
        values = np.asarray(draw(st.lists(pool, min_size=rows, max_size=rows)), np.float64)
        if dtype.kind == "i":
            values = np.round(values)
        edge_sets.append(edges)
        cols.append(values.astype(dtype))
    x = np.column_stack(cols) if rows else np.zeros((0, columns), dtype)
    return np.ascontiguousarray(x, dtype=dtype), edge_sets


@settings(max_examples=300, deadline=None)
@given(case=numeric_cases(), readonly=st.booleans())
def test_numeric_counts_equal_bin_counts(
    case: tuple[np.ndarray, list[np.ndarray]], readonly: bool
) -> None:
    x, edge_sets = case
    x.flags.writeable = not readonly
    for i, got in enumerate(_count_numeric(x, edge_sets)):
        assert got.tolist() == bin_counts(x[:, i], edge_sets[i]).tolist()


def test_numeric_counts_on_named_values() -> None:
    edges = np.array([0.0, 1.0, 2.0, 2.0, 3.0])  # a repeated edge: bin 2 is empty
    values = [np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, 2.0, 3.0, -1e-300, 3.0000001, 2.5]
    x = np.asarray(values, np.float64).reshape(-1, 1)
    (got,) = _count_numeric(x, [edges])
    assert got.tolist() == bin_counts(values, edges).tolist()
    # bins [0,1) [1,2) [2,2) [2,3]; then below_min, above_max, missing
    assert got.tolist() == [2, 1, 0, 3, 2, 2, 1]


def test_counts_accumulate_across_calls() -> None:
    rng = np.random.default_rng(1)
    edges = bin_edges(rng.normal(size=500))
    plan = _plan([(0, sketch.NUMERIC, edges.size, edges.size + 2)])
    counts = np.zeros(edges.size + 2, np.int64)
    batches = [rng.normal(size=(n, 1)) for n in (1, 7, 64)]
    for batch in batches:
        count_rows(batch, plan, edges, np.zeros(edges.size, np.int64), counts)
    assert counts.tolist() == bin_counts(np.concatenate(batches), edges).tolist()


def _categorical_table(
    categories: list[str], others: list[str], dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted(
        [(category_value(c, dtype), i) for i, c in enumerate(categories)]
        + [(category_value(c, dtype), len(categories)) for c in others]
    )
    return np.array([v for v, _ in pairs]), np.array([s for _, s in pairs], np.int64)


def _label_oracle(values: np.ndarray, categories: list[str], others: list[str]) -> list[int]:
    """Categories by comparing labels, the documented mapping, one value at a time."""
    k = len(categories)
    counts = [0] * (k + 3)
    for v in values:
        if np.isnan(v):
            counts[k + 2] += 1
            continue
        label = category_label(v)
        if label in categories:
            counts[categories.index(label)] += 1
        elif label in others:
            counts[k] += 1
        else:
            counts[k + 1] += 1
    return counts


codes = st.one_of(
    st.integers(-5, 40).map(float),
    st.sampled_from([0.1, 0.5, 2.25, 1e20, -3.75, math.inf, -math.inf]),
)


@settings(max_examples=300, deadline=None)
@given(
    known=st.lists(codes, min_size=1, max_size=12, unique=True),
    top=st.integers(1, 12),
    live=st.lists(st.one_of(codes, st.just(math.nan), st.just(-0.0)), max_size=50),
    dtype=st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)]),
)
def test_categorical_counts_equal_label_oracle(
    known: list[float], top: int, live: list[float], dtype: np.dtype
) -> None:
    labels = list(dict.fromkeys(category_label(dtype.type(v)) for v in known))
    categories, others = labels[:top], labels[top:]
    table, slots = _categorical_table(categories, others, dtype)
    values = np.asarray(live, dtype=dtype)
    plan = _plan([(0, sketch.CATEGORICAL, table.size, len(categories) + 3)])
    counts = np.zeros(len(categories) + 3, np.int64)
    count_rows(values.reshape(-1, 1), plan, table, slots, counts)
    assert counts.tolist() == _label_oracle(values, categories, others)


def test_categorical_counts_for_integer_codes() -> None:
    categories, others = ["3", "1"], ["7"]
    table, slots = _categorical_table(categories, others, np.dtype(np.int64))
    x = np.array([[3], [1], [3], [7], [8], [-1]], np.int64)
    plan = _plan([(0, sketch.CATEGORICAL, table.size, 5)])
    counts = np.zeros(5, np.int64)
    count_rows(x, plan, table, slots, counts)
    assert counts.tolist() == [2, 1, 1, 2, 0]


# --- divergences --------------------------------------------------------------------------------


def _shares(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def _random_shares(rng: np.random.Generator, size: int, zeros: int) -> np.ndarray:
    p = rng.dirichlet(np.ones(size))
    p[rng.choice(size, zeros, replace=False)] = 0.0
    return p / p.sum()


@pytest.mark.parametrize("seed", range(6))
def test_psi_and_js_equal_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = _random_shares(rng, 13, seed % 3), _random_shares(rng, 13, (seed + 1) % 3)
    # PSI is the symmetrized Kullback-Leibler divergence of the floored proportions.
    lp, lq = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
    assert psi(p, q, PSI_EPSILON) == pytest.approx(np.sum(rel_entr(lp, lq) + rel_entr(lq, lp)))
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_divergences_of_equal_and_disjoint_distributions() -> None:
    p = np.array([0.5, 0.5, 0.0, 0.0])
    q = np.array([0.0, 0.0, 0.5, 0.5])
    assert psi(p, p, PSI_EPSILON) == 0.0
    assert js_distance(p, p) == 0.0
    assert js_distance(p, q) == pytest.approx(1.0)
    # each empty side is floored: 4 terms of 0.5 * ln(0.5 / 1e-4)
    assert psi(p, q, PSI_EPSILON) == pytest.approx(4 * (0.5 - 1e-4) * math.log(0.5 / 1e-4))


def _segment(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return _shares(bin_counts(values, edges).astype(np.float64))


def _discretized(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each non-missing value replaced by a point that stands for its slot: the bin's lower
    edge, below the first edge or above the last. Their empirical CDF is the binned CDF."""
    v = values[~np.isnan(values)]
    k = edges.size - 1
    index = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, k - 1)
    return np.where(
        v < edges[0], edges[0] - 1, np.where(v > edges[-1], edges[-1] + 1, edges[index])
    )


def _live_and_reference(seed: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = rng.normal(0.0, 1.0, 4_000)
    live = rng.normal(shift, 1.0 + 0.2 * shift, 3_000)
    live[rng.random(live.size) < 0.02] = np.nan
    return reference, live, bin_edges(reference)


@pytest.mark.parametrize(("seed", "shift"), [(0, 0.0), (1, 0.1), (2, 0.5), (3, 1.0), (4, 2.5)])
def test_binned_ks_against_scipy(seed: int, shift: float) -> None:
    reference, live, edges = _live_and_reference(seed, shift)
    p, q = _segment(live, edges), _segment(reference, edges)
    got = binned_ks(p, q)
    # Exactly the KS statistic of the rows with each value moved to its bin's point.
    exact = ks_2samp(_discretized(live, edges), _discretized(reference, edges)).statistic
    assert got == pytest.approx(exact, abs=1e-12)
    # On the raw rows: never above, and short by at most the largest share in one slot (the
    # CDFs can part inside a bin by no more than what that bin holds).
    raw = ks_2samp(live[~np.isnan(live)], reference).statistic
    k = edges.size - 1
    widest = max(p[: k + 2].max() / (1 - p[k + 2]), q[: k + 2].max() / (1 - q[k + 2]))
    assert got <= raw + 1e-12
    assert raw <= got + widest + 1e-12


def _spread(shares: np.ndarray, edges: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """A binned distribution as weighted points: each bin's share on ``points`` evenly spaced
    points (midpoints of equal sub-intervals), out-of-range shares on the end edges."""
    k = edges.size - 1
    mass = shares[: k + 2] / shares[: k + 2].sum()
    offsets = (np.arange(points) + 0.5) / points
    where = [edges[i] + offsets * (edges[i + 1] - edges[i]) for i in range(k)]
    weight = [np.full(points, mass[i] / points) for i in range(k)]
    where += [edges[:1], edges[-1:]]
    weight += [mass[k : k + 1], mass[k + 1 : k + 2]]
    return np.concatenate(where), np.concatenate(weight)


@pytest.mark.parametrize(("seed", "shift"), [(5, 0.0), (6, 0.1), (7, 0.5), (8, 1.0), (9, 2.5)])
def test_binned_wasserstein_against_scipy(seed: int, shift: float) -> None:
    reference, live, edges = _live_and_reference(seed, shift)
    p, q = _segment(live, edges), _segment(reference, edges)
    got = binned_wasserstein(p, q, edges)
    # The same piecewise-uniform distributions as weighted points: midpoints of 2000 equal
    # sub-intervals per bin move no mass further than half a sub-interval, so each side is
    # within sum(width * share) / 4000 of the uniform pieces.
    points = 2_000
    pu, pw = _spread(p, edges, points)
    qu, qw = _spread(q, edges, points)
    slack = np.sum(np.diff(edges) * (p[:-3] + q[:-3])) / (2 * points) + 1e-12
    assert got == pytest.approx(wasserstein_distance(pu, qu, pw, qw), abs=slack)
    # On the raw rows: off by at most how far each side's rows lie from its binned stand-in
    # (triangle inequality), each distance measured by SciPy too.
    observed = live[~np.isnan(live)]
    raw = wasserstein_distance(observed, reference)
    apart = wasserstein_distance(observed, pu, None, pw) + wasserstein_distance(
        reference, qu, None, qw
    )
    assert abs(got - raw) <= apart + 2 * slack


def test_binned_measures_undefined_without_values() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    all_missing = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    some = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    assert math.isnan(binned_ks(all_missing, some))
    assert math.isnan(binned_wasserstein(some, all_missing, edges))
    assert binned_ks(some, some) == 0.0
    assert binned_wasserstein(some, some, edges) == 0.0


def test_wasserstein_of_a_shift_by_one_bin() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    p = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    q = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert binned_wasserstein(p, q, edges) == pytest.approx(1.0)
    # out-of-range mass sits on the end edge: from below_min (at 0) to the last bin's middle
    below = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    last = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    assert binned_wasserstein(below, last, edges) == pytest.approx(2.5)


def test_binned_measures_with_every_live_row_below_the_range() -> None:
    edges = np.array([0.0, 1.0, 2.0])
    below = np.array([0.0, 0.0, 1.0, 0.0, 0.0])
    reference = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
    assert binned_ks(below, reference) == 1.0
    # all of it at the first edge, against uniform on [0, 2]: mean distance 1
    assert binned_wasserstein(below, reference, edges) == pytest.approx(1.0)
