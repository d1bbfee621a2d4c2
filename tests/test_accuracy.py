"""Tests for accuracy against actuals (gateway.monitoring.accuracy).

Metrics are checked against references computed here by their definitions on seeded random
data: AUC by the rank-based Mann-Whitney statistic with ties averaged, log-loss by its formula,
precision and recall from explicit masks. Time comes from a fake clock; nothing sleeps.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import CREDIT_RISK

from gateway.errors import InvalidInput
from gateway.monitoring.accuracy import (
    LOG_LOSS_EPS,
    STAGE_PREDICTIONS,
    Accuracy,
    Predictions,
    TaskSpec,
)
from gateway.protocol.types import ModelSignature, TensorMetadata

HOUR = 3600.0
BINARY = TaskSpec("classification", "label", "probabilities", ("0", "1"))
LABELS = TaskSpec("classification", "label", None, ("0", "1"))  # no probabilities
REGRESSION = TaskSpec("regression", "value")


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    """Predictions and the Accuracy over them, on one fake clock."""

    clock: Clock
    predictions: Predictions
    accuracy: Accuracy


def rig(capacity: int = 100_000, horizon: int = 48) -> Rig:
    clock = Clock()
    predictions = Predictions(capacity=capacity, max_age_s=7 * 86400, clock=clock)
    return Rig(clock, predictions, Accuracy(predictions, HOUR, horizon, clock))


def signature(*outputs: tuple[str, str, tuple[int, ...]]) -> ModelSignature:
    return ModelSignature(
        "onnxruntime_onnx",
        (TensorMetadata("features", "FP32", (-1, 20)),),
        tuple(TensorMetadata(*output) for output in outputs),
    )


def record_rows(
    predictions: Predictions,
    task: TaskSpec,
    labels: np.ndarray,
    scores: np.ndarray | None = None,
    version: str = "1",
    prefix: str = "r",
) -> list[str]:
    """Record one single-row request per row; returns their ids."""
    ids = []
    for i in range(len(labels)):
        outputs = {task.label_output: labels[i : i + 1]}
        if scores is not None and task.score_output is not None:
            outputs[task.score_output] = scores[i : i + 1]
        ids.append(f"{prefix}{i}")
        predictions.record(ids[-1], "m", version, task, outputs)
    return ids


def state_of(g: Rig, ids: list[str]) -> str:
    """Everything a payload could change, as one comparable string."""
    held = [(p.joined, p.rows) if (p := g.predictions.find("m", i)) else None for i in ids]
    return json.dumps([g.accuracy.metrics("m"), repr(g.accuracy.stats()), held], sort_keys=True)


# ---- references ----------------------------------------------------------------------------


def rank_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos * n_neg) from ranks, tied scores sharing their mean rank."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(scores.size)
    ranks[order] = np.arange(1, scores.size + 1)
    _, inverse = np.unique(scores, return_inverse=True)
    mean_rank = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    ranks = mean_rank[inverse]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def log_loss(probabilities: np.ndarray, actual_column: np.ndarray) -> float:
    p = probabilities[np.arange(actual_column.size), actual_column].astype(np.float64)
    return float(-np.log(np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)).mean())


def binary_data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities [n, 2] (FP32, as models give them), predicted labels, actual labels that
    agree with the probabilities more often than not."""
    rng = np.random.default_rng(seed)
    p1 = rng.beta(2, 3, n).astype(np.float32)
    probabilities = np.stack([1 - p1, p1], axis=1)
    predicted = (p1 > 0.5).astype(np.int64)
    actual = (rng.random(n) < p1).astype(np.int64)
    return probabilities, predicted, actual


# ---- TaskSpec.infer ------------------------------------------------------------------------

CREDIT_RISK_SIGNATURE = signature(("label", "INT64", (-1,)), ("probabilities", "FP32", (-1, 2)))


def test_infer_credit_risk_is_binary_with_probabilities() -> None:
    task, reason = TaskSpec.decide(CREDIT_RISK_SIGNATURE)
    assert task == TaskSpec("classification", "label", "probabilities", ("0", "1"))
    assert "label 'label'" in reason and "probabilities 'probabilities'" in reason


