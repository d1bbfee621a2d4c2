"""Tests for gateway.monitoring.drift: counts against the NumPy binning reference, bad input
counted and never raised, threads, windows and their horizon under a fake clock, merging,
profiles refused at load, scores and statuses, and `bench drift` run tiny."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gateway.bench.cli import main as bench_main

from gateway.backends.onnx import OnnxBackend
from gateway.config import ModelConfig
from gateway.errors import InvalidInput
from gateway.monitoring.drift import STAGE_ROWS, DriftConfig, DriftMonitor, drift_status
from gateway.monitoring.drift_layout import wasserstein_edges
from gateway.monitoring.profile import bin_counts, build_profile, category_label, load_profile
from gateway.protocol.types import ModelSignature, TensorMetadata

CREDIT_RISK = Path(__file__).resolve().parent.parent / "examples" / "models" / "credit_risk"
CREDIT_SIGNATURE = ModelSignature(
    "onnxruntime_onnx",
    (TensorMetadata("features", "FP32", (-1, 20)),),
    (TensorMetadata("label", "INT64", (-1,)), TensorMetadata("probabilities", "FP32", (-1, 2))),
)


class Clock:
    """A settable clock for the monitors' windows."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def credit_profile() -> dict[str, Any]:
    return load_profile(CREDIT_RISK / "1" / "profile.json")


def _credit_batch(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Rows around the profile's ranges, with NaN, ±inf and exact edges mixed in."""
    x = rng.normal(0.0, 1.0, (rows, 20)).astype(np.float32) * 1000
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.02] = np.inf
    x[rng.random(x.shape) < 0.02] = -np.inf
    p = rng.random(rows).astype(np.float32)
    p[rng.random(rows) < 0.1] = np.nan
    return x, [(p > 0.5).astype(np.int64), np.column_stack([1 - p, p])]


def _expected_counts(profile: dict[str, Any], x: np.ndarray, outputs: list[np.ndarray]) -> list:
    """The export's counts, from the NumPy reference: features in profile order, then outputs."""
    parts = [bin_counts(x[:, f["index"]], f["edges"]) for f in profile["features"]]
    label, probabilities = outputs
    categories = [int(c) for c in profile["outputs"][0]["categories"]]
    parts.append(np.array([np.sum(label == c) for c in categories] + [0, 0, 0]))
    parts.append(bin_counts(probabilities[:, 1], profile["outputs"][1]["edges"]))
    return np.concatenate(parts).tolist()


def _feed(monitor: DriftMonitor, batches: list[tuple[np.ndarray, list[np.ndarray]]]) -> None:
    for x, outputs in batches:
        monitor.update({"features": x}, outputs)


