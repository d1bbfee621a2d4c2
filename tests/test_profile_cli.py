"""Tests for `modelgate profile` (gateway.monitoring.profile_cli): generated CSV files profiled
for the example model and small test models, the profile checked as the gateway checks it, and
every refusal with its message."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx_models
import pytest

from gateway.backends.onnx import OnnxBackend
from gateway.cli import main
from gateway.config import ModelConfig
from gateway.monitoring.drift import DriftMonitor
from gateway.monitoring.profile import bin_edges, load_profile
from gateway.monitoring.profile_cli import HAS_PYARROW, ProfileConfig, ProfileError, make_profile

CREDIT_RISK = Path(__file__).resolve().parent.parent / "examples" / "models" / "credit_risk"


def _write_csv(path: Path, names: list[str], rows: np.ndarray) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(names)
        for i, row in enumerate(rows):
            # missing cells spelled in each accepted way
            blank = ("", "NA", "nan", "null")[i % 4]
            writer.writerow([blank if np.isnan(v) else repr(float(v)) for v in row])
    return path


def _credit_rows(seed: int, n: int = 600) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.normal(50.0, 20.0, (n, 20)).round(3)
    rows[rng.random(rows.shape) < 0.03] = np.nan
    rows[:, 17] = rng.choice([12, 24, 36, 48, 60], n, p=[0.1, 0.2, 0.35, 0.15, 0.2])
    return [f"c{i}" for i in range(20)], rows


def test_profiles_the_example_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names, rows = _credit_rows(0)
    data = _write_csv(tmp_path / "train.csv", names, rows)
    out = tmp_path / "profile.json"
    status = main(
        [
            "profile",
            str(data),
            "--model",
            str(CREDIT_RISK),
            "--categorical",
            "c17",
            "--out",
            str(out),
        ]
    )
    assert status == 0, capsys.readouterr().err
    assert f"wrote {out}" in capsys.readouterr().out
    profile = load_profile(out)
    assert profile["input"] == "features"
    assert profile["created_from"] == {"rows": 600, "source": str(data)}
    features = profile["features"]
    assert [f["name"] for f in features] == names
    assert features[17]["kind"] == "categorical"
    assert sorted(features[17]["categories"]) == ["12", "24", "36", "48", "60"]
    # profiled as the model receives the data: cast to FP32 first
    assert features[0]["edges"] == bin_edges(rows[:, 0].astype(np.float32)).tolist()
    assert features[0]["missing_rate"] == pytest.approx(np.isnan(rows[:, 0]).mean())
    label, probabilities = profile["outputs"]
    assert label["name"] == "label" and label["kind"] == "categorical"
    assert probabilities["name"] == "probabilities" and probabilities["column"] == 1
    # the highest version was profiled, and its gateway check passes
    backend = OnnxBackend(CREDIT_RISK / "2" / "model.onnx", ModelConfig())
    DriftMonitor.from_profile(profile, backend.signature)


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [
        (CREDIT_RISK / "1" / "model.onnx", None, CREDIT_RISK / "1" / "model.onnx"),
        (CREDIT_RISK / "1", None, CREDIT_RISK / "1" / "model.onnx"),
        (CREDIT_RISK, "1", CREDIT_RISK / "1" / "model.onnx"),
        (CREDIT_RISK, None, CREDIT_RISK / "2" / "model.onnx"),
    ],
)
def test_model_is_found(tmp_path: Path, model: Path, version: str | None, expected: Path) -> None:
    names, rows = _credit_rows(1, 50)
    data = _write_csv(tmp_path / "train.csv", names, rows)
    result = make_profile(ProfileConfig(data, model, version))
    assert result.model_file == expected


def test_every_column_of_a_wide_output(tmp_path: Path) -> None:
    model = tmp_path / "identity" / "model.onnx"
    model.parent.mkdir()
    model.write_bytes(onnx_models.identity("INT64"))
    rows = np.random.default_rng(2).integers(0, 30, (200, onnx_models.IDENTITY_WIDTH))
    data = _write_csv(tmp_path / "codes.csv", ["a", "b", "c"], rows.astype(np.float64))
    profile = make_profile(ProfileConfig(data, model, top_k=10, categorical=("c",))).profile
    # integer output columns with more than top_k values are binned, one entry per column
    assert [(o["column"], o["kind"]) for o in profile["outputs"]] == [
        (0, "numeric"),
        (1, "numeric"),
        (2, "numeric"),
    ]
    assert profile["features"][2]["kind"] == "categorical"
    assert len(profile["features"][2]["categories"]) == 10


def _model(tmp_path: Path, builder_bytes: bytes) -> Path:
    model = tmp_path / "m" / "model.onnx"
    model.parent.mkdir(exist_ok=True)
    model.write_bytes(builder_bytes)
    return model


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d, m: ProfileConfig(d, m / "nowhere"), "no such model"),
        (lambda d, m: ProfileConfig(d, m, version="9"), r"9: no model\.onnx"),
        (
            lambda d, m: ProfileConfig(d, m / "1" / "model.onnx", version="1"),
            "needs a model folder",
        ),
        (lambda d, m: ProfileConfig(d, m, input_name="pixels"), "not 'pixels'"),
        (lambda d, m: ProfileConfig(d, m, categorical=("nope",)), "no such column"),
        (lambda d, m: ProfileConfig(d, m, bins=0), "bins must be >= 1"),
        (lambda d, m: ProfileConfig(d.with_suffix(".missing"), m), "No such file"),
    ],
)
def test_refusals(tmp_path: Path, make: Callable[[Path, Path], ProfileConfig], match: str) -> None:
    names, rows = _credit_rows(3, 30)
    data = _write_csv(tmp_path / "train.csv", names, rows)
    with pytest.raises(ProfileError, match=match):
        make_profile(make(data, CREDIT_RISK))


def test_data_that_does_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names, rows = _credit_rows(4, 30)
    narrow = _write_csv(tmp_path / "narrow.csv", names[:19], rows[:, :19])
    assert main(["profile", str(narrow), "--model", str(CREDIT_RISK)]) == 1
    assert "has 19 columns; input 'features' has shape [-1, 20]" in capsys.readouterr().err
    text = tmp_path / "text.csv"
    text.write_text("a,b\n1,2\n3,red\n")
    assert main(["profile", str(text), "--model", str(CREDIT_RISK)]) == 1
    assert "text.csv:3: 'red' is not a number" in capsys.readouterr().err
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    assert main(["profile", str(ragged), "--model", str(CREDIT_RISK)]) == 1
    assert "ragged.csv:3: 1 cells, the header has 2" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    assert main(["profile", str(empty), "--model", str(CREDIT_RISK)]) == 1
    assert "no rows" in capsys.readouterr().err
    empty.write_text("")  # not even a header: once a numpy reshape error and a traceback
    assert main(["profile", str(empty), "--model", str(CREDIT_RISK)]) == 1
    assert "empty.csv: empty: a header row" in capsys.readouterr().err
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,b\n\xe9,1\n")
    assert main(["profile", str(latin), "--model", str(CREDIT_RISK)]) == 1
    assert "latin.csv: not UTF-8 text" in capsys.readouterr().err


def test_inputs_it_cannot_feed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    two_inputs = _model(tmp_path, onnx_models.add_sub())
    data = _write_csv(tmp_path / "x.csv", ["a", "b", "c", "d"], np.ones((5, 4)))
    assert main(["profile", str(data), "--model", str(two_inputs)]) == 1
    assert "runs models of one input" in capsys.readouterr().err
    strings = _model(tmp_path, onnx_models.identity("BYTES"))
    data = _write_csv(tmp_path / "y.csv", ["a", "b", "c"], np.ones((5, 3)))
    assert main(["profile", str(data), "--model", str(strings)]) == 1
    assert "is BYTES, not numeric" in capsys.readouterr().err
    integers = _model(tmp_path, onnx_models.identity("INT32"))
    halves = _write_csv(tmp_path / "z.csv", ["a", "b", "c"], np.full((5, 3), 0.5))
    assert main(["profile", str(halves), "--model", str(integers)]) == 1
    assert "missing or fractional values" in capsys.readouterr().err


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed: Parquet is read")
def test_parquet_needs_pyarrow(tmp_path: Path) -> None:
    data = tmp_path / "train.parquet"
    data.write_bytes(b"PAR1")
    with pytest.raises(ProfileError, match="needs pyarrow"):
        make_profile(ProfileConfig(data, CREDIT_RISK))


def test_writes_nothing_when_refused(tmp_path: Path) -> None:
    names, rows = _credit_rows(5, 30)
    data = _write_csv(tmp_path / "train.csv", names[:19], rows[:, :19])
    out = tmp_path / "profile.json"
    assert main(["profile", str(data), "--model", str(CREDIT_RISK), "--out", str(out)]) == 1
    assert not out.exists()
