"""Accuracy against actuals: predictions joined with the labels or values clients send later.

On the request path `Predictions.record` keeps what the metrics need of each answered request
(its predicted labels or values and its probabilities, copied out of the batch), keyed by
deployment and request id, the association id. Later the client posts actuals for those ids;
`Accuracy.add_actuals` validates the whole payload first, then joins each entry with its
prediction and adds its rows to the window the actual arrived in, for the version that made the
prediction. `Accuracy.metrics` merges windows; `Accuracy.stats` gives cumulative counters.

Rows: a request of N rows has one id. Its actual is one value when N == 1, or a list of N values
in row order (a one-row request takes a one-element list as well). Counts are of rows.

Windows: time is cut into windows of ``window_s`` seconds (``floor(t / window_s)``); a version
keeps its last ``horizon_windows``. Everything in a window merges by addition: confusion counts,
log-loss sums, error sums, lag histograms, and for AUC one histogram of the positive score per
actual class. Classification metrics come from the confusion counts of the merged windows:
binary (two classes) precision and recall are of the positive class; with more classes, or an
unknown label set, they are macro averages over the labels seen as actual or predicted. A
precision or recall whose denominator is zero counts as 0.0 (scikit-learn's ``zero_division=0``).

AUC approximation: positive scores are clipped to [0, 1] and counted in `AUC_BINS` equal bins;
a positive and a negative in the same bin count as a tie (1/2), as in the Mann-Whitney statistic.
The error is at most half the share of (positive, negative) pairs that share a bin, and far less
for scores spread over the range. Log-loss clips the probability of the actual class to
``[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]`` and does not renormalise rows. Rows whose score is NaN leave
AUC and log-loss out; regression rows whose predicted value is not finite leave RMSE and MAE out.

Ownership: the event loop owns all of it (no locks); nothing here awaits or starts a thread.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, NamedTuple

import numpy as np

from gateway.errors import InvalidInput
from gateway.protocol.types import ModelSignature, TensorMetadata

__all__ = [
    "AUC_BINS",
    "LOG_LOSS_EPS",
    "Accuracy",
    "AccuracyStats",
    "Prediction",
    "Predictions",
    "TaskSpec",
    "VersionCounters",
]

logger = logging.getLogger(__name__)

AUC_BINS = 1000
LOG_LOSS_EPS = 1e-15

_LABEL_TYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "BYTES"}
)
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})

# Lag histogram: bucket 0 is [0, 1/16 s); then four equal buckets per doubling up to 2**20 s
# (12 days), and one open bucket above. Lags span seconds to days, so relative width matters.
_LAG_BOUNDS_S: tuple[float, ...] = (
    0.0,
    *(2.0**exp * (4 + sub) / 4 for exp in range(-4, 20) for sub in range(4)),
    2.0**20,
)


# ---- what a model predicts ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    """What a model version predicts, so that its outputs can be scored against actuals.

    ``label_output`` is the predicted label (classification) or value (regression), shaped [N]
    or [N, 1]. ``score_output`` holds class probabilities, [N, classes] with column i the
    probability of ``classes[i]`` (``str(i)`` when classes is None), or [N] with the probability
    of ``positive``. ``positive`` names the positive class of a binary task (default
    ``classes[1]``). Labels compare as strings: integers in decimal, booleans as "0"/"1", BYTES
    as UTF-8. Raises ValueError for an inconsistent combination.
    """

    kind: Literal["classification", "regression"]
    label_output: str
    score_output: str | None = None
    classes: tuple[str, ...] | None = None
    positive: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "regression"):
            raise ValueError(f"kind must be 'classification' or 'regression', got {self.kind!r}")
        if not isinstance(self.label_output, str) or not self.label_output:
            raise ValueError("label_output must name an output")
        if self.kind == "regression":
            if (self.score_output, self.classes, self.positive) != (None, None, None):
                raise ValueError("a regression has no score_output, classes or positive")
            return
        if self.classes is not None:
            if not isinstance(self.classes, tuple) or not all(
                isinstance(c, str) for c in self.classes
            ):
                raise ValueError(f"classes must be a tuple of strings, got {self.classes!r}")
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be two or more distinct labels: {self.classes}")
        if self.positive is not None and (
            self.classes is None or len(self.classes) != 2 or self.positive not in self.classes
        ):
            raise ValueError(f"positive {self.positive!r} must be one of two known classes")

    def columns(self, width: int | None) -> tuple[str, ...] | None:
        """The label of each score column: ``classes``, else ``str(i)`` for a score of
        ``width`` columns (a 1-D score means two), else None (the label set is unknown)."""
        if self.classes is not None:
            return self.classes
        return None if width is None else tuple(str(i) for i in range(width))

    @classmethod
    def infer(
        cls,
        signature: ModelSignature,
        profile: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> TaskSpec | None:
        """The task of a version, or None when it cannot be told: `decide` without the reason."""
        return cls.decide(signature, profile, overrides)[0]

    @classmethod
    def decide(
        cls,
        signature: ModelSignature,
        profile: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> tuple[TaskSpec | None, str]:
        """The task of a version from its signature, its training-data profile and config
        overrides, with the reason: how it was decided, or why it could not be.

        Heuristics over the outputs (the first dimension is the batch):

        - an integer, BOOL or BYTES output [N] or [N, 1] is a classification label; two of
          them are ambiguous;
        - with a label, a float output [N, k >= 2] is its probabilities (two are ambiguous and
          none is used); a float [N] beside a label is not taken for a score (it may be a
          confidence), so a 1-D score must be named in the overrides;
        - without a label, a single float output [N] or [N, 1] is a regression value.

        Classes come from the overrides, else from the profile's categorical ``outputs`` entry
        of the label output (its ``categories``, in the order of the probability columns, as
        scikit-learn's sorted ``classes_`` are), else ``str(i)`` per probability column, else
        ("0", "1") for a BOOL label. Probabilities beside a BYTES label with no known classes
        are not used: their column order is unknown.

        ``overrides`` may set any TaskSpec field. ``kind`` together with ``label_output``
        replaces the heuristics; otherwise the given fields replace the guessed ones, and a
        ``kind`` the guess disagrees with needs ``label_output`` too. Raises ValueError when
        the overrides name an unknown field or output or contradict the signature; returns
        (None, reason) when the signature or profile leave the task open.
        """
        given = dict(overrides or {})
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(given) - known):
            raise ValueError(f"unknown task settings {unknown}; known: {sorted(known)}")
        outputs = {t.name: t for t in signature.outputs}
        for key in ("label_output", "score_output"):
            if given.get(key) is not None and given[key] not in outputs:
                raise ValueError(f"{key} {given[key]!r} is not an output of the model")
        if "classes" in given and given["classes"] is not None:
            given["classes"] = tuple(given["classes"])

        if "kind" in given and "label_output" in given:
            chosen, how = given, "from the config"
        else:
            guess, how = _guess(signature.outputs)
            if guess is None:
                return None, how
            if given.get("kind", guess["kind"]) != guess["kind"]:
                raise ValueError(
                    f"kind {given['kind']!r} disagrees with the signature ({how}): "
                    "name label_output too"
                )
            chosen = guess | given
        label = outputs[chosen["label_output"]]
        score = outputs.get(chosen.get("score_output") or "")
        if _per_row(label) not in ((), (1,)):
            raise ValueError(f"output '{label.name}' {list(label.shape)}: one value per row needed")
        if score is not None and ((row := _per_row(score)) is None or len(row) > 1):
            raise ValueError(f"output '{score.name}' {list(score.shape)}: [N] or [N, classes]")
        if chosen["kind"] == "regression":
            if label.datatype in ("BYTES", "BOOL"):
                raise ValueError(f"output '{label.name}' ({label.datatype}) holds no value")
            return cls(**chosen), how
        if label.datatype not in _LABEL_TYPES:
            raise ValueError(f"output '{label.name}' ({label.datatype}) holds no label")
        if score is not None and score.datatype not in _FLOAT_TYPES:
            raise ValueError(f"output '{score.name}' ({score.datatype}) holds no probabilities")
        return _with_classes(cls, chosen, outputs, profile, how)


def _per_row(tensor: TensorMetadata) -> tuple[int, ...] | None:
    """The shape of one row (the first dimension is the batch); None for a scalar output."""
    return tensor.shape[1:] if tensor.shape else None


def _guess(outputs: tuple[TensorMetadata, ...]) -> tuple[dict[str, Any] | None, str]:
    """The task fields the output types and shapes suggest, or None, and the reason."""
    labels = [t for t in outputs if t.datatype in _LABEL_TYPES and _per_row(t) in ((), (1,))]
    floats = [t for t in outputs if t.datatype in _FLOAT_TYPES]
    matrices = [t for t in floats if (row := _per_row(t)) and len(row) == 1 and row[0] >= 2]
    values = [t for t in floats if _per_row(t) in ((), (1,))]
    if len(labels) > 1:
        names = ", ".join(t.name for t in labels)
        return None, f"several outputs could be the label ({names}): name label_output"
    if labels:
        label = labels[0]
        score = matrices[0].name if len(matrices) == 1 else None
        how = f"classification: label '{label.name}' ({label.datatype})"
        how += f", probabilities '{score}'" if score else ", no probabilities"
        if len(matrices) > 1:
            how += f" ({len(matrices)} candidates: name score_output)"
        return {"kind": "classification", "label_output": label.name, "score_output": score}, how
    if len(values) == 1 and not matrices:
        value = values[0]
        return {"kind": "regression", "label_output": value.name}, (
            f"regression: value '{value.name}' ({value.datatype})"
        )
    return None, "no integer, boolean or string label output and no single float value output"


def _with_classes(
    cls: type[TaskSpec],
    chosen: Mapping[str, Any],
    outputs: Mapping[str, TensorMetadata],
    profile: Mapping[str, Any] | None,
    how: str,
) -> tuple[TaskSpec | None, str]:
    """Complete a classification's classes (see `TaskSpec.decide`) and check them."""
    spec = dict(chosen)
    label = outputs[spec["label_output"]]
    score = outputs.get(spec.get("score_output") or "")
    row = _per_row(score) if score is not None else None
    width = row[0] if row and row[0] >= 2 else None
    if spec.get("classes") is None:
        categories = _profile_categories(profile, label.name)
        if categories is not None:
            if width is not None and len(categories) != width:
                return None, (
                    f"the profile gives {len(categories)} classes for '{label.name}' but "
                    f"'{spec['score_output']}' has {width} columns"
                )
            spec["classes"], how = categories, how + ", classes from the profile"
        elif score is not None and label.datatype == "BYTES":
            spec["score_output"] = None
            how += " (ignored: string labels with no known column order; set classes)"
        elif width is not None:
            spec["classes"] = tuple(str(i) for i in range(width))
        elif label.datatype == "BOOL" or (score is not None and row in ((), (1,))):
            spec["classes"] = ("0", "1")
    elif width is not None and len(spec["classes"]) != width:
        raise ValueError(f"{len(spec['classes'])} classes for {width} probability columns")
    return cls(**spec), how


def _profile_categories(profile: Mapping[str, Any] | None, output: str) -> tuple[str, ...] | None:
    for entry in (profile or {}).get("outputs", ()):
        if entry.get("name") == output and entry.get("kind") == "categorical":
            return tuple(str(c) for c in entry["categories"])
    return None


# ---- recent predictions ------------------------------------------------------------------


class Prediction(NamedTuple):
    """What the metrics need of one answered request: copies, never views into a batch (a view
    would keep the whole batch's output alive). The arrays are dropped once joined.

    `Predictions` holds each as a plain tuple of strings, numbers and numpy arrays (the task by
    its index), which the garbage collector stops tracking after one pass (only exact tuples
    are untracked): 100,000 held predictions as objects made each full collection take 22 ms,
    a p99 spike under load."""

    version: str
    task_index: int
    time: float
    rows: int
    labels: np.ndarray | None  # the label_output rows: predicted labels or values
    scores: np.ndarray | None  # the score_output rows, if the task has one
    joined: bool = False


_TIME = Prediction._fields.index("time")

# deployment, version, task, rows, time of the prediction
PredictionObserver = Callable[[str, str, TaskSpec, int, float], None]
# Answers staged before they are kept together (`Predictions.record`).
STAGE_PREDICTIONS = 256


class Predictions:
    """Recent predictions keyed by (deployment, request id): the newest ``capacity``, none
    older than ``max_age_s``. A joined prediction stays (without its arrays) until it ages
    out, so that a second actual for it is reported as a duplicate.

    Answers are staged and kept together, up to STAGE_PREDICTIONS at a time and before
    anything reads (`flush`): the request path only appends a tuple, and the keeping (copies,
    the held table, the observer) runs in one loop where its code stays in the caches, which
    halves what keeping predictions costs a request. One thread (the event loop) calls
    every method."""

    def __init__(
        self,
        capacity: int = 100_000,
        max_age_s: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if capacity < 1 or not max_age_s > 0:
            raise ValueError(f"need capacity >= 1 and max_age_s > 0: {capacity}, {max_age_s}")
        # configuration
        self._capacity = capacity
        self._max_age_s = max_age_s
        self._clock = clock
        self._observer: PredictionObserver | None = None
        self._tasks: list[TaskSpec] = []  # Prediction.task_index -> task (few: one a version)
        self._task_indexes: dict[TaskSpec, int] = {}
        # the records, oldest first (an OrderedDict pops its oldest in O(1); a dict does not)
        # (deployment, request id) -> tuple(Prediction): untracked by the collector (above)
        self._held: OrderedDict[tuple[str, str], tuple[Any, ...]] = OrderedDict()
        # answers recorded and not kept yet: record's arguments and the time
        self._staged: list[tuple[str, str, str, TaskSpec, Mapping[str, np.ndarray], float]] = []

    def observe(self, observer: PredictionObserver) -> None:
        """Call ``observer`` for every prediction recorded from now on (one observer: the
        `Accuracy` built over these predictions counts them per window)."""
        self._observer = observer

    def record(
        self,
        request_id: str,
        deployment: str,
        version: str,
        task: TaskSpec,
        outputs: Mapping[str, np.ndarray],
    ) -> None:
        """Stage one answered request, kept with the next `flush`. ``outputs`` are the
        version's outputs before they are filtered to the ones the client asked for, by name;
        nothing may write to them until then (nothing does: backends hand out fresh arrays,
        the batcher slices of one, and no one writes an output once it is answered)."""
        staged = self._staged
        staged.append((request_id, deployment, version, task, outputs, self._clock()))
        if len(staged) >= STAGE_PREDICTIONS:
            self.flush()

    def flush(self) -> None:
        """Keep what is staged, in order: O(1) each in the number held, copying only the
        task's label and score outputs. An empty request id is counted as a prediction but
        not kept (nothing can join it); an id recorded again replaces the earlier prediction.
        An answer without the task's outputs is dropped (logged once per flush); the others
        are kept."""
        staged, self._staged = self._staged, []
        dropped: list[str] = []
        for request_id, deployment, version, task, outputs, at in staged:
            try:
                self._keep(request_id, deployment, version, task, outputs, at)
            except KeyError as missing:
                dropped.append(f"{deployment} version {version} without output {missing}")
        if dropped:
            logger.warning("answers not kept for actuals: %d (%s)", len(dropped), dropped[0])

    def _keep(
        self,
        request_id: str,
        deployment: str,
        version: str,
        task: TaskSpec,
        outputs: Mapping[str, np.ndarray],
        now: float,
    ) -> None:
        labels = outputs[task.label_output]
        rows = len(labels)
        score_output = task.score_output
        scores = None if score_output is None else outputs[score_output].copy()
        if self._observer is not None:
            self._observer(deployment, version, task, rows, now)
        if not request_id:
            return
        held = self._held
        key = (deployment, request_id)
        held.pop(key, None)  # a replaced prediction moves to the back of the age order
        index = self._task_indexes.get(task)
        if index is None:
            index = self._task_indexes[task] = len(self._tasks)
            self._tasks.append(task)
        held[key] = (version, index, now, rows, labels.copy(), scores, False)
        if len(held) > self._capacity:
            held.popitem(last=False)
        cutoff = now - self._max_age_s
        while next(iter(held.values()))[_TIME] <= cutoff:
            held.popitem(last=False)

    def find(self, deployment: str, request_id: str) -> Prediction | None:
        """The prediction of ``request_id`` if still held and not too old."""
        self.flush()
        found = self._held.get((deployment, request_id))
        if found is None or found[_TIME] <= self._clock() - self._max_age_s:
            return None
        return Prediction._make(found)

    def task_of(self, prediction: Prediction) -> TaskSpec:
        return self._tasks[prediction.task_index]

    def mark_joined(self, deployment: str, request_id: str) -> None:
        """Keep a joined prediction without its arrays (a second actual is a duplicate)."""
        key = (deployment, request_id)
        joined = Prediction._make(self._held[key])._replace(joined=True, labels=None, scores=None)
        self._held[key] = tuple(joined)

    def __len__(self) -> int:
        self.flush()
        return len(self._held)


# ---- windows -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    """One window of one version; every field adds up across windows."""

    predictions: int = 0  # rows predicted in this window
    predicted_joined: int = 0  # of those, rows whose actual has arrived since
    lags: list[int] = field(default_factory=lambda: [0] * len(_LAG_BOUNDS_S))  # rows by lag
    # the rest counts rows whose actual arrived in this window
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)  # (actual, predicted)
    log_loss_sum: float = 0.0
    log_loss_rows: int = 0
    auc_positive: np.ndarray | None = None  # AUC_BINS counts of the positive score, by class
    auc_negative: np.ndarray | None = None
    abs_error_sum: float = 0.0
    squared_error_sum: float = 0.0
    value_rows: int = 0

    def add(self, other: _Window) -> None:
        self.predictions += other.predictions
        self.predicted_joined += other.predicted_joined
        self.lags = [a + b for a, b in zip(self.lags, other.lags, strict=True)]
        self.confusion.update(other.confusion)
        self.log_loss_sum += other.log_loss_sum
        self.log_loss_rows += other.log_loss_rows
        if other.auc_positive is not None and other.auc_negative is not None:
            self._auc_histograms()
            self.auc_positive += other.auc_positive
            self.auc_negative += other.auc_negative
        self.abs_error_sum += other.abs_error_sum
        self.squared_error_sum += other.squared_error_sum
        self.value_rows += other.value_rows

    def _auc_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        if self.auc_positive is None or self.auc_negative is None:
            self.auc_positive = np.zeros(AUC_BINS, dtype=np.int64)
            self.auc_negative = np.zeros(AUC_BINS, dtype=np.int64)
        return self.auc_positive, self.auc_negative

    def add_classification(
        self,
        actual: list[str],
        predicted: list[str],
        true_p: np.ndarray | None = None,
        positive_score: np.ndarray | None = None,
        is_positive: np.ndarray | None = None,
    ) -> None:
        """Rows of a classification: ``true_p`` is the probability given to each actual class,
        ``positive_score`` the score of the positive class and ``is_positive`` whether the
        actual is that class (binary only)."""
        self.confusion.update(zip(actual, predicted, strict=True))
        if true_p is not None:
            finite = true_p[~np.isnan(true_p)]
            clipped = np.clip(finite, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
            self.log_loss_sum += float(-np.log(clipped).sum())
            self.log_loss_rows += int(finite.size)
        if positive_score is not None and is_positive is not None:
            scored = ~np.isnan(positive_score)
            bins = np.clip(positive_score[scored] * AUC_BINS, 0, AUC_BINS - 1).astype(np.intp)
            positives, negatives = self._auc_histograms()
            np.add.at(positives, bins[is_positive[scored]], 1)
            np.add.at(negatives, bins[~is_positive[scored]], 1)

    def add_regression(self, actual: np.ndarray, predicted: np.ndarray) -> None:
        finite = np.isfinite(predicted)
        error = predicted[finite] - actual[finite]
        self.abs_error_sum += float(np.abs(error).sum())
        self.squared_error_sum += float((error * error).sum())
        self.value_rows += int(error.size)


@dataclass(slots=True)
class VersionCounters:
    """Cumulative counters of one version, for Prometheus (they only ever grow)."""

    predictions: int = 0  # rows predicted
    joined: int = 0  # rows joined with an actual
    lag_sum_s: float = 0.0  # actual arrival - prediction time, summed over joined rows
    lag_count: int = 0


@dataclass(frozen=True, slots=True)
class AccuracyStats:
    """Cumulative counters: per (deployment, version), and per deployment the entries that
    were not applied (an unknown id has no version)."""

    versions: Mapping[tuple[str, str], VersionCounters]
    unknown_ids: Mapping[str, int]
    duplicate_ids: Mapping[str, int]


@dataclass(slots=True)
class _Version:
    """Windows and counters of one (deployment, version)."""

    task: TaskSpec
    counters: VersionCounters
    windows: dict[int, _Window] = field(default_factory=dict)
    score_width: int | None = None  # columns of the scores seen, when the classes are not given

    def window(self, index: int, horizon: int) -> _Window:
        found = self.windows.get(index)
        if found is None:
            found = self.windows[index] = _Window()
            cutoff = max(self.windows) - horizon
            for old in [i for i in self.windows if i <= cutoff]:
                del self.windows[old]
        return found


# ---- the join ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Values:
    """A regression's rows of one entry, as float64."""

    actual: np.ndarray
    predicted: np.ndarray


@dataclass(slots=True)
class _Labels:
    """A classification's rows of one entry."""

    actual: list[str]
    predicted: list[str]
    scores: np.ndarray | None  # as recorded, when they fit `columns`
    columns: tuple[str, ...] | None  # the label of each score column


@dataclass(slots=True)
class _Entry:
    """One validated entry of an actuals payload, with its rows ready to count when it is for
    a held prediction not yet joined."""

    request_id: str
    found: Prediction | None
    rows: _Values | _Labels | None = None
    task: TaskSpec | None = None  # the found prediction's


class Accuracy:
    """Windowed accuracy of every version, from actuals joined with `Predictions`.

    Registers itself as the observer of ``predictions`` to count predictions per window.
    """

    def __init__(
        self,
        predictions: Predictions,
        window_s: float = 3600.0,
        horizon_windows: int = 48,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not window_s > 0 or horizon_windows < 1:
            raise ValueError(
                f"need window_s > 0, horizon_windows >= 1: {window_s}, {horizon_windows}"
            )
        # configuration
        self._predictions = predictions
        self._window_s = window_s
        self._horizon = horizon_windows
        self._clock = clock
        # per (deployment, version), in the order first seen; per deployment, refused entries
        self._versions: dict[tuple[str, str], _Version] = {}
        self._unknown: Counter[str] = Counter()
        self._duplicates: Counter[str] = Counter()
        predictions.observe(self._count_prediction)

    def _version(
        self, deployment: str, version: str, task: TaskSpec, restart: bool = True
    ) -> _Version:
        """The state of a version. A prediction by a version reloaded with another task
        restarts its windows (its counters go on: Prometheus counters never go back)."""
        state = self._versions.get((deployment, version))
        if state is None:
            state = self._versions[(deployment, version)] = _Version(task, VersionCounters())
        elif restart and state.task is not task and state.task != task:
            state.task, state.windows, state.score_width = task, {}, None
        return state

    def _count_prediction(
        self, deployment: str, version: str, task: TaskSpec, rows: int, at: float
    ) -> None:
        state = self._version(deployment, version, task)
        state.counters.predictions += rows
        state.window(int(at // self._window_s), self._horizon).predictions += rows

    def add_actuals(self, deployment: str, entries: Any) -> dict[str, Any]:
        """Join a decoded JSON payload ``[{"id": request id, "actual": value}, ...]``.

        Every entry is checked before any is applied: a list of objects with exactly the keys
        "id" (a non-empty string) and "actual"; for a held prediction, an actual that fits its
        task and rows (labels as strings, integers or booleans, within the known classes; values
        as finite numbers); for an unknown id, any such value or list. Raises InvalidInput
        naming the first bad entry (index and id), with nothing applied.

        Returns ``{"joined": ids joined, "rows": rows joined, "unknown_ids": [...],
        "duplicate_ids": [...]}``: unknown when no prediction with that id is held for this
        deployment; duplicate when the id already has an actual or came earlier in the payload.
        Each refused entry is listed once, in payload order.
        """
        if not isinstance(entries, list):
            raise InvalidInput("actuals must be a JSON list of {'id': ..., 'actual': ...} objects")
        parsed = [self._check(deployment, index, entry) for index, entry in enumerate(entries)]
        now = self._clock()
        seen: set[str] = set()
        unknown: list[str] = []
        duplicates: list[str] = []
        joined = rows = 0
        # rows to add, grouped so that each window takes one vectorised add per score shape;
        # the key holds id(window), and the value the window itself, so the id stays unique
        pending: dict[tuple[Any, ...], tuple[_Window, TaskSpec, list[_Values | _Labels]]] = {}
        for entry in parsed:
            if entry.request_id in seen or (entry.found is not None and entry.found.joined):
                duplicates.append(entry.request_id)
            elif entry.found is None or entry.rows is None:
                unknown.append(entry.request_id)
            else:
                assert entry.task is not None  # set with the rows
                window = self._join(deployment, entry, entry.found, entry.task, now)
                joined += 1
                rows += entry.found.rows
                if window is not None:
                    key = (id(window), *_row_shape(entry.rows))
                    pending.setdefault(key, (window, entry.task, []))[2].append(entry.rows)
            seen.add(entry.request_id)
        for window, task, group in pending.values():
            _add_rows(window, task, group)
        self._unknown[deployment] += len(unknown)
        self._duplicates[deployment] += len(duplicates)
        return {"joined": joined, "rows": rows, "unknown_ids": unknown, "duplicate_ids": duplicates}

    def _check(self, deployment: str, index: int, entry: Any) -> _Entry:
        where = f"actuals[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "actual"}:
            raise InvalidInput(f"{where}: need an object with exactly the keys 'id' and 'actual'")
        request_id = entry["id"]
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInput(f"{where}: 'id' must be a non-empty string")
        found = self._predictions.find(deployment, request_id)
        try:
            if found is None or found.joined:
                _check_any(entry["actual"])
                return _Entry(request_id, found)
            task = self._predictions.task_of(found)
            return _parse(request_id, found, task, entry["actual"])
        except ValueError as error:
            raise InvalidInput(f"{where} (id '{request_id}'): {error}") from None

    def _join(
        self, deployment: str, entry: _Entry, found: Prediction, task: TaskSpec, now: float
    ) -> _Window | None:
        """Count a validated entry's join and lag, and return the window its rows go to (None
        when the version has since been reloaded with another task). It cannot fail."""
        rows = entry.rows
        state = self._version(deployment, found.version, task, restart=False)
        lag = max(0.0, now - found.time)
        counters = state.counters
        counters.joined += found.rows
        counters.lag_sum_s += lag * found.rows
        counters.lag_count += found.rows
        self._predictions.mark_joined(deployment, entry.request_id)
        if state.task is not task and state.task != task:
            return None  # predicted before the version was reloaded with another task
        window = state.window(int(now // self._window_s), self._horizon)
        window.lags[bisect.bisect_right(_LAG_BOUNDS_S, lag) - 1] += found.rows
        predicted_in = state.windows.get(int(found.time // self._window_s))
        if predicted_in is not None:
            predicted_in.predicted_joined += found.rows
        if isinstance(rows, _Labels) and rows.columns and not task.classes:
            state.score_width = len(rows.columns)
        return window

    def metrics(
        self, deployment: str, version: str | None = None, last_windows: int | None = None
    ) -> dict[str, Any]:
        """Metrics of each version of ``deployment`` (or just ``version``) over the last
        ``last_windows`` windows, the current one included (default: the whole horizon).

        Per version: ``version``, ``kind``, ``count`` (rows whose actuals arrived in the
        windows, that the metrics cover); classification: ``accuracy``, ``precision``,
        ``recall``, ``averaging`` ("binary" or "macro"), ``positive``, ``auc`` (binary with
        scores; None when a class is absent), ``log_loss`` (with scores); regression: ``rmse``,
        ``mae``; every metric None without rows. ``join``: ``predictions`` (rows predicted in
        the windows), ``joined`` (of those, rows that have an actual by now), ``join_rate``,
        ``lag_p50_s`` and ``lag_p99_s`` (over rows whose actuals arrived in the windows,
        interpolated inside quarter-octave buckets). InvalidInput for a ``last_windows`` out of
        1..horizon_windows.
        """
        last = self._horizon if last_windows is None else last_windows
        if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= self._horizon:
            raise InvalidInput(f"last_windows must be 1 to {self._horizon}, got {last_windows!r}")
        self._predictions.flush()  # the observer counts predictions as they are kept
        current = int(self._clock() // self._window_s)
        versions = []
        for (name, ver), state in self._versions.items():
            if name != deployment or (version is not None and ver != version):
                continue
            merged = _Window()
            for index, window in state.windows.items():
                if current - last < index <= current:
                    merged.add(window)
            versions.append({"version": ver, **_scores(state, merged), "join": _join_block(merged)})
        return {
            "deployment": deployment,
            "window_s": self._window_s,
            "windows": last,
            "versions": versions,
        }

    def stats(self) -> AccuracyStats:
        """Cumulative counters (copies) for Prometheus."""
        self._predictions.flush()
        return AccuracyStats(
            versions={key: replace(state.counters) for key, state in self._versions.items()},
            unknown_ids=dict(self._unknown),
            duplicate_ids=dict(self._duplicates),
        )


def _parse(request_id: str, found: Prediction, task: TaskSpec, actual: Any) -> _Entry:
    """An entry for a held prediction, with everything the join needs prepared; ValueError
    saying what of the actual does not fit the prediction."""
    assert found.labels is not None  # held until joined
    values = _rows(actual, found.rows)
    predicted = found.labels.reshape(-1)
    if task.kind == "regression":
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"a regression's actual must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"actual {value!r} is not finite")
        as_float = np.asarray(values, dtype=np.float64)
        return _Entry(request_id, found, _Values(as_float, predicted.astype(np.float64)), task)
    for value in values:
        if isinstance(value, float) or not isinstance(value, str | int):
            raise ValueError(f"a label must be a string, an integer or a boolean: {value!r}")
    labels = [_label(value) for value in values]
    scores = found.scores
    columns = task.columns(_score_width(scores))
    if columns is not None:
        for label in labels:
            if label not in columns:
                raise ValueError(f"label {label!r} is not one of the classes {list(columns)}")
    if scores is not None and (
        len(scores) != found.rows or len(columns or ()) != _score_width(scores)
    ):
        scores = None  # a config's classes that do not fit the model's columns
    predicted_labels = [_label(p) for p in predicted.tolist()]
    return _Entry(request_id, found, _Labels(labels, predicted_labels, scores, columns), task)


def _row_shape(rows: _Values | _Labels) -> tuple[tuple[str, ...] | None, tuple[int, ...] | None]:
    """What rows must share to be added together: score columns and the shape of a score row."""
    if isinstance(rows, _Values) or rows.scores is None:
        return None, None
    return rows.columns, rows.scores.shape[1:]


def _add_rows(window: _Window, task: TaskSpec, group: list[_Values | _Labels]) -> None:
    """Add the rows of joined entries of one version that share a `_row_shape`."""
    values = [rows for rows in group if isinstance(rows, _Values)]
    if values:
        actual = np.concatenate([rows.actual for rows in values])
        window.add_regression(actual, np.concatenate([rows.predicted for rows in values]))
        return
    labels = [rows for rows in group if isinstance(rows, _Labels)]
    actual_labels = [label for rows in labels for label in rows.actual]
    predicted = [label for rows in labels for label in rows.predicted]
    columns = labels[0].columns
    scored = [rows.scores for rows in labels if rows.scores is not None]
    if not scored or columns is None:
        window.add_classification(actual_labels, predicted)
        return
    scores = np.concatenate(scored).astype(np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores.reshape(-1)
    window.add_classification(
        actual_labels, predicted, *_scored(scores, columns, task, actual_labels)
    )


def _scored(
    scores: np.ndarray, columns: tuple[str, ...], task: TaskSpec, actual: list[str]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """For `_Window.add_classification`: the probability of each actual class and, for a
    binary task, the positive score and which actuals are positive. ``scores`` are float64,
    [rows] (a binary positive score) or [rows, columns]."""
    positive = _positive(task, columns) if len(columns) == 2 else None
    is_positive = None if positive is None else np.array([a == positive for a in actual])
    if scores.ndim == 1:
        assert is_positive is not None  # a 1-D score is binary
        return np.where(is_positive, scores, 1.0 - scores), scores, is_positive
    true_p = scores[np.arange(len(actual)), [columns.index(a) for a in actual]]
    if positive is None:
        return true_p, None, None
    return true_p, scores[:, columns.index(positive)], is_positive


def _rows(actual: Any, rows: int) -> list[Any]:
    """The actual as one value per row: a list of ``rows`` values, or one value for one row."""
    if isinstance(actual, list):
        if len(actual) != rows:
            raise ValueError(f"{len(actual)} actuals for a prediction of {rows} rows")
        return actual
    if rows != 1:
        raise ValueError(f"the prediction has {rows} rows: send a list of {rows} actuals")
    return [actual]


def _check_any(actual: Any) -> None:
    """An actual for no held prediction: a label or number, or a non-empty list of them."""
    values = actual if isinstance(actual, list) and actual else [actual]
    for value in values:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"actual {value!r} is not finite")
        if not isinstance(value, str | int | float):
            raise ValueError(f"an actual must be a label or a number, got {value!r}")


def _label(value: Any) -> str:
    """A predicted or actual label as a string (see `TaskSpec`). Never raises: the join runs
    after validation, where nothing may fail half-way."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _score_width(scores: np.ndarray | None) -> int | None:
    """Columns of a score array: two for a 1-D score (the positive class and the other)."""
    if scores is None:
        return None
    return 2 if scores.ndim == 1 or scores.shape[1] == 1 else int(scores.shape[1])


def _positive(task: TaskSpec, columns: tuple[str, ...]) -> str:
    return task.positive if task.positive is not None else columns[1]


def _scores(state: _Version, merged: _Window) -> dict[str, Any]:
    task = state.task
    if task.kind == "regression":
        n = merged.value_rows
        return {
            "kind": "regression",
            "count": n,
            "rmse": math.sqrt(merged.squared_error_sum / n) if n else None,
            "mae": merged.abs_error_sum / n if n else None,
        }
    columns = task.columns(state.score_width)
    binary = columns is not None and len(columns) == 2
    positive = _positive(task, columns) if binary and columns is not None else None
    confusion = merged.confusion
    count = sum(confusion.values())
    if positive is not None:
        precision, recall = _precision_recall(confusion, positive)
    else:
        labels = {label for pair in confusion for label in pair}
        pairs = [_precision_recall(confusion, label) for label in labels]
        precision = sum(p for p, _ in pairs) / len(pairs) if pairs else 0.0
        recall = sum(r for _, r in pairs) / len(pairs) if pairs else 0.0
    return {
        "kind": "classification",
        "count": count,
        "accuracy": sum(n for (a, p), n in confusion.items() if a == p) / count if count else None,
        "precision": precision if count else None,
        "recall": recall if count else None,
        "averaging": "binary" if binary else "macro",
        "positive": positive,
        "auc": _auc(merged.auc_positive, merged.auc_negative),
        "log_loss": merged.log_loss_sum / merged.log_loss_rows if merged.log_loss_rows else None,
    }


def _precision_recall(confusion: Counter[tuple[str, str]], label: str) -> tuple[float, float]:
    """Precision and recall of ``label``; 0.0 where the denominator is zero."""
    hit = confusion[(label, label)]
    predicted = sum(n for (_, p), n in confusion.items() if p == label)
    actual = sum(n for (a, _), n in confusion.items() if a == label)
    return (hit / predicted if predicted else 0.0, hit / actual if actual else 0.0)


def _auc(positives: np.ndarray | None, negatives: np.ndarray | None) -> float | None:
    """Mann-Whitney AUC from the two score histograms: P(positive > negative), a shared bin
    counting 1/2. None when either class is absent."""
    if positives is None or negatives is None:
        return None
    n_pos, n_neg = int(positives.sum()), int(negatives.sum())
    if n_pos == 0 or n_neg == 0:
        return None
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    wins = float((positives * below).sum()) + 0.5 * float((positives * negatives).sum())
    return wins / (n_pos * n_neg)


def _join_block(merged: _Window) -> dict[str, Any]:
    counts = np.asarray(merged.lags, dtype=np.int64)
    return {
        "predictions": merged.predictions,
        "joined": merged.predicted_joined,
        "join_rate": merged.predicted_joined / merged.predictions if merged.predictions else None,
        "lag_p50_s": _lag_quantile(counts, 0.50),
        "lag_p99_s": _lag_quantile(counts, 0.99),
    }


def _lag_quantile(counts: np.ndarray, q: float) -> float | None:
    """The q-quantile of lag bucket counts, linear inside its bucket; None with no rows.
    The open last bucket reports its lower edge."""
    total = int(counts.sum())
    if total == 0:
        return None
    rank = q * total
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, rank))
    lower = _LAG_BOUNDS_S[index]
    if index == len(_LAG_BOUNDS_S) - 1:
        return lower
    before = int(cumulative[index] - counts[index])
    return lower + (_LAG_BOUNDS_S[index + 1] - lower) * (rank - before) / int(counts[index])