def test_counts_equal_the_numpy_reference(credit_profile: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    batches = [_credit_batch(rng, n) for n in (1, 2, 64, 7, 300)]
    monitor = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    _feed(monitor, batches)
    x = np.concatenate([b[0] for b in batches])
    outputs = [np.concatenate([b[1][i] for b in batches]) for i in range(2)]
    (window,) = monitor.export_windows()
    assert window["rows"] == monitor.rows == x.shape[0]
    assert window["counts"] == _expected_counts(credit_profile, x, outputs)
    assert monitor.errors == 0


def test_the_example_model_feeds_it(credit_profile: dict[str, Any]) -> None:
    backend = OnnxBackend(CREDIT_RISK / "1" / "model.onnx", ModelConfig())
    monitor = DriftMonitor.from_profile(credit_profile, backend.signature)
    monitor.warm_up()
    assert monitor.rows == 0 and monitor.export_windows() == []
    warmup = json.loads((CREDIT_RISK / "warmup.json").read_text())["features"]
    x = np.asarray(warmup, dtype=np.float32)
    monitor.update({"features": x}, backend.run({"features": x}))
    assert monitor.rows == len(x) and monitor.errors == 0
    scores = monitor.scores()
    assert [o["name"] for o in scores["outputs"]] == ["label", "probabilities"]
    assert scores["window"]["rows"] == len(x)


def test_missing_and_out_of_range_shares(credit_profile: dict[str, Any]) -> None:
    monitor = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    x = np.zeros((4, 20), np.float32)
    x[:, 0] = [np.nan, np.inf, -np.inf, credit_profile["features"][0]["edges"][-1]]
    label = np.array([0, 1, 1, 7], np.int64)  # 7 is no category: a new level
    probabilities = np.array([[0.5, 0.5], [0.0, np.nan], [1, np.inf], [1, -np.inf]], np.float32)
    monitor.update({"features": x}, [label, probabilities])
    scores = monitor.scores()
    age = scores["features"][0]
    assert age["missing"] == 0.25 and age["out_of_range"] == 0.5
    label_scores, probability_scores = scores["outputs"]
    assert label_scores["new_level"] == 0.25
    assert probability_scores["missing"] == 0.25 and probability_scores["out_of_range"] == 0.5
    assert monitor.errors == 0 and monitor.rows == 4


def test_bad_batches_are_counted_never_raised(
    credit_profile: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    monitor = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    x, outputs = _credit_batch(np.random.default_rng(1), 3)
    bad: list[tuple[dict[str, Any], list[Any]]] = [
        ({"features": x[:, :19]}, outputs),  # a column short
        ({"other": x}, outputs),  # no such input
        ({"features": x}, outputs[:1]),  # an output missing
        ({"features": x}, [outputs[0][:2], outputs[1]]),  # rows differ
        ({"features": x}, [outputs[0], outputs[1][:, :1]]),  # a column short
        ({"features": x.tolist()}, outputs),  # not an array
        ({"features": x[0]}, outputs),  # 1-D
    ]
    with caplog.at_level(logging.WARNING, logger="gateway.monitoring.drift"):
        for feeds, outs in bad:
            monitor.update(feeds, outs)
    assert monitor.errors == len(bad)
    assert monitor.rows == 0 and monitor.export_windows() == []
    # logged once, not once per failure
    assert len([r for r in caplog.records if "could not be counted" in r.message]) == 1
    monitor.update({"features": x}, outputs)
    assert monitor.rows == 3


def test_non_contiguous_and_read_only_tensors(credit_profile: dict[str, Any]) -> None:
    rng = np.random.default_rng(2)
    x, outputs = _credit_batch(rng, 50)
    monitor = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    wide = np.repeat(x, 2, axis=1)[:, ::2]  # the same values, strided
    frozen = np.frombuffer(x.tobytes(), dtype=np.float32).reshape(x.shape)
    assert not wide.flags.c_contiguous and not frozen.flags.writeable
    monitor.update({"features": wide}, outputs)
    monitor.update({"features": frozen}, outputs)
    doubled = [np.concatenate([o, o]) for o in outputs]
    (window,) = monitor.export_windows()
    assert window["counts"] == _expected_counts(credit_profile, np.concatenate([x, x]), doubled)


def test_staged_batches_count_like_one_at_a_time(credit_profile: dict[str, Any]) -> None:
    """Batches are staged and counted together: past several stage lengths, with a bad batch
    among them (dropped alone) and batches of another dtype (counted as float64, as the kernel
    compares), the counts equal the reference over the good batches."""
    rng = np.random.default_rng(12)
    batches = [_credit_batch(rng, int(n)) for n in rng.integers(1, 9, 3 * STAGE_ROWS // 4)]
    batches[7] = (batches[7][0].astype(np.float64), batches[7][1])
    batches[9] = (batches[9][0], [batches[9][1][0].astype(np.int32), batches[9][1][1]])
    assert sum(x.shape[0] for x, _ in batches) > 2 * STAGE_ROWS
    monitor = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    for i, (x, outputs) in enumerate(batches):
        monitor.update({"features": x}, outputs)
        if i == 30:
            monitor.update({"features": x[:, :19]}, outputs)  # a column short
    x = np.concatenate([x for x, _ in batches])
    outputs = [np.concatenate(parts) for parts in zip(*(o for _, o in batches), strict=True)]
    (window,) = monitor.export_windows()
    assert window["rows"] == x.shape[0] == monitor.rows
    assert window["counts"] == _expected_counts(credit_profile, x, outputs)
    assert monitor.errors == 1


def test_every_read_counts_the_stage_first() -> None:
    rng = np.random.default_rng(13)
    profile = _small_profile(rng)
    clock = Clock(1000.0)
    config = DriftConfig(window_s=10.0, horizon_windows=2, min_rows=0)
    monitor = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, clock)
    monitor.update({"x": _small_rows(rng, 3)}, [])
    assert monitor.scores()["window"]["rows"] == 3
    monitor.update({"x": _small_rows(rng, 4)}, [])
    assert [w["rows"] for w in monitor.export_windows()] == [7]
    # staged rows whose window falls off the horizon when merged windows two newer arrive
    monitor.update({"x": _small_rows(rng, 5)}, [])
    newer = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, Clock(1020.0))
    newer.update({"x": _small_rows(rng, 6)}, [])
    monitor.merge(newer.export_windows())
    assert [(w["start_s"], w["rows"]) for w in monitor.export_windows()] == [(1020.0, 6)]
    assert monitor.rows == 18


def test_concurrent_updates_count_exactly(credit_profile: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    batches = [_credit_batch(rng, int(n)) for n in rng.integers(1, 9, 400)]
    serial = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    _feed(serial, batches)
    shared = DriftMonitor.from_profile(credit_profile, CREDIT_SIGNATURE, clock=Clock())
    start = threading.Barrier(8)

    def worker(part: list[tuple[np.ndarray, list[np.ndarray]]]) -> None:
        start.wait()
        for _ in range(5):
            _feed(shared, part)

    threads = [threading.Thread(target=worker, args=(batches[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (expected,) = serial.export_windows()
    (got,) = shared.export_windows()
    assert got["rows"] == 5 * expected["rows"] == shared.rows
    assert got["counts"] == [5 * c for c in expected["counts"]]
    assert shared.errors == 0


def _small_profile(rng: np.random.Generator, n: int = 20_000) -> dict[str, Any]:
    columns = {f"x{i}": rng.normal(0.0, 1.0, n).astype(np.float32) for i in range(4)}
    columns["code"] = rng.choice([1.0, 2.0, 3.0, 4.0, 9.0], n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    return build_profile(columns, categorical=["code"], top_k=3, input_name="x")


SMALL_SIGNATURE = ModelSignature("test", (TensorMetadata("x", "FP32", (-1, 5)),), ())


def _small_rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    x = rng.normal(0.0, 1.0, (n, 5)).astype(np.float32)
    x[:, 0] += shift
    x[:, 4] = rng.choice([1.0, 2.0, 3.0, 4.0, 9.0], n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    return x


def test_windows_rotate_and_keep_the_horizon() -> None:
    rng = np.random.default_rng(4)
    clock = Clock(1000.0)
    config = DriftConfig(window_s=10.0, horizon_windows=3, min_rows=0)
    monitor = DriftMonitor.from_profile(_small_profile(rng), SMALL_SIGNATURE, config, clock)
    for now, rows in ((1000.0, 1), (1009.9, 2), (1010.0, 3), (1035.0, 4), (1041.0, 5)):
        clock.now = now
        monitor.update({"x": _small_rows(rng, rows)}, [])
    windows = monitor.export_windows()
    # the 3 windows ending with 1040 are 1020, 1030 and 1040: 1000 and 1010 were dropped, 1020
    # never had rows
    assert [(w["start_s"], w["rows"]) for w in windows] == [(1030.0, 4), (1040.0, 5)]
    assert monitor.rows == 15
    assert monitor.scores()["window"] == {"from_s": 1030.0, "to_s": 1050.0, "rows": 9, "windows": 2}
    assert monitor.scores(last_windows=1)["window"]["rows"] == 5
    assert monitor.scores(last_windows=2)["window"]["rows"] == 9
    assert monitor.scores(since_s=1039.0, until_s=1040.0)["window"]["rows"] == 4
    assert monitor.scores(until_s=1030.0)["window"] == {
        "from_s": None,
        "to_s": None,
        "rows": 0,
        "windows": 0,
    }
    # a late reading of the clock counts in the current window, never in a dropped one
    clock.now = 1001.0
    monitor.update({"x": _small_rows(rng, 6)}, [])
    assert [w["rows"] for w in monitor.export_windows()] == [4, 11]


def test_merged_halves_equal_the_whole() -> None:
    rng = np.random.default_rng(5)
    profile = _small_profile(rng)
    config = DriftConfig(window_s=10.0)
    clocks = [Clock(), Clock(), Clock()]
    whole, first, second = (
        DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, c) for c in clocks
    )
    for i in range(30):
        x = _small_rows(rng, int(rng.integers(1, 50)), shift=0.01 * i)
        for clock in clocks:
            clock.now = 3.0 * i
        whole.update({"x": x}, [])
        (first if i % 2 else second).update({"x": x}, [])
    merged = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, Clock(90.0))
    merged.merge(first.export_windows())
    merged.merge(second.export_windows())
    assert merged.export_windows() == whole.export_windows()
    assert merged.rows == whole.rows
    assert merged.scores() == whole.scores()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"profile_id": "0123456789abcdef"}, "profile"),
        ({"window_s": 60.0}, "cannot merge into 10.0 s"),
        ({"counts": [1, 2]}, "counts"),
        ({"rows": -1}, "counts"),
    ],
)
def test_merge_refuses_windows_that_do_not_fit(change: dict[str, Any], match: str) -> None:
    rng = np.random.default_rng(6)
    profile = _small_profile(rng)
    config = DriftConfig(window_s=10.0)
    source = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, Clock())
    source.update({"x": _small_rows(rng, 10)}, [])
    target = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, config, Clock())
    (window,) = source.export_windows()
    with pytest.raises(ValueError, match=match):
        target.merge([window, {**window, **change}])
    assert target.export_windows() == [] and target.rows == 0  # nothing added


def test_categorical_feature_counts() -> None:
    rng = np.random.default_rng(7)
    profile = _small_profile(rng)
    code = profile["features"][4]
    # top 3 of 1, 2, 3, 4, 9 by frequency; 4 and 9 are "other"
    assert code["categories"] == ["1", "2", "3"] and code["other_values"] == ["4", "9"]
    monitor = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, clock=Clock())
    live = np.array([1, 2, 3, 4, 9, 5, np.inf, np.nan, 2.5, -0.0], np.float32)
    x = np.zeros((live.size, 5), np.float32)
    x[:, 4] = live
    monitor.update({"x": x}, [])
    (window,) = monitor.export_windows()
    assert window["counts"][-6:] == [1, 1, 1, 2, 4, 1]  # categories, other, new_level, missing
    scores = monitor.scores(last_windows=1)["features"][4]
    assert scores["other"] == 0.2 and scores["new_level"] == 0.4 and scores["missing"] == 0.1
    assert scores["wasserstein"] is None and scores["ks"] is None
    assert [category_label(np.float32(v)) for v in (1, 2.5, -0.0)] == ["1", "2.5", "0"]