def test_infer_takes_the_class_order_from_the_profile() -> None:
    profile = json.loads((CREDIT_RISK / "2" / "profile.json").read_text())
    task, reason = TaskSpec.decide(CREDIT_RISK_SIGNATURE, profile)
    assert task is not None and task.classes == ("0", "1") and "profile" in reason
    named = {"outputs": [{"name": "label", "kind": "categorical", "categories": ["no", "yes"]}]}
    task = TaskSpec.infer(CREDIT_RISK_SIGNATURE, named)
    assert task is not None and task.classes == ("no", "yes")
    three = {"outputs": [{"name": "label", "kind": "categorical", "categories": ["a", "b", "c"]}]}
    task, reason = TaskSpec.decide(CREDIT_RISK_SIGNATURE, three)
    assert task is None and "3 classes" in reason


@pytest.mark.parametrize("shape", [(-1,), (-1, 1)])
def test_infer_a_single_float_output_is_a_regression(shape: tuple[int, ...]) -> None:
    assert TaskSpec.infer(signature(("price", "FP32", shape))) == TaskSpec("regression", "price")


@pytest.mark.parametrize(
    ("outputs", "says"),
    [
        ((("a", "INT64", (-1,)), ("b", "INT32", (-1,))), "several outputs"),
        ((("x", "FP32", (-1,)), ("y", "FP64", (-1,))), "no single float"),
        ((("probabilities", "FP32", (-1, 3)),), "no integer"),
        ((("embedding", "FP32", (-1, 64)), ("score", "FP32", (-1,))), "no single float"),
    ],
)
def test_infer_returns_none_with_a_reason_when_ambiguous(
    outputs: tuple[tuple[str, str, tuple[int, ...]], ...], says: str
) -> None:
    task, reason = TaskSpec.decide(signature(*outputs))
    assert task is None and says in reason
    assert TaskSpec.infer(signature(*outputs)) is None


def test_infer_other_label_types() -> None:
    flag = TaskSpec.infer(signature(("fraud", "BOOL", (-1,))))
    assert flag == TaskSpec("classification", "fraud", None, ("0", "1"))
    # string labels: the probability columns' order is unknown without classes
    task, reason = TaskSpec.decide(
        signature(("label", "BYTES", (-1,)), ("probabilities", "FP32", (-1, 3)))
    )
    assert task == TaskSpec("classification", "label") and "ignored" in reason


def test_overrides() -> None:
    sig = signature(("a", "INT64", (-1,)), ("b", "INT32", (-1,)), ("p", "FP32", (-1,)))
    chosen = TaskSpec.infer(sig, overrides={"kind": "classification", "label_output": "b"})
    assert chosen == TaskSpec("classification", "b")
    scored = TaskSpec.infer(
        sig, overrides={"kind": "classification", "label_output": "a", "score_output": "p"}
    )
    assert scored == TaskSpec("classification", "a", "p", ("0", "1"))
    positive = TaskSpec.infer(CREDIT_RISK_SIGNATURE, overrides={"positive": "0"})
    assert positive is not None and positive.positive == "0"
    counted = TaskSpec.infer(sig, overrides={"kind": "regression", "label_output": "a"})
    assert counted == TaskSpec("regression", "a")


OVERRIDABLE = signature(
    ("label", "INT64", (-1,)),
    ("probabilities", "FP32", (-1, 2)),
    ("value", "FP32", (-1,)),
    ("cube", "FP32", (-1, 2, 2)),
)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"labels": "label"}, "unknown task settings"),
        ({"label_output": "nope"}, "not an output"),
        ({"kind": "regression"}, "name label_output too"),
        ({"kind": "classification", "label_output": "value"}, "holds no label"),
        ({"kind": "regression", "label_output": "label", "classes": ["0", "1"]}, "no score_output"),
        ({"classes": ["a", "b", "c"]}, "3 classes for 2 probability columns"),
        ({"positive": "2"}, "one of two known classes"),
        ({"score_output": "label"}, "holds no probabilities"),
        ({"kind": "classification", "label_output": "probabilities"}, "one value per row"),
        ({"kind": "regression", "label_output": "cube"}, "one value per row"),
        ({"score_output": "cube"}, "[N] or [N, classes]"),
    ],
)
def test_overrides_that_contradict_the_signature_raise(
    overrides: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValueError) as raised:
        TaskSpec.infer(OVERRIDABLE, overrides=overrides)
    assert says in str(raised.value)


