"""Tests for gateway.monitoring.profile: reference bins, proportions, ids and file round trips."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.monitoring.profile import (
    FORMAT,
    OutputColumn,
    bin_counts,
    bin_edges,
    build_profile,
    category_label,
    category_value,
    load_profile,
    profile_id,
    save_profile,
)


def _all_shares(entry: dict[str, Any]) -> list[float]:
    p = entry["proportions"]
    return [*p["bins"], p["below_min"], p["above_max"], p["missing"]]


def _slow_bin_counts(values: list[float], edges: list[float]) -> list[int]:
    """The binning rule written out one value at a time, as an independent oracle."""
    k = len(edges) - 1
    counts = [0] * (k + 3)
    for v in values:
        if math.isnan(v):
            counts[k + 2] += 1
        elif v < edges[0]:
            counts[k] += 1
        elif v > edges[-1]:
            counts[k + 1] += 1
        else:
            counts[min(max(bisect.bisect_right(edges, v) - 1, 0), k - 1)] += 1
    return counts


def _mixed_columns(seed: int, n: int = 2_000) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.8, 0.6, n)
    income[rng.random(n) < 0.05] = np.nan
    return {
        "income": income,
        "ratio": rng.beta(2.0, 5.0, n),
        "late_payments": np.where(rng.random(n) < 0.7, 0, rng.poisson(2.0, n)).astype(np.int64),
        "flag": rng.integers(0, 2, n).astype(np.float32),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bins", [1, 4, 10])
def test_proportions_sum_to_one(seed: int, bins: int) -> None:
    profile = build_profile(_mixed_columns(seed), bins=bins)
    for entry in profile["features"]:
        shares = _all_shares(entry)
        assert len(shares) == bins + 3
        assert len(entry["edges"]) == bins + 1
        assert all(s >= 0.0 for s in shares)
        assert math.isclose(sum(shares), 1.0, abs_tol=1e-12)


def test_nan_counted_as_missing() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(0.0, 1.0, 1_000)
    values[rng.choice(1_000, size=37, replace=False)] = np.nan
    (entry,) = build_profile({"x": values})["features"]
    assert entry["proportions"]["missing"] == pytest.approx(0.037)
    assert entry["missing_rate"] == pytest.approx(0.037)
    assert sum(entry["proportions"]["bins"]) == pytest.approx(0.963)
    finite = values[~np.isnan(values)]
    assert entry["mean"] == pytest.approx(float(finite.mean()))
    assert entry["std"] == pytest.approx(float(finite.std()))
    assert entry["min"] == float(finite.min())
    assert entry["max"] == float(finite.max())


@pytest.mark.parametrize("seed", [3, 4])
def test_edges_ascending_and_span_the_data(seed: int) -> None:
    profile = build_profile(_mixed_columns(seed))
    for entry in profile["features"]:
        edges = entry["edges"]
        assert all(a < b for a, b in itertools.pairwise(edges)), entry["name"]
        assert edges[0] == entry["min"]
        assert edges[-1] == entry["max"]


def test_continuous_edges_are_deciles() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 1.0, 10_000)
    (entry,) = build_profile({"x": values})["features"]
    assert entry["proportions"]["bins"] == pytest.approx([0.1] * 10, abs=2e-4)


def test_tied_quantiles_give_one_bin_per_distinct_value() -> None:
    rng = np.random.default_rng(6)
    # 70% zeros: most decile edges coincide, the case "deduplicate ties" is about.
    values = np.where(rng.random(5_000) < 0.7, 0, rng.integers(1, 6, 5_000)).astype(np.float64)
    edges = bin_edges(values)
    counts = bin_counts(values, edges)[:10]
    distinct, per_value = np.unique(values, return_counts=True)
    assert np.count_nonzero(counts) == distinct.size
    assert sorted(counts[counts > 0].tolist()) == sorted(per_value.tolist())
    assert np.all(np.diff(edges) > 0)


def test_value_equal_to_max_lands_in_last_bin() -> None:
    rng = np.random.default_rng(7)
    values = rng.uniform(-5.0, 5.0, 1_000)
    edges = bin_edges(values)
    top = float(values.max())
    assert edges[-1] == top
    counts = bin_counts([top], edges)
    assert counts[9] == 1
    assert counts.sum() == 1
    # An interior edge opens its bin ([edges[i], edges[i+1])).
    assert bin_counts([edges[3]], edges)[3] == 1


def test_out_of_range_values() -> None:
    edges = np.linspace(0.0, 10.0, 11)
    values = [-1.0, -np.inf, 10.5, np.inf, np.nan, 0.0, 10.0, 5.0]
    counts = bin_counts(values, edges)
    assert counts[10] == 2  # below_min: -1, -inf
    assert counts[11] == 2  # above_max: 10.5, +inf
    assert counts[12] == 1  # missing
    assert counts[0] == 1 and counts[9] == 1 and counts[5] == 1
    assert counts.sum() == len(values)


def test_infinities_in_training_data_do_not_move_edges() -> None:
    values = np.array([1.0, 2.0, 3.0, np.inf, -np.inf, np.nan])
    (entry,) = build_profile({"x": values})["features"]
    assert entry["edges"][0] == 1.0 and entry["edges"][-1] == 3.0
    assert entry["proportions"]["below_min"] == pytest.approx(1 / 6)
    assert entry["proportions"]["above_max"] == pytest.approx(1 / 6)
    assert entry["proportions"]["missing"] == pytest.approx(1 / 6)
    assert entry["max"] == 3.0


@pytest.mark.parametrize("seed", [8, 9])
def test_bin_counts_matches_slow_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    train = rng.normal(0.0, 1.0, 500)
    edges = bin_edges(train)
    live = np.concatenate([rng.normal(0.3, 1.5, 500), edges, [np.nan, np.inf, -np.inf]])
    assert bin_counts(live, edges).tolist() == _slow_bin_counts(live.tolist(), edges.tolist())


def test_constant_column() -> None:
    (entry,) = build_profile({"x": np.full(100, 4.2)})["features"]
    assert entry["edges"] == [4.2] * 11
    assert entry["proportions"]["bins"] == [0.0] * 9 + [1.0]
    assert entry["std"] == 0.0
    assert entry["min"] == entry["max"] == 4.2
    edges = np.array(entry["edges"])
    assert bin_counts([4.2, 4.1, 4.3], edges).tolist() == [0] * 9 + [1, 1, 1, 0]


def test_two_adjacent_floats_do_not_loop() -> None:
    a = 1.0
    b = float(np.nextafter(a, 2.0))
    edges = bin_edges([a, b, a, b])
    assert edges.size == 11 and edges[0] == a and edges[-1] == b
    assert np.all(np.diff(edges) >= 0)
    assert bin_counts([a, b], edges)[:10].sum() == 2


@pytest.mark.parametrize(
    "columns",
    [
        {},
        {"x": np.array([], dtype=np.float64)},
        {"x": np.array([np.nan, np.nan])},
        {"x": np.zeros(3), "y": np.zeros(4)},
        {"x": np.zeros((3, 2))},
        {"x": np.array(["a", "b"])},
    ],
    ids=["no-columns", "no-rows", "all-nan", "ragged", "2-d", "strings"],
)
def test_invalid_input_raises(columns: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError):
        build_profile(columns)


def test_bins_below_one_raises() -> None:
    with pytest.raises(ValueError):
        build_profile({"x": np.arange(5.0)}, bins=0)


def test_outputs() -> None:
    rng = np.random.default_rng(12)
    n = 1_000
    proba = rng.uniform(0.0, 1.0, n).astype(np.float32)
    probabilities = np.column_stack([1.0 - proba, proba])
    label = (proba > 0.8).astype(np.int64)
    profile = build_profile(
        {"x": rng.normal(size=n)},
        outputs=[
            OutputColumn("label", label, kind="categorical", categories=("0", "1")),
            OutputColumn("probabilities", probabilities, column=1),
        ],
    )
    label_entry, proba_entry = profile["outputs"]
    assert label_entry["categories"] == ["0", "1"]
    assert label_entry["proportions"] == pytest.approx([1.0 - label.mean(), label.mean()])
    assert proba_entry["column"] == 1
    assert proba_entry["max"] == float(proba.max())
    assert math.isclose(sum(_all_shares(proba_entry)), 1.0, abs_tol=1e-12)


@pytest.mark.parametrize(
    "output",
    [
        OutputColumn("label", np.array([0, 1, 2]), kind="categorical", categories=("0", "1")),
        OutputColumn("label", np.array([0.0, 1.0, 1.0]), kind="categorical"),
        OutputColumn("p", np.zeros((3, 2))),
        OutputColumn("p", np.zeros((3, 2)), column=2),
        OutputColumn("p", np.zeros(4)),
        OutputColumn("p", np.zeros(3), kind="ordinal"),
    ],
    ids=["unknown-category", "float-categories", "2-d-no-column", "bad-column", "rows", "kind"],
)
def test_invalid_output_raises(output: OutputColumn) -> None:
    with pytest.raises(ValueError):
        build_profile({"x": np.arange(3.0)}, outputs=[output])


def test_id_is_stable() -> None:
    first = build_profile(_mixed_columns(13), source="s")
    second = build_profile(_mixed_columns(13), source="s")
    assert first == second
    assert len(first["id"]) == 16
    assert first["id"] == profile_id(first)
    assert first["format"] == FORMAT
    changed = _mixed_columns(13)
    changed["ratio"][0] += 0.5
    assert build_profile(changed, source="s")["id"] != first["id"]


def test_id_golden() -> None:
    # Pins the canonical JSON and the binning: a change here changes every stored profile's id.
    profile = build_profile(
        {"a": np.arange(20.0), "b": np.array([0.0, 1.0] * 10)}, bins=4, source="golden"
    )
    assert profile["features"][0]["edges"] == [0.0, 4.0, 9.0, 14.0, 19.0]
    assert profile["features"][1]["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    content = {k: v for k, v in profile.items() if k != "id"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert profile["id"] == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert profile["id"] == "8db6eb27ccc64482"


def test_save_load_round_trip(tmp_path: Path) -> None:
    profile = build_profile(_mixed_columns(14), source="round trip")
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    assert load_profile(path) == profile


def test_load_rejects_edited_profile(tmp_path: Path) -> None:
    profile = build_profile(_mixed_columns(15))
    path = tmp_path / "profile.json"
    save_profile(profile, path)
    doc = json.loads(path.read_text())
    doc["features"][0]["mean"] += 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="does not match"):
        load_profile(path)
    path.write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(ValueError, match="not a"):
        load_profile(path)


# --- categorical features, the input name, stored profiles ------------------------------------


@pytest.mark.parametrize(
    ("version", "profile_id_"), [("1", "ce101956fb69f60c"), ("2", "43d0b819ad2fe00d")]
)
def test_example_profiles_keep_loading_with_their_ids(version: str, profile_id_: str) -> None:
    path = Path(__file__).resolve().parents[1] / "examples/models/credit_risk" / version
    profile = load_profile(path / "profile.json")
    assert profile["id"] == profile_id_ == profile_id(profile)
    assert "input" not in profile  # made before the key existed: the model's only input


def test_input_name_is_recorded_only_when_given() -> None:
    columns = {"a": np.arange(20.0)}
    assert "input" not in build_profile(columns)
    named = build_profile(columns, input_name="features")
    assert named["input"] == "features"
    assert named["id"] != build_profile(columns)["id"]


def test_categorical_feature() -> None:
    codes = np.array([3, 3, 3, 1, 1, 7, 7, 2, 9, np.nan], dtype=np.float32)
    profile = build_profile({"x": np.arange(10.0), "code": codes}, categorical=["code"], top_k=2)
    entry = profile["features"][1]
    assert entry["kind"] == "categorical" and entry["index"] == 1
    # most frequent first; 1 and 7 tie at 2 rows: the smaller value wins the last place
    assert entry["categories"] == ["3", "1"]
    assert entry["other_values"] == ["2", "7", "9"]
    assert entry["proportions"] == {
        "categories": [0.3, 0.2],
        "other": pytest.approx(0.4),
        "new_level": 0.0,
        "missing": 0.1,
    }
    assert entry["missing_rate"] == 0.1
    assert "edges" not in entry


@pytest.mark.parametrize(
    ("columns", "options", "match"),
    [
        ({"x": np.arange(3.0)}, {"categorical": ["y"]}, "no such column"),
        ({"x": np.arange(3.0)}, {"categorical": ["x"], "top_k": 0}, "top_k"),
        ({"x": np.full(3, np.nan)}, {"categorical": ["x"]}, "no values besides missing"),
        ({"x": np.arange(10_001.0)}, {"categorical": ["x"]}, "profile it as numeric"),
    ],
)
def test_invalid_categorical_raises(
    columns: dict[str, np.ndarray], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_profile(columns, **options)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (np.float32(3.0), "3"),
        (np.float32(0.1), "0.1"),
        (np.float64(0.1), "0.1"),
        (np.float32(-0.0), "0"),
        (np.float64(-2.5), "-2.5"),
        (np.int64(7), "7"),
        (np.bool_(True), "1"),
        (np.float32(np.inf), "inf"),
        (np.float64(-np.inf), "-inf"),
        (np.float32(1e20), "100000000000000000000"),
    ],
)
def test_category_label(value: np.generic, label: str) -> None:
    assert category_label(value) == label
    assert category_value(label, value.dtype) == float(value)


@pytest.mark.parametrize(
    ("label", "dtype"),
    [("2.5", np.int64), ("300", np.int8), ("red", np.float32), ("nan", np.float64), ("2", bool)],
)
def test_category_value_refuses(label: str, dtype: type) -> None:
    with pytest.raises(ValueError, match="is not a"):
        category_value(label, dtype)


def test_category_label_refuses_nan_and_arrays() -> None:
    with pytest.raises(ValueError, match="missing"):
        category_label(np.float32(np.nan))
    with pytest.raises(ValueError, match="one number"):
        category_label(np.zeros(2))


@settings(max_examples=300, deadline=None)
@given(value=st.floats(width=32, allow_nan=False), wide=st.booleans())
def test_category_labels_round_trip(value: float, wide: bool) -> None:
    # a label reads back, in the dtype it was written from, as the very same value
    dtype = np.float64 if wide else np.float32
    typed = dtype(value)
    assert category_value(category_label(typed), dtype) == float(typed)
