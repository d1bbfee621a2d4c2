"""`modelgate bench drift`: how well the drift sketches detect drift, and what they cost.

Quality. The reference is a profile of `reference_rows` rows of the example's credit-risk data
(`make_credit_data` in examples/credit_data.py, 20 features; `categorical` profiled as
categories). Fresh rows of the same generator (other seeds) stream through a DriftMonitor at
`rows_per_window` rows per window of the default length, each window judged alone:

- false alarms: `clean_windows` windows of unshifted rows; the share of windows in which any
  feature is in alert, of feature-windows in alert, and of windows whose overall status is alert;
- detection: from one window on, `feature` shifted by 0.1, 0.25, 0.5 and 1 reference std, or the
  category shares of `categorical` changed (`CATEGORY_CHANGE`); the rows until the first window
  in which that feature is in alert, and the measures that breached (none within `max_windows`
  windows: not detected);
- agreement: in each case's first shifted window, the sketch's measures against the same
  statistics computed in batch on the raw rows with SciPy (PSI from rel_entr and JS from
  jensenshannon on the same bins: equal; KS from ks_2samp and Wasserstein from
  wasserstein_distance on the raw values: estimates of those).

Cost: the sketch kernel's rows/s on one core for 20 and 200 numeric features, and the µs one
DriftMonitor.update takes for batches of 1 and 64 rows of the credit-risk example model
(20 features and 2 outputs, profile examples/models/credit_risk/1/profile.json).

This module is also its own thin CLI (`add_parser`, `main`), registered in bench/cli.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from gateway.kernels.divergence import PSI_EPSILON
from gateway.kernels.sketch import count_rows
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import ks_2samp, wasserstein_distance

from gateway.monitoring.drift import DriftConfig, DriftMonitor
from gateway.monitoring.drift_layout import build_layout
from gateway.monitoring.drift_scores import ALERT
from gateway.monitoring.profile import bin_counts, build_profile, load_profile
from gateway.protocol.types import ModelSignature, TensorMetadata

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DATA_GENERATOR = EXAMPLES / "credit_data.py"
EXAMPLE_VERSION = EXAMPLES / "models" / "credit_risk" / "1"
# loan terms 12..60 months as make_credit_data draws them, and the changed shares: 10 points
# move from 36 to 60 months
LOAN_TERMS = (12.0, 24.0, 36.0, 48.0, 60.0)
CATEGORY_CHANGE = (0.1, 0.2, 0.25, 0.15, 0.3)
UPDATE_BATCH_ROWS = 64  # rows per DriftMonitor.update while streaming
COST_REPEATS = 5


class DriftBenchError(Exception):
    """The bench cannot run as configured; the message says why."""


@dataclass(frozen=True)
class DriftBenchConfig:
    rows_per_window: tuple[int, ...] = (1_000, 10_000)
    shifts: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # in reference std
    feature: str = "credit_score"
    categorical: str = "loan_term_months"
    reference_rows: int = 16_000
    clean_windows: int = 100
    max_windows: int = 20
    cost_rows: int = 200_000  # rows per kernel timing (20 features; a tenth for 200)
    update_calls: int = 20_000  # DriftMonitor.update calls per timing
    seed: int = 0


@dataclass(frozen=True)
class Detection:
    case: str
    rows_per_window: int
    rows_until_detection: int | None  # None: not detected within max_windows
    breaches: tuple[str, ...]
    # the first shifted window: the sketch's measures and the batch ones on the raw rows
    agreement: dict[str, float | None]


@dataclass(frozen=True)
class FalseAlarms:
    rows_per_window: int
    windows: int
    any_feature_alert: float
    feature_alert: float
    overall_alert: float


@dataclass(frozen=True)
class Cost:
    what: str
    value: float
    unit: str


@dataclass(frozen=True)
class DriftBenchResult:
    config: DriftBenchConfig
    false_alarms: list[FalseAlarms]
    detections: list[Detection]
    costs: list[Cost]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_drift_bench(
    config: DriftBenchConfig, say: Callable[[str], None] = lambda _: None
) -> DriftBenchResult:
    """Run both parts (module docstring); ``say`` gets progress lines."""
    generator = _credit_data_generator()
    stream = _Stream(generator, config)
    false_alarms = []
    detections = []
    for rows in config.rows_per_window:
        say(f"false alarms: {config.clean_windows} windows of {rows} rows")
        false_alarms.append(stream.false_alarms(rows))
        for case in stream.cases():
            say(f"detection: {case} at {rows} rows per window")
            detections.append(stream.detect(case, rows))
    say("cost: kernel and update")
    return DriftBenchResult(config, false_alarms, detections, measure_costs(config))


def _credit_data_generator() -> ModuleType:
    """The example's data generator (numpy only; the training script imports it too)."""
    spec = importlib.util.spec_from_file_location("credit_data", DATA_GENERATOR)
    if spec is None or spec.loader is None or not DATA_GENERATOR.is_file():
        raise DriftBenchError(f"{DATA_GENERATOR} is missing: run from a source checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Stream:
    """The reference profile and monitor factory, and the windows of the synthetic stream."""

    def __init__(self, generator: ModuleType, config: DriftBenchConfig) -> None:
        self._make = generator.make_credit_data
        self._names: list[str] = list(generator.FEATURES)
        self._config = config
        for name in (config.feature, config.categorical):
            if name not in self._names:
                raise DriftBenchError(f"{name!r} is not a feature: {', '.join(self._names)}")
        self._column = self._names.index(config.feature)
        self._category_column = self._names.index(config.categorical)
        self._reference = self._make(config.reference_rows, config.seed)[0]
        self._profile = build_profile(
            {n: self._reference[:, i] for i, n in enumerate(self._names)},
            categorical=[config.categorical],
            source=f"make_credit_data({config.reference_rows}, seed={config.seed})",
            input_name="features",
        )
        self._signature = ModelSignature(
            "bench", (TensorMetadata("features", "FP32", (-1, len(self._names))),), ()
        )
        self._std = float(np.nanstd(self._reference[:, self._column]))
        self._seeds = iter(range(config.seed + 1, 2**31))
        self._window_s = DriftConfig().window_s

    def cases(self) -> list[str]:
        return [f"{self._config.feature} +{s:g} std" for s in self._config.shifts] + [
            f"{self._config.categorical} shares"
        ]

    def _window(self, rows: int, case: str | None) -> np.ndarray:
        seed = next(self._seeds)
        x = self._make(rows, seed)[0]
        if case is None:
            return x
        if case.startswith(self._config.feature):
            shift = float(case.split("+")[1].split()[0])
            x[:, self._column] += np.float32(shift * self._std)
        else:
            rng = np.random.default_rng(seed)
            x[:, self._category_column] = rng.choice(LOAN_TERMS, size=rows, p=CATEGORY_CHANGE)
        return x

    def _monitor(self) -> tuple[DriftMonitor, list[float]]:
        now = [0.0]
        config = DriftConfig()
        monitor = DriftMonitor.from_profile(self._profile, self._signature, config, lambda: now[0])
        return monitor, now

    def _judge(self, monitor: DriftMonitor, now: list[float], x: np.ndarray) -> dict[str, Any]:
        """Stream ``x`` into the window after the current one; its scores."""
        now[0] += self._window_s
        for start in range(0, len(x), UPDATE_BATCH_ROWS):
            monitor.update({"features": x[start : start + UPDATE_BATCH_ROWS]}, [])
        return monitor.scores(last_windows=1)

    def false_alarms(self, rows: int) -> FalseAlarms:
        monitor, now = self._monitor()
        any_alert = feature_alerts = overall = 0
        n = self._config.clean_windows
        for _ in range(n):
            scores = self._judge(monitor, now, self._window(rows, None))
            alerts = sum(f["status"] == ALERT for f in scores["features"])
            any_alert += alerts > 0
            feature_alerts += alerts
            overall += scores["overall"]["status"] == ALERT
        return FalseAlarms(
            rows, n, any_alert / n, feature_alerts / (n * len(self._names)), overall / n
        )

    def detect(self, case: str, rows: int) -> Detection:
        monitor, now = self._monitor()
        column = self._category_column if case.endswith("shares") else self._column
        agreement: dict[str, float | None] = {}
        for window in range(1, self._config.max_windows + 1):
            x = self._window(rows, case)
            scores = self._judge(monitor, now, x)
            found = scores["features"][column]
            if window == 1:
                agreement = self._agreement(found, x[:, column], column)
            if found["status"] == ALERT:
                return Detection(case, rows, window * rows, tuple(found["breaches"]), agreement)
        return Detection(case, rows, None, (), agreement)

    def _agreement(
        self, found: dict[str, Any], live: np.ndarray, column: int
    ) -> dict[str, float | None]:
        """The sketch's measures beside batch ones on the raw rows (module docstring)."""
        reference = self._reference[:, column].astype(np.float64)
        live = live.astype(np.float64)
        entry = self._profile["features"][column]
        if entry["kind"] == "categorical":
            labels = [float(c) for c in entry["categories"]]
            p = _category_shares(live, labels)
            q = _category_shares(reference, labels)
        else:
            p = _shares(bin_counts(live, entry["edges"]))
            q = _shares(bin_counts(reference, entry["edges"]))
        floor_p, floor_q = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
        batch: dict[str, float | None] = {
            "psi": float(np.sum(rel_entr(floor_p, floor_q) + rel_entr(floor_q, floor_p))),
            "js": float(jensenshannon(p, q, base=2)),
            "ks": None,
            "wasserstein": None,
        }
        if entry["kind"] == "numeric":
            observed, ref = live[~np.isnan(live)], reference[~np.isnan(reference)]
            batch["ks"] = float(ks_2samp(observed, ref).statistic)
            batch["wasserstein"] = float(wasserstein_distance(observed, ref)) / entry["std"]
        return {
            **{f"{m}_sketch": found[m] for m in batch},
            **{f"{m}_scipy": v for m, v in batch.items()},
        }


def _shares(counts: np.ndarray) -> np.ndarray:
    return counts / counts.sum()


def _category_shares(values: np.ndarray, categories: list[float]) -> np.ndarray:
    """Shares in the categorical layout (categories, other, new_level, missing); every value
    here is a category or missing."""
    counts = [np.count_nonzero(values == c) for c in categories]
    return _shares(np.array([*counts, 0, 0, np.count_nonzero(np.isnan(values))], np.float64))


def measure_costs(config: DriftBenchConfig) -> list[Cost]:
    """Kernel rows/s for 20 and 200 numeric features; update µs for 1 and 64 rows."""
    rng = np.random.default_rng(config.seed)
    costs = []
    for features in (20, 200):
        rows = max(config.cost_rows * 20 // features, 1)
        x = rng.normal(size=(rows, features)).astype(np.float32)
        profile = build_profile(
            {f"f{i}": x[:2_000, i] for i in range(features)}, input_name="features"
        )
        signature = ModelSignature(
            "bench", (TensorMetadata("features", "FP32", (-1, features)),), ()
        )
        layout = build_layout(profile, signature)
        source, counts = layout.feature_source, np.zeros(layout.size, np.int64)

        def run(x: np.ndarray = x, source: Any = source, counts: np.ndarray = counts) -> None:
            count_rows(x, source.plan, source.table, source.slots, counts)

        seconds = _median_seconds(run, 1)
        costs.append(Cost(f"kernel, {features} numeric features", rows / seconds, "rows/s"))
    profile = load_profile(EXAMPLE_VERSION / "profile.json")
    signature = ModelSignature(
        "bench",
        (TensorMetadata("features", "FP32", (-1, 20)),),
        (TensorMetadata("label", "INT64", (-1,)), TensorMetadata("probabilities", "FP32", (-1, 2))),
    )
    monitor = DriftMonitor.from_profile(profile, signature)
    monitor.warm_up()
    for rows in (1, UPDATE_BATCH_ROWS):
        feeds = {"features": rng.normal(size=(rows, 20)).astype(np.float32)}
        p = rng.random(rows).astype(np.float32)
        outputs = [(p > 0.5).astype(np.int64), np.column_stack([1 - p, p])]

        def update(
            feeds: dict[str, np.ndarray] = feeds, outputs: list[np.ndarray] = outputs
        ) -> None:
            monitor.update(feeds, outputs)

        seconds = _median_seconds(update, config.update_calls)
        costs.append(
            Cost(
                f"DriftMonitor.update, {rows} row(s), 20 features + 2 outputs", seconds * 1e6, "µs"
            )
        )
    return costs


def _median_seconds(fn: Callable[[], None], calls: int) -> float:
    """Median over COST_REPEATS runs of the seconds one call of ``fn`` takes (after one run)."""
    fn()
    runs = []
    for _ in range(COST_REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls)
    return float(np.median(runs))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `drift` to the bench's parser."""
    defaults = DriftBenchConfig()
    parser = sub.add_parser(
        "drift",
        help="drift sketches: detection quality (fixed seeds) and kernel / update cost",
        description=__doc__.split("\n\nThis module")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rows-per-window",
        type=int,
        nargs="+",
        default=defaults.rows_per_window,
        help="rows per 1-minute window, one run each (default "
        f"{' '.join(map(str, defaults.rows_per_window))})",
    )
    counts = (
        ("clean_windows", "unshifted windows for the false-alarm rates"),
        ("max_windows", "windows a shifted case runs before 'not detected'"),
        ("reference_rows", "rows the reference profile is made of"),
        ("cost_rows", "rows per kernel timing at 20 features"),
        ("update_calls", "update calls per timing"),
    )
    for name, text in counts:
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=default, help=f"{text} (default {default})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of every draw")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")


def main(args: argparse.Namespace) -> int:
    """Run `bench drift` as parsed by `add_parser`: print the tables, write JSON if asked."""
    config = DriftBenchConfig(
        rows_per_window=tuple(args.rows_per_window),
        reference_rows=args.reference_rows,
        clean_windows=args.clean_windows,
        max_windows=args.max_windows,
        cost_rows=args.cost_rows,
        update_calls=args.update_calls,
        seed=args.seed,
    )
    try:
        result = run_drift_bench(config, say=lambda line: print(line, file=sys.stderr))
    except DriftBenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result_text(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


def result_text(result: DriftBenchResult) -> str:
    """The three tables: false alarms, detection with agreement, cost."""
    lines = ["False alarms (unshifted windows, each judged alone)"]
    lines.append(
        f"{'rows/window':>11} {'windows':>7} {'any feature':>11} {'per feature':>11} {'overall':>7}"
    )
    for f in result.false_alarms:
        lines.append(
            f"{f.rows_per_window:>11} {f.windows:>7} {f.any_feature_alert:>11.1%} "
            f"{f.feature_alert:>11.2%} {f.overall_alert:>7.1%}"
        )
    lines += [
        "",
        "Detection (rows until the shifted feature is in alert;"
        " measures of the first shifted window: sketch / SciPy on the raw rows)",
    ]
    lines.append(
        f"{'case':<28} {'rows/window':>11} {'rows':>8} {'breaches':<24} "
        f"{'psi':>15} {'js':>15} {'ks':>15} {'wasserstein':>15}"
    )
    for d in result.detections:
        rows = "-" if d.rows_until_detection is None else str(d.rows_until_detection)
        pairs = [
            f"{_num(d.agreement.get(m + '_sketch'))}/{_num(d.agreement.get(m + '_scipy'))}"
            for m in ("psi", "js", "ks", "wasserstein")
        ]
        lines.append(
            f"{d.case:<28} {d.rows_per_window:>11} {rows:>8} {','.join(d.breaches) or '-':<24} "
            + " ".join(f"{p:>15}" for p in pairs)
        )
    lines += ["", "Cost (one core)"]
    lines += [f"{c.what:<62} {c.value:>14,.1f} {c.unit}" for c in result.costs]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