# ---- metrics against references ------------------------------------------------------------


def test_binary_metrics_match_references() -> None:
    g = rig()
    probabilities, predicted, actual = binary_data(seed=1, n=3000)
    ids = record_rows(g.predictions, BINARY, predicted, probabilities)
    g.clock.now += 60
    result = g.accuracy.add_actuals(
        "m", [{"id": i, "actual": int(a)} for i, a in zip(ids, actual, strict=True)]
    )
    assert result == {"joined": 3000, "rows": 3000, "unknown_ids": [], "duplicate_ids": []}
    [got] = g.accuracy.metrics("m")["versions"]
    tp = int(((predicted == 1) & (actual == 1)).sum())
    assert got["kind"] == "classification" and got["averaging"] == "binary"
    assert got["count"] == 3000 and got["positive"] == "1"
    assert got["accuracy"] == pytest.approx((predicted == actual).mean(), abs=1e-12)
    assert got["precision"] == pytest.approx(tp / (predicted == 1).sum(), abs=1e-12)
    assert got["recall"] == pytest.approx(tp / (actual == 1).sum(), abs=1e-12)
    assert got["log_loss"] == pytest.approx(log_loss(probabilities, actual), abs=1e-9)
    exact = rank_auc(probabilities[:, 1].astype(np.float64), actual == 1)
    assert abs(got["auc"] - exact) < 1e-3


def test_auc_of_tied_scores_is_exact() -> None:
    # scores on a 0.01 grid: every tie shares a bin and distinct scores never do
    g = rig()
    rng = np.random.default_rng(2)
    p1 = np.round(rng.random(2000), 2)
    actual = (rng.random(2000) < p1).astype(np.int64)
    scores = np.stack([1 - p1, p1], axis=1)
    ids = record_rows(g.predictions, BINARY, (p1 > 0.5).astype(np.int64), scores)
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": int(a)} for i, a in zip(ids, actual, strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["auc"] == pytest.approx(rank_auc(p1, actual == 1), abs=1e-12)


def test_positive_class_and_string_labels() -> None:
    g = rig()
    task = TaskSpec("classification", "label", "probabilities", ("bad", "good"), positive="bad")
    probabilities, predicted, actual = binary_data(seed=3, n=500)
    names = np.array([b"bad", b"good"], dtype=object)
    ids = record_rows(g.predictions, task, names[predicted], probabilities)
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": ["bad", "good"][a]} for i, a in zip(ids, actual, strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    hits = int(((predicted == 0) & (actual == 0)).sum())
    assert got["positive"] == "bad"
    assert got["precision"] == pytest.approx(hits / (predicted == 0).sum())
    assert got["recall"] == pytest.approx(hits / (actual == 0).sum())
    assert abs(got["auc"] - rank_auc(probabilities[:, 0].astype(np.float64), actual == 0)) < 1e-3