def test_dtypes_without_a_compiled_kernel_are_converted() -> None:
    rng = np.random.default_rng(8)
    values = rng.integers(-100, 100, (500, 2)).astype(np.int8)
    profile = build_profile({"a": values[:, 0], "b": values[:, 1]}, categorical=["b"], top_k=50)
    signature = ModelSignature("test", (TensorMetadata("x", "INT8", (-1, 2)),), ())
    monitor = DriftMonitor.from_profile(profile, signature, clock=Clock())
    monitor.warm_up()
    monitor.update({"x": values}, [])
    (window,) = monitor.export_windows()
    numeric = bin_counts(values[:, 0], profile["features"][0]["edges"]).tolist()
    assert window["counts"][: len(numeric)] == numeric
    b = profile["features"][1]
    assert sum(window["counts"][len(numeric) :][: len(b["categories"]) + 1]) == 500  # no new level


def test_scores_and_statuses() -> None:
    rng = np.random.default_rng(9)
    profile = _small_profile(rng)
    clock = Clock()
    monitor = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, clock=clock)
    monitor.update({"x": _small_rows(rng, 500)}, [])
    assert drift_status(monitor.scores()) == "insufficient_data"  # below min_rows
    clock.now = 60.0
    monitor.update({"x": _small_rows(rng, 20_000)}, [])
    clean = monitor.scores(last_windows=1)
    assert drift_status(clean) == "ok", clean
    assert all(f["status"] == "ok" and f["breaches"] == [] for f in clean["features"])
    clock.now = 120.0
    monitor.update({"x": _small_rows(rng, 20_000, shift=1.0)}, [])
    shifted = monitor.scores(last_windows=1)
    x0 = shifted["features"][0]
    assert x0["status"] == "alert" and set(x0["breaches"]) == {"psi", "js", "wasserstein", "ks"}
    # a pure shift by one std: the normed Wasserstein distance is about 1
    assert x0["wasserstein"] == pytest.approx(1.0, abs=0.1)
    assert [f["status"] for f in shifted["features"][1:]] == ["ok"] * 4
    # one drifted feature of five, equal weights: a warning overall ...
    assert shifted["overall"]["drifted"] == ["x0"] and shifted["overall"]["drifted_share"] == 0.2
    assert drift_status(shifted) == "warn"
    # ... an alert when that feature carries the weight
    heavy = DriftConfig(importances={"x0": 10.0, "x1": 1.0})
    weighted = DriftMonitor.from_profile(profile, SMALL_SIGNATURE, heavy, clock)
    weighted.merge(monitor.export_windows())
    weighted_scores = weighted.scores(last_windows=1)
    assert weighted_scores["overall"]["score"] == pytest.approx(
        (10 * x0["js"] + shifted["features"][1]["js"]) / 11
    )
    assert drift_status(weighted_scores) == "alert"
    json.dumps(weighted_scores, allow_nan=False)


