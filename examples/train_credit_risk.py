"""Build the bundled example model: two versions of a credit-risk classifier, as ONNX.

Generates a synthetic but realistic credit-risk data set (seeded, so every run writes the same
files), trains two scikit-learn pipelines on it, converts them with skl2onnx and writes::

    examples/models/credit_risk/1/model.onnx     random forest (version 1)
    examples/models/credit_risk/1/profile.json   profile of the rows version 1 was trained on
    examples/models/credit_risk/2/model.onnx     histogram gradient boosting (version 2)
    examples/models/credit_risk/2/profile.json   profile of the rows version 2 was trained on
    examples/models/credit_risk/warmup.json      {"features": 8 complete rows of 20 floats}

Every graph has one input ``features`` (FP32, [None, 20], columns in `FEATURES` order; NaN means
missing and is imputed inside the graph) and two outputs: ``label`` (INT64, [None]; 1 = default)
and ``probabilities`` (FP32, [None, 2]; column 1 = P(default)).

Run: ``python examples/train_credit_risk.py`` (needs the ``example`` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from credit_data import FEATURES, N_FEATURES, make_credit_data  # beside this script
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from gateway.monitoring.profile import OutputColumn, build_profile, save_profile

# Upper bounds: skl2onnx stamps the lowest opsets the graph needs (today 9 and ml 1), all of
# which ONNX Runtime 1.18+ runs.
TARGET_OPSET: dict[str, int] = {"": 18, "ai.onnx.ml": 3}
INPUT_NAME = "features"
OUTPUT_NAMES = ("label", "probabilities")


def to_onnx(pipeline: Pipeline, name: str) -> onnx.ModelProto:
    """Convert a fitted pipeline to the graph contract in the module docstring."""
    model = convert_sklearn(
        pipeline,
        name=name,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        final_types=[
            (OUTPUT_NAMES[0], Int64TensorType([None])),
            (OUTPUT_NAMES[1], FloatTensorType([None, 2])),
        ],
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # skl2onnx collects opset imports in a set, so their order follows str hashing and changes
    # between runs; sorting makes the file, and so its content hash, reproducible.
    imports = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in imports:
        model.opset_import.add(domain=domain, version=version)
    onnx.checker.check_model(model, full_check=True)
    _check_signature(model)
    return model


def _check_signature(model: onnx.ModelProto) -> None:
    def sig(values: list[onnx.ValueInfoProto]) -> list[tuple[str, int, list[int | str]]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append((v.name, t.elem_type, dims))
        return out

    inputs, outputs = sig(list(model.graph.input)), sig(list(model.graph.output))
    float_, int64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    ok = (
        len(inputs) == 1
        and inputs[0][:2] == (INPUT_NAME, float_)
        and len(inputs[0][2]) == 2
        and inputs[0][2][1] == N_FEATURES
        and isinstance(inputs[0][2][0], str)
        and [(n, t, len(d)) for n, t, d in outputs]
        == [("label", int64, 1), ("probabilities", float_, 2)]
        and outputs[1][2][1] == 2
    )
    if not ok:
        raise RuntimeError(f"unexpected ONNX signature: inputs {inputs}, outputs {outputs}")


def verify(
    pipeline: Pipeline, sess: ort.InferenceSession, X: npt.NDArray[np.float32], tag: str
) -> None:
    """Check that ONNX Runtime agrees with scikit-learn on 5 rows (one with NaN)."""
    complete = np.flatnonzero(~np.isnan(X).any(axis=1))[:4]
    with_nan = np.flatnonzero(np.isnan(X).any(axis=1))[:1]
    rows = X[np.concatenate([complete, with_nan])]
    label, proba = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: rows})
    ref_label, ref_proba = pipeline.predict(rows), pipeline.predict_proba(rows)
    labels_ok = np.array_equal(label, ref_label)
    proba_ok = np.allclose(proba, ref_proba, atol=1e-5)
    err = float(np.abs(proba - ref_proba).max())
    print(f"  {tag}: 5-row check labels {'equal' if labels_ok else 'DIFFER'}, ", end="")
    print(f"probabilities {'allclose' if proba_ok else 'DIFFER'} (max abs err {err:.2e})")
    if not (labels_ok and proba_ok):
        raise SystemExit(f"{tag}: ONNX Runtime disagrees with scikit-learn")


def batch1_latency_us(
    sess: ort.InferenceSession, row: npt.NDArray[np.float32], n: int = 1000
) -> float:
    """Median wall time of one ``sess.run`` on a single row, in microseconds."""
    feed = {INPUT_NAME: row.reshape(1, -1)}
    for _ in range(100):
        sess.run(None, feed)
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        sess.run(None, feed)
        times[i] = time.perf_counter_ns() - t0
    return float(np.median(times) / 1e3)


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    # One row is far too little work to amortize waking a thread pool.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def build_version(
    version: int, pipeline: Pipeline, seed: int, n_rows: int, out_dir: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Train, convert, verify and write one version; return its training rows and P(default)."""
    X, y = make_credit_data(n_rows, seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=seed, stratify=y
    )
    pipeline.fit(X_train, y_train)
    auc = roc_auc_score(y_test, pipeline.predict_proba(X_test)[:, 1])

    model = to_onnx(pipeline, f"credit_risk_v{version}")
    sess = _session(model)
    print(f"version {version}: {type(pipeline.steps[-1][1]).__name__}, seed {seed}, ", end="")
    print(f"{len(X_train)} training rows, default rate {y_train.mean():.3f}, test AUC {auc:.3f}")
    verify(pipeline, sess, X_test, f"version {version}")

    label, proba = sess.run(list(OUTPUT_NAMES), {"features": X_train})
    profile = build_profile(
        {name: X_train[:, i] for i, name in enumerate(FEATURES)},
        outputs=[
            OutputColumn("label", label, kind="categorical", categories=("0", "1")),
            OutputColumn("probabilities", proba, column=1),
        ],
        source=f"examples/train_credit_risk.py: make_credit_data(n={n_rows}, seed={seed}), "
        f"80% training split (random_state={seed})",
    )

    version_dir = out_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, version_dir / "model.onnx")
    save_profile(profile, version_dir / "profile.json")
    size_kb = (version_dir / "model.onnx").stat().st_size / 1024
    latency = batch1_latency_us(sess, X_test[0])
    print(f"  model.onnx {size_kb:.1f} KiB, profile {profile['id']}, ", end="")
    print(f"batch-1 latency {latency:.1f} us (median of 1000 runs, 1 thread)")
    return X_train, proba[:, 1]