def test_multiclass_metrics_are_macro_averages() -> None:
    g = rig()
    rng = np.random.default_rng(4)
    task = TaskSpec("classification", "label", "probabilities", ("0", "1", "2"))
    probabilities = rng.dirichlet([1, 1, 1], 1500).astype(np.float32)
    predicted = probabilities.argmax(axis=1)
    actual = np.array([rng.choice(3, p=p / p.sum()) for p in probabilities.astype(np.float64)])
    ids = record_rows(g.predictions, task, predicted, probabilities)
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": int(a)} for i, a in zip(ids, actual, strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    precisions = [
        ((predicted == c) & (actual == c)).sum() / (predicted == c).sum() for c in range(3)
    ]
    recalls = [((predicted == c) & (actual == c)).sum() / (actual == c).sum() for c in range(3)]
    assert got["averaging"] == "macro" and got["positive"] is None and got["auc"] is None
    assert got["accuracy"] == pytest.approx((predicted == actual).mean())
    assert got["precision"] == pytest.approx(np.mean(precisions))
    assert got["recall"] == pytest.approx(np.mean(recalls))
    assert got["log_loss"] == pytest.approx(log_loss(probabilities, actual), abs=1e-9)


def test_label_only_model_without_classes_is_macro_over_labels_seen() -> None:
    g = rig()
    task = TaskSpec("classification", "label")
    ids = record_rows(g.predictions, task, np.array([7, 7, 9, 9]))
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": a} for i, a in zip(ids, [7, 9, 9, 11], strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    # labels 7, 9, 11: precision (1/2 + 1/2 + 0) / 3, recall (1 + 1/2 + 0) / 3
    assert got["accuracy"] == 0.5 and got["log_loss"] is None and got["auc"] is None
    assert got["precision"] == pytest.approx(1 / 3) and got["recall"] == pytest.approx(0.5)


def test_one_dimensional_positive_score() -> None:
    g = rig()
    task = TaskSpec("classification", "label", "p_fraud", ("0", "1"))
    probabilities, predicted, actual = binary_data(seed=5, n=800)
    ids = record_rows(g.predictions, task, predicted, probabilities[:, 1])
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": bool(a)} for i, a in zip(ids, actual, strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["log_loss"] == pytest.approx(log_loss(probabilities, actual), abs=1e-9)
    assert abs(got["auc"] - rank_auc(probabilities[:, 1].astype(np.float64), actual == 1)) < 1e-3