def _credit_mutations() -> list[tuple[Callable[[dict[str, Any]], Any], ModelSignature, str]]:
    def features(p: dict[str, Any]) -> list[dict[str, Any]]:
        return p["features"]

    def set_(path: Callable[[dict[str, Any]], dict[str, Any]], key: str, value: Any) -> Any:
        return lambda p: path(p).__setitem__(key, value)

    two_inputs = ModelSignature(
        "x",
        (*CREDIT_SIGNATURE.inputs, TensorMetadata("extra", "FP32", (-1, 3))),
        CREDIT_SIGNATURE.outputs,
    )

    def replace_input(shape: tuple[int, ...], datatype: str = "FP32") -> ModelSignature:
        return ModelSignature(
            "x", (TensorMetadata("features", datatype, shape),), CREDIT_SIGNATURE.outputs
        )

    def replace_output(shape: tuple[int, ...], datatype: str = "FP32") -> ModelSignature:
        return ModelSignature(
            "x",
            CREDIT_SIGNATURE.inputs,
            (CREDIT_SIGNATURE.outputs[0], TensorMetadata("probabilities", datatype, shape)),
        )

    def categorical_age(labels: list[str]) -> Callable[[dict[str, Any]], None]:
        def change(p: dict[str, Any]) -> None:
            share = 1 / len(labels) if labels else 0.0
            features(p)[0] = {
                "name": "age",
                "index": 0,
                "kind": "categorical",
                "categories": labels,
                "proportions": {
                    "categories": [share] * len(labels),
                    "other": 0.0,
                    "new_level": 0.0,
                    "missing": 0.0,
                },
            }

        return change

    def nothing(_: dict[str, Any]) -> None:
        return None

    return [
        (set_(lambda p: p, "format", "other/1"), CREDIT_SIGNATURE, "not a modelgate.profile/1"),
        (set_(lambda p: p, "input", "pixels"), CREDIT_SIGNATURE, "input 'pixels' is not an input"),
        (nothing, two_inputs, "names no input and the model has 2"),
        (lambda p: features(p).pop(), CREDIT_SIGNATURE, "19 features; input 'features' has 20"),
        (nothing, replace_input((-1, 21)), "20 features; input 'features' has 21 columns"),
        (nothing, replace_input((-1, -1)), "fixed number of columns"),
        (nothing, replace_input((-1,)), r"shape \[-1\]"),
        (nothing, replace_input((-1, 20), "BYTES"), "BYTES"),
        (set_(lambda p: features(p)[3], "index", 25), CREDIT_SIGNATURE, "index 25 is outside"),
        (set_(lambda p: features(p)[3], "index", 0), CREDIT_SIGNATURE, "both have index 0"),
        (set_(lambda p: features(p)[3], "kind", "ordinal"), CREDIT_SIGNATURE, "kind must be"),
        (
            set_(lambda p: features(p)[3], "edges", [3.0, 2.0] * 5 + [1.0]),
            CREDIT_SIGNATURE,
            "edges must be at least 2 non-decreasing",
        ),
        (
            set_(lambda p: features(p)[3]["proportions"], "missing", 0.5),
            CREDIT_SIGNATURE,
            "feature 'debt_to_income': proportions must be >= 0 and sum to 1",
        ),
        (set_(lambda p: p["outputs"][1], "name", "score"), CREDIT_SIGNATURE, "output 'score'"),
        (nothing, replace_output((-1, 1)), "column 1 is outside its 1 columns"),
        (lambda p: p["outputs"][1].pop("column"), CREDIT_SIGNATURE, "must name a column"),
        (nothing, replace_output((-1, 2), "BYTES"), "output 'probabilities' is BYTES"),
        (categorical_age(["1", "red"]), CREDIT_SIGNATURE, "category 'red' is not a float32"),
        (categorical_age(["1", "1.0"]), CREDIT_SIGNATURE, "'1' and '1.0' are the same FP32"),
        (categorical_age([]), CREDIT_SIGNATURE, "no categories"),
    ]