def warmup_rows(
    X: npt.NDArray[np.float32], score: npt.NDArray[np.float32], k: int = 8
) -> list[list[float]]:
    """Pick ``k`` complete rows spread over the score range, so warm-up walks varied tree paths."""
    complete = np.flatnonzero(~np.isnan(X).any(axis=1))
    by_score = complete[np.argsort(score[complete], kind="stable")]
    picks = by_score[np.linspace(0, len(by_score) - 1, k).round().astype(np.intp)]
    # str() of an FP32 is its shortest round-tripping decimal, so the JSON stays readable.
    return [[float(str(v)) for v in X[i]] for i in picks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "models" / "credit_risk",
        help="model repository folder for credit_risk (default: %(default)s)",
    )
    args = parser.parse_args()

    v1 = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            (
                "classify",
                RandomForestClassifier(
                    n_estimators=25, max_depth=8, min_samples_leaf=20, random_state=1, n_jobs=1
                ),
            ),
        ]
    )
    v2 = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            (
                "classify",
                HistGradientBoostingClassifier(
                    max_iter=120,
                    learning_rate=0.08,
                    max_leaf_nodes=15,
                    min_samples_leaf=40,
                    l2_regularization=1.0,
                    early_stopping=False,
                    random_state=2,
                ),
            ),
        ]
    )
    X1, score1 = build_version(1, v1, seed=1, n_rows=20_000, out_dir=args.out)
    build_version(2, v2, seed=2, n_rows=20_000, out_dir=args.out)

    warmup = warmup_rows(X1, score1)
    (args.out / "warmup.json").write_text(json.dumps({INPUT_NAME: warmup}) + "\n", encoding="ascii")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