def test_regression_metrics_match_references() -> None:
    g = rig()
    rng = np.random.default_rng(6)
    predicted = rng.normal(100, 20, (1000, 1)).astype(np.float32)
    actual = predicted[:, 0].astype(np.float64) + rng.normal(0, 5, 1000)
    predicted[17, 0] = np.nan  # a non-finite prediction leaves the errors out
    ids = record_rows(g.predictions, REGRESSION, predicted)
    g.accuracy.add_actuals(
        "m", [{"id": i, "actual": float(a)} for i, a in zip(ids, actual, strict=True)]
    )
    [got] = g.accuracy.metrics("m")["versions"]
    error = np.delete(predicted[:, 0].astype(np.float64) - actual, 17)
    assert got["kind"] == "regression" and got["count"] == 999
    assert got["rmse"] == pytest.approx(math.sqrt((error**2).mean()), rel=1e-12)
    assert got["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-12)
    assert got["join"]["joined"] == 1000


def test_multi_row_requests_take_a_list_per_id() -> None:
    g = rig()
    probabilities, predicted, actual = binary_data(seed=7, n=6)
    outputs = {"label": predicted, "probabilities": probabilities}
    g.predictions.record("batch", "m", "1", BINARY, outputs)
    g.predictions.record(
        "one", "m", "1", BINARY, {"label": predicted[:1], "probabilities": probabilities[:1]}
    )
    result = g.accuracy.add_actuals(
        "m", [{"id": "batch", "actual": actual.tolist()}, {"id": "one", "actual": [int(actual[0])]}]
    )
    assert result["joined"] == 2 and result["rows"] == 7
    [got] = g.accuracy.metrics("m")["versions"]
    both = np.concatenate([predicted, predicted[:1]]) == np.concatenate([actual, actual[:1]])
    assert got["count"] == 7 and got["accuracy"] == pytest.approx(both.mean())


def test_record_keeps_a_copy_not_a_view_of_the_batch() -> None:
    g = rig()
    batch = np.array([1, 1, 1, 1])
    scores = np.array([[0.2, 0.8]] * 4, dtype=np.float32)
    g.predictions.record("a", "m", "1", BINARY, {"label": batch[1:2], "probabilities": scores[1:2]})
    g.predictions.flush()  # kept: from now on the batch may go
    batch[:] = 0
    scores[:] = 0.5
    g.accuracy.add_actuals("m", [{"id": "a", "actual": 1}])
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["accuracy"] == 1.0 and got["log_loss"] == pytest.approx(-math.log(np.float32(0.8)))


# ---- windows -------------------------------------------------------------------------------


def test_windows_merge_and_expire_past_the_horizon() -> None:
    g = rig(horizon=3)
    g.clock.now = 100 * HOUR  # the start of a window
    ids = record_rows(g.predictions, REGRESSION, np.arange(4, dtype=np.float32))
    # predicted 0, 1, 2, 3 with actual -1: errors 1, 2, 3, 4, one per window 100..103
    for hour, request_id in enumerate(ids):
        g.clock.now = (100 + hour) * HOUR + 10
        g.accuracy.add_actuals("m", [{"id": request_id, "actual": -1.0}])

    def mae(last: int | None = None) -> tuple[float, int]:
        [got] = g.accuracy.metrics("m", last_windows=last)["versions"]
        return got["mae"], got["count"]

    # now in window 103: the horizon keeps 101..103, so the first error (1) is gone
    assert mae() == (3.0, 3)
    assert mae(1) == (4.0, 1)
    assert mae(2) == (3.5, 2)
    g.clock.now += 5 * HOUR
    [gone] = g.accuracy.metrics("m")["versions"]
    assert gone["count"] == 0 and gone["mae"] is None and gone["join"]["lag_p50_s"] is None


def test_join_block_counts_predictions_by_their_window() -> None:
    g = rig()
    g.clock.now = 10 * HOUR
    early = record_rows(g.predictions, LABELS, np.array([1, 0, 1, 1]), prefix="early")
    g.clock.now = 11 * HOUR
    record_rows(g.predictions, LABELS, np.array([0, 0]), prefix="late")
    g.clock.now = 11 * HOUR + 90
    g.accuracy.add_actuals("m", [{"id": i, "actual": 1} for i in early[:3]])
    [both] = g.accuracy.metrics("m")["versions"]
    assert both["join"]["predictions"] == 6 and both["join"]["joined"] == 3
    assert both["join"]["join_rate"] == pytest.approx(0.5)
    # lag 3690 s for the three rows: inside its quarter-octave bucket [3584, 4096)
    assert 3584 <= both["join"]["lag_p50_s"] < 4096
    [latest] = g.accuracy.metrics("m", last_windows=1)["versions"]
    # the window of 11 h holds the late g.predictions (none joined) and the actuals' metrics
    assert latest["join"]["predictions"] == 2 and latest["join"]["join_rate"] == 0.0
    assert latest["count"] == 3 and latest["accuracy"] == pytest.approx(2 / 3)


def test_lag_percentiles_follow_the_lags() -> None:
    g = rig()
    rng = np.random.default_rng(8)
    lags = np.sort(rng.exponential(600.0, 400))  # sorted: the clock only moves forward
    start = g.clock.now
    ids = record_rows(g.predictions, REGRESSION, np.zeros(lags.size, np.float32))
    for request_id, lag in zip(ids, lags, strict=True):
        g.clock.now = start + lag
        g.accuracy.add_actuals("m", [{"id": request_id, "actual": 0.0}])
    join = g.accuracy.metrics("m")["versions"][0]["join"]
    # quarter-octave buckets: within 25 % of the true quantile
    assert join["lag_p50_s"] == pytest.approx(np.quantile(lags, 0.5), rel=0.25)
    assert join["lag_p99_s"] == pytest.approx(np.quantile(lags, 0.99), rel=0.25)
    stats = g.accuracy.stats().versions[("m", "1")]
    assert stats.lag_count == 400 and stats.lag_sum_s == pytest.approx(lags.sum())


def test_versions_are_kept_apart() -> None:
    g = rig()
    one = record_rows(g.predictions, LABELS, np.array([1, 1]), version="1", prefix="a")
    two = record_rows(g.predictions, LABELS, np.array([0, 0]), version="2", prefix="b")
    g.accuracy.add_actuals("m", [{"id": i, "actual": 1} for i in one + two])
    got = {v["version"]: v["accuracy"] for v in g.accuracy.metrics("m")["versions"]}
    assert got == {"1": 1.0, "2": 0.0}
    assert [v["version"] for v in g.accuracy.metrics("m", version="2")["versions"]] == ["2"]
    assert g.accuracy.metrics("other")["versions"] == []


def test_a_version_reloaded_with_another_task_restarts_its_windows() -> None:
    g = rig()
    [old] = record_rows(g.predictions, LABELS, np.array([1]), prefix="old")
    record_rows(g.predictions, REGRESSION, np.array([2.0], np.float32), prefix="new")
    result = g.accuracy.add_actuals("m", [{"id": old, "actual": 1}, {"id": "new0", "actual": 2.5}])
    assert result["joined"] == 2
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["kind"] == "regression" and got["count"] == 1 and got["mae"] == 0.5
    assert g.accuracy.stats().versions[("m", "1")].joined == 2


@pytest.mark.parametrize("last", [0, 49, -1, 1.5, True])
def test_last_windows_out_of_range_is_invalid_input(last: Any) -> None:
    with pytest.raises(InvalidInput, match="last_windows"):
        rig().accuracy.metrics("m", last_windows=last)


# ---- Predictions' bounds -------------------------------------------------------------------


def test_capacity_evicts_the_oldest() -> None:
    g = rig(capacity=3)
    ids = record_rows(g.predictions, LABELS, np.array([1, 1, 1, 1, 1]))
    assert len(g.predictions) == 3
    assert [g.predictions.find("m", i) is not None for i in ids] == [False, False, True, True, True]
    result = g.accuracy.add_actuals("m", [{"id": i, "actual": 1} for i in ids])
    assert result["unknown_ids"] == ids[:2] and result["joined"] == 3
    # evicted g.predictions still count as g.predictions: the join rate shows them unjoined
    assert g.accuracy.metrics("m")["versions"][0]["join"]["join_rate"] == pytest.approx(3 / 5)


def test_a_replaced_id_moves_to_the_back() -> None:
    g = rig(capacity=2)
    record_rows(g.predictions, LABELS, np.array([1, 1]))  # r0, r1
    g.predictions.record("r0", "m", "1", LABELS, {"label": np.array([0])})
    g.predictions.record("r2", "m", "1", LABELS, {"label": np.array([0])})  # evicts r1
    assert g.predictions.find("m", "r1") is None
    g.accuracy.add_actuals("m", [{"id": "r0", "actual": 0}])
    assert g.accuracy.metrics("m")["versions"][0]["accuracy"] == 1.0  # the later prediction


def test_age_bound() -> None:
    g = rig()
    record_rows(g.predictions, LABELS, np.array([1]), prefix="old")
    g.clock.now += 7 * 86400 - 1
    record_rows(g.predictions, LABELS, np.array([1]), prefix="young")
    assert g.predictions.find("m", "old0") is not None
    g.clock.now += 1
    assert g.predictions.find("m", "old0") is None  # too old, though not yet evicted
    assert len(g.predictions) == 2
    record_rows(g.predictions, LABELS, np.array([1]), prefix="new")
    assert len(g.predictions) == 2  # recording evicts the expired
    result = g.accuracy.add_actuals(
        "m", [{"id": "old0", "actual": 1}, {"id": "young0", "actual": 1}]
    )
    assert result["unknown_ids"] == ["old0"] and result["joined"] == 1


def test_staged_answers_are_kept_in_order_before_any_read() -> None:
    """Answers are staged and kept together: past several stage lengths the newest `capacity`
    are held, every one is counted, and a read sees the ones still staged."""
    g = rig(capacity=STAGE_PREDICTIONS + 10)
    count = 3 * STAGE_PREDICTIONS + 7
    ids = record_rows(g.predictions, LABELS, np.ones(count, dtype=np.int64))
    assert g.accuracy.stats().versions[("m", "1")].predictions == count
    assert len(g.predictions) == STAGE_PREDICTIONS + 10
    assert g.predictions.find("m", ids[-STAGE_PREDICTIONS - 11]) is None
    assert g.predictions.find("m", ids[-STAGE_PREDICTIONS - 10]) is not None
    g.predictions.record("late", "m", "1", LABELS, {"label": np.array([1])})  # staged only
    assert g.accuracy.add_actuals("m", [{"id": "late", "actual": 1}])["joined"] == 1
    g.predictions.record("later", "m", "1", LABELS, {"label": np.array([0])})
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["join"]["predictions"] == count + 2


def test_an_answer_without_the_tasks_output_is_dropped_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = rig()
    g.predictions.record("a", "m", "1", LABELS, {"label": np.array([1])})
    g.predictions.record("b", "m", "1", LABELS, {"other": np.array([1])})
    g.predictions.record("c", "m", "1", LABELS, {"label": np.array([0])})
    with caplog.at_level(logging.WARNING, logger="gateway.monitoring.accuracy"):
        assert len(g.predictions) == 2
    assert g.predictions.find("m", "b") is None and g.predictions.find("m", "c") is not None
    [warning] = [r for r in caplog.records if "not kept for actuals" in r.message]
    assert "actuals: 1 (m version 1 without output 'label')" in warning.message


def test_an_empty_id_counts_as_a_prediction_but_is_not_held() -> None:
    g = rig()
    g.predictions.record("", "m", "1", LABELS, {"label": np.array([1, 0])})
    assert len(g.predictions) == 0
    assert g.accuracy.stats().versions[("m", "1")].predictions == 2


def test_ids_are_per_deployment() -> None:
    g = rig()
    g.predictions.record("same", "a", "1", LABELS, {"label": np.array([1])})
    g.predictions.record("same", "b", "1", LABELS, {"label": np.array([0])})
    assert g.accuracy.add_actuals("a", [{"id": "same", "actual": 1}])["joined"] == 1
    assert g.accuracy.add_actuals("b", [{"id": "same", "actual": 1}])["joined"] == 1
    assert g.accuracy.add_actuals("c", [{"id": "same", "actual": 1}])["unknown_ids"] == ["same"]


@pytest.mark.parametrize(("capacity", "max_age_s"), [(0, 1.0), (1, 0.0)])
def test_bounds_must_be_positive(capacity: int, max_age_s: float) -> None:
    with pytest.raises(ValueError):
        Predictions(capacity, max_age_s)


# ---- unknown and duplicate ids -------------------------------------------------------------


def test_unknown_and_duplicate_ids_are_reported_and_counted() -> None:
    g = rig()
    ids = record_rows(g.predictions, LABELS, np.array([1, 0, 1]))
    first = g.accuracy.add_actuals(
        "m",
        [
            {"id": "r0", "actual": 1},
            {"id": "nope", "actual": 1},
            {"id": "r0", "actual": 0},  # again within the payload
            {"id": "nope", "actual": 1},
            {"id": "r1", "actual": 0},
        ],
    )
    assert first == {
        "joined": 2,
        "rows": 2,
        "unknown_ids": ["nope"],
        "duplicate_ids": ["r0", "nope"],
    }
    second = g.accuracy.add_actuals("m", [{"id": "r1", "actual": 1}, {"id": "r2", "actual": 1}])
    assert second == {"joined": 1, "rows": 1, "unknown_ids": [], "duplicate_ids": ["r1"]}
    [got] = g.accuracy.metrics("m")["versions"]
    assert got["count"] == 3 and got["accuracy"] == 1.0  # the first actual of each id counted
    stats = g.accuracy.stats()
    assert stats.unknown_ids == {"m": 1} and stats.duplicate_ids == {"m": 3}
    assert stats.versions[("m", "1")].joined == 3
    assert g.accuracy.add_actuals("m", []) == {
        "joined": 0,
        "rows": 0,
        "unknown_ids": [],
        "duplicate_ids": [],
    }
    assert ids == ["r0", "r1", "r2"]


# ---- malformed payloads --------------------------------------------------------------------

GOOD = {"id": "c0", "actual": 1}


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("c1", "exactly the keys"),
        ({"id": "c1"}, "exactly the keys"),
        ({"id": "c1", "actual": 1, "extra": 2}, "exactly the keys"),
        ({"id": "", "actual": 1}, "non-empty string"),
        ({"id": 5, "actual": 1}, "non-empty string"),
        ({"id": "c1", "actual": 1.0}, "id 'c1'): a label"),
        ({"id": "c1", "actual": None}, "id 'c1'): a label"),
        ({"id": "c1", "actual": 2}, "not one of the classes"),
        ({"id": "c1", "actual": "yes"}, "not one of the classes"),
        ({"id": "c1", "actual": [1, 0]}, "2 actuals for a prediction of 1 rows"),
        ({"id": "batch", "actual": 1}, "send a list of 3"),
        ({"id": "batch", "actual": [1, 0]}, "2 actuals"),
        ({"id": "value", "actual": "3"}, "must be a number"),
        ({"id": "value", "actual": True}, "must be a number"),
        ({"id": "value", "actual": float("nan")}, "not finite"),
        ({"id": "unknown", "actual": {"a": 1}}, "a label or a number"),
        ({"id": "unknown", "actual": float("inf")}, "not finite"),
        ({"id": "unknown", "actual": [[1]]}, "a label or a number"),
    ],
)
def test_a_malformed_entry_names_itself_and_applies_nothing(bad: Any, says: str) -> None:
    g = rig()
    ids = record_rows(g.predictions, LABELS, np.array([1, 0]), prefix="c")
    g.predictions.record("batch", "m", "1", LABELS, {"label": np.array([1, 0, 1])})
    g.predictions.record("value", "m", "2", REGRESSION, {"value": np.array([1.5], np.float32)})
    g.accuracy.add_actuals("m", [{"id": "c1", "actual": 0}])  # so "before" has something in it
    g.predictions.record("c1", "m", "1", LABELS, {"label": np.array([0])})  # held again, unjoined
    every = [*ids, "batch", "value"]
    before = state_of(g, every)
    payload = [GOOD, copy.deepcopy(bad), {"id": "value", "actual": 2.0}]
    with pytest.raises(InvalidInput) as raised:
        g.accuracy.add_actuals("m", payload)
    assert raised.value.message.startswith("actuals[1]")
    assert says in raised.value.message
    assert state_of(g, every) == before