@pytest.mark.parametrize(("change", "signature", "match"), _credit_mutations())
def test_profiles_that_do_not_fit_are_refused(
    credit_profile: dict[str, Any],
    change: Callable[[dict[str, Any]], Any],
    signature: ModelSignature,
    match: str,
) -> None:
    profile = copy.deepcopy(credit_profile)
    change(profile)
    with pytest.raises(InvalidInput, match=match):
        DriftMonitor.from_profile(profile, signature)


def test_importances_must_name_features(credit_profile: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="importances name features the profile lacks"):
        DriftMonitor.from_profile(
            credit_profile, CREDIT_SIGNATURE, DriftConfig(importances={"height": 1.0})
        )
    with pytest.raises(InvalidInput, match="weight 0"):
        DriftMonitor.from_profile(
            credit_profile, CREDIT_SIGNATURE, DriftConfig(importances={"age": 0})
        )


@pytest.mark.parametrize(
    "values",
    [
        {"window_s": 0},
        {"horizon_windows": 0},
        {"psi_warn": 0.3, "psi_alert": 0.2},
        {"js_alert": 0},
        {"min_rows": -1},
        {"importances": {"age": -1.0}},
    ],
)
def test_config_is_checked(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DriftConfig(**values)


def test_bench_drift_runs_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "drift.json"
    status = bench_main(
        [
            "drift",
            "--rows-per-window",
            "1000",
            "--clean-windows",
            "2",
            "--max-windows",
            "2",
            "--reference-rows",
            "2000",
            "--cost-rows",
            "2000",
            "--update-calls",
            "50",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "False alarms" in printed and "credit_score +1 std" in printed
    result = json.loads(out.read_text())
    assert result["config"]["rows_per_window"] == [1000]
    cases = [d["case"] for d in result["detections"]]
    shifts = [f"credit_score +{s} std" for s in ("0.1", "0.25", "0.5", "1")]
    assert cases == [*shifts, "loan_term_months shares"]
    one_std = result["detections"][3]
    assert one_std["rows_until_detection"] == 1000  # a 1 std shift shows in the first window
    # PSI and JS of the sketch are the batch computation on the same bins
    agreement = one_std["agreement"]
    assert agreement["psi_sketch"] == pytest.approx(agreement["psi_scipy"], rel=1e-9)
    assert agreement["js_sketch"] == pytest.approx(agreement["js_scipy"], rel=1e-9)
    assert [c["unit"] for c in result["costs"]] == ["rows/s", "rows/s", "µs", "µs"]


def test_wasserstein_edges_narrow_only_long_end_bins() -> None:
    edges = np.array([-100.0, 0.0, 1.0, 2.0, 3.0, 1000.0])
    # 5 bins, then below_min, above_max, missing
    even = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.0, 0.0, 0.0])
    # each end bin: at most twice its neighbour's width at the neighbour's density
    assert wasserstein_edges(edges, even).tolist() == [-2.0, 0.0, 1.0, 2.0, 3.0, 5.0]
    heavy = np.array([0.6, 0.1, 0.1, 0.1, 0.1, 0.0, 0.0, 0.0])
    assert wasserstein_edges(edges, heavy)[0] == pytest.approx(-12.0)
    # short end bins stay; so do end bins next to an empty or zero-width one, and 2 bins
    short = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 3.5])
    assert wasserstein_edges(short, even).tolist() == short.tolist()
    empty = np.array([0.4, 0.0, 0.2, 0.0, 0.4, 0.0, 0.0, 0.0])
    assert wasserstein_edges(edges, empty).tolist() == edges.tolist()
    two = np.array([-100.0, 0.0, 100.0])
    assert wasserstein_edges(two, np.array([0.5, 0.5, 0, 0, 0])).tolist() == two.tolist()