@pytest.mark.parametrize("payload", [{"id": "c0", "actual": 1}, "[]", None])
def test_a_payload_that_is_not_a_list_is_invalid(payload: Any) -> None:
    g = rig()
    with pytest.raises(InvalidInput, match="JSON list"):
        g.accuracy.add_actuals("m", payload)


def test_an_actual_for_a_joined_id_is_checked_loosely_and_reported_as_duplicate() -> None:
    g = rig()
    record_rows(g.predictions, LABELS, np.array([1]))
    g.accuracy.add_actuals("m", [{"id": "r0", "actual": 1}])
    # the prediction's arrays are gone once joined; the entry is a duplicate, not an error
    assert g.accuracy.add_actuals("m", [{"id": "r0", "actual": "7"}])["duplicate_ids"] == ["r0"]


def test_accuracy_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        Accuracy(Predictions(), window_s=0)
    with pytest.raises(ValueError):
        Accuracy(Predictions(), horizon_windows=0)
    with pytest.raises(ValueError):
        TaskSpec("regression", "value", classes=("0", "1"))
    with pytest.raises(ValueError):
        TaskSpec("classification", "label", classes=("0", "0"))
    with pytest.raises(ValueError):
        TaskSpec("classification", "label", classes=("0", "1", "2"), positive="1")
