"""`modelgate profile DATA --model M`: profile a model's training data (and its outputs on it).

Reads DATA (CSV with a header row, or Parquet when pyarrow is installed): its columns, in order,
are the columns of the model input the profile is for. The rows are cast to that input's dtype
(what the model receives on the wire, so that the reference bins hold exactly the served
values), run through the model to profile its outputs, and profiled (profile.py says how). The
profile is then checked against the model as the gateway checks it at load.

CSV cells that are empty or read NA, NaN or null (any case) are missing; every other cell must
be a number. Outputs profiled: each 1-D output; one column of a 2-D output with 2 columns (column
1: P(class 1) of a binary classifier), every column of a wider one. An integer or boolean output
column with at most --top-k distinct values is categorical, any other numeric. BYTES outputs
are left out (drift does not count them).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.backends.onnx import OnnxBackend
from gateway.config import ModelConfig
from gateway.errors import InvalidInput
from gateway.monitoring.profile import OutputColumn, Profile, build_profile, save_profile
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import TensorMetadata
from gateway.repository import MODEL_FILE

__all__ = ["ProfileConfig", "ProfileError", "ProfileResult", "add_parser", "main", "make_profile"]

MISSING_CELLS = frozenset({"", "na", "nan", "null"})
CHUNK_ROWS = 4096  # rows per model run while profiling the outputs
HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


class ProfileError(Exception):
    """The data, the model or the options cannot make a profile; the message says why."""


@dataclass(frozen=True)
class ProfileConfig:
    data: Path  # CSV or Parquet
    model: Path  # model.onnx, a version folder holding one, or a model folder of versions
    version: str | None = None  # with a model folder: the version (default: the highest)
    input_name: str | None = None  # the input the data's columns are (default: the only one)
    bins: int = 10
    top_k: int = 20
    categorical: tuple[str, ...] = ()  # data columns profiled as categories
    out: Path = Path("profile.json")


@dataclass(frozen=True)
class ProfileResult:
    profile: Profile
    model_file: Path
    skipped: tuple[str, ...]  # outputs left out, and why


def make_profile(config: ProfileConfig) -> ProfileResult:
    """Profile ``config.data`` for ``config.model`` (module docstring): the library API of
    `modelgate profile`. Writes and prints nothing. Raises ProfileError when the data, the model
    or the options do not fit."""
    model_file = resolve_model(config.model, config.version)
    names, rows = read_table(config.data)
    try:
        backend = OnnxBackend(model_file, ModelConfig())
    except Exception as error:  # ONNX Runtime raises its own types for unreadable models
        raise ProfileError(f"{model_file}: cannot open the model: {error}") from None
    try:
        signature = backend.signature
        inputs = {t.name: t for t in signature.inputs}
        if len(inputs) != 1:
            raise ProfileError(
                f"the model takes {len(inputs)} inputs ({', '.join(inputs)}): "
                "`modelgate profile` runs models of one input"
            )
        tensor = next(iter(inputs.values()))
        if config.input_name not in (None, tensor.name):
            raise ProfileError(f"the model's input is '{tensor.name}', not '{config.input_name}'")
        width = tensor.shape[-1] if len(tensor.shape) == 2 else -1
        if width != len(names):
            raise ProfileError(
                f"{config.data} has {len(names)} columns; input '{tensor.name}' has shape "
                f"{list(tensor.shape)} (drop the columns the model does not take, e.g. the label)"
            )
        dtype = BY_NAME[tensor.datatype].dtype
        if dtype.kind not in "fiub":
            raise ProfileError(f"input '{tensor.name}' is {tensor.datatype}, not numeric")
        if dtype.kind != "f" and not np.array_equal(rows, np.round(rows)):
            raise ProfileError(
                f"input '{tensor.name}' is {tensor.datatype}: the data has missing or "
                "fractional values it cannot carry"
            )
        x = np.ascontiguousarray(rows.astype(dtype))
        results = [
            backend.run({tensor.name: x[i : i + CHUNK_ROWS]}) for i in range(0, len(x), CHUNK_ROWS)
        ]
    finally:
        backend.close()
    outputs, skipped = _output_columns(signature.outputs, results, config.top_k)
    try:
        profile = build_profile(
            {name: x[:, i] for i, name in enumerate(names)},
            bins=config.bins,
            outputs=outputs,
            source=str(config.data),
            categorical=config.categorical,
            top_k=config.top_k,
            input_name=tensor.name,
        )
    except ValueError as error:
        raise ProfileError(str(error)) from None
    # Numba loads its kernels on import: only `modelgate profile` pays for it, not every command.
    from gateway.monitoring.drift_layout import build_layout

    try:
        build_layout(profile, signature)
    except InvalidInput as error:
        raise ProfileError(f"the profile does not fit the model: {error}") from None
    return ProfileResult(profile, model_file, tuple(skipped))


def _output_columns(
    tensors: Sequence[TensorMetadata], results: Sequence[list[np.ndarray]], top_k: int
) -> tuple[list[OutputColumn], list[str]]:
    """What to profile of each output (module docstring), and the outputs left out."""
    columns: list[OutputColumn] = []
    skipped: list[str] = []
    for position, tensor in enumerate(tensors):
        if BY_NAME[tensor.datatype].is_bytes:
            skipped.append(f"{tensor.name}: BYTES outputs are not counted by drift")
            continue
        values = np.concatenate([result[position] for result in results])
        if values.ndim == 1:
            picks: Sequence[int | None] = [None]
        elif values.ndim == 2 and values.shape[1] >= 1:
            picks = [1] if values.shape[1] == 2 else range(values.shape[1])
        else:
            skipped.append(f"{tensor.name}: shape {list(values.shape)} is neither 1-D nor 2-D")
            continue
        for column in picks:
            picked = values if column is None else values[:, column]
            few = picked.dtype.kind in "biu" and np.unique(picked).size <= top_k
            kind = "categorical" if few else "numeric"
            columns.append(OutputColumn(tensor.name, values, kind=kind, column=column))
    return columns, skipped


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `profile` to the `modelgate` parser."""
    defaults = ProfileConfig(Path(), Path())
    formats = "CSV or Parquet" if HAS_PYARROW else "CSV (Parquet needs pyarrow: not installed)"
    profile = commands.add_parser(
        "profile",
        help="profile training data for drift monitoring (writes profile.json)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    profile.add_argument("data", type=Path, help=f"the training data: {formats}")
    profile.add_argument(
        "--model",
        type=Path,
        required=True,
        help="model.onnx, a version folder holding it, or a model folder of version folders",
    )
    profile.add_argument(
        "--version", help="with a model folder: the version to profile (default: the highest)"
    )
    profile.add_argument(
        "--input",
        dest="input_name",
        help="the model input the data's columns are (default: the model's only input)",
    )
    profile.add_argument(
        "--bins",
        type=int,
        default=defaults.bins,
        help=f"quantile bins per numeric feature (default {defaults.bins})",
    )
    profile.add_argument(
        "--top-k",
        type=int,
        default=defaults.top_k,
        help=f"categories kept per categorical feature; rarer ones count as other "
        f"(default {defaults.top_k})",
    )
    profile.add_argument(
        "--categorical",
        nargs="+",
        default=[],
        metavar="COL",
        help="data columns of category codes (profiled as categories, not bins)",
    )
    profile.add_argument(
        "--out",
        type=Path,
        default=defaults.out,
        help=f"where to write the profile (default {defaults.out}; the gateway reads "
        "<repository>/<model>/<version>/profile.json)",
    )


def main(args: argparse.Namespace) -> int:
    """Run `modelgate profile` as parsed by `add_parser`; the exit status."""
    config = ProfileConfig(
        data=args.data,
        model=args.model,
        version=args.version,
        input_name=args.input_name,
        bins=args.bins,
        top_k=args.top_k,
        categorical=tuple(args.categorical),
        out=args.out,
    )
    try:
        result = make_profile(config)
        save_profile(result.profile, config.out)
    except ProfileError as error:
        print(f"modelgate profile: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"modelgate profile: {config.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    profile = result.profile
    features = profile["features"]
    categorical = sum(f["kind"] == "categorical" for f in features)
    outputs = ", ".join(
        f"{o['name']}" + (f"[{o['column']}]" if "column" in o else "") + f" ({o['kind']})"
        for o in profile["outputs"]
    )
    print(
        f"wrote {config.out}: profile {profile['id']} of {result.model_file}, "
        f"{profile['created_from']['rows']} rows, {len(features)} features "
        f"({categorical} categorical), outputs: {outputs or 'none'}"
    )
    for line in result.skipped:
        print(f"not profiled: {line}")
    return 0


def resolve_model(model: Path, version: str | None) -> Path:
    """The model file ``model`` names: itself, ``model/model.onnx``, or
    ``model/<version>/model.onnx`` (default: the highest integer version)."""
    if model.is_file():
        if version is not None:
            raise ProfileError("--version needs a model folder, not a model file")
        return model
    if not model.is_dir():
        raise ProfileError(f"{model}: no such model file or folder")
    if version is None and (model / MODEL_FILE).is_file():
        return model / MODEL_FILE
    versions = sorted((p for p in model.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if version is not None:
        chosen = model / version
    elif versions:
        chosen = versions[-1]
    else:
        raise ProfileError(f"{model}: no {MODEL_FILE} and no integer version folders")
    if not (chosen / MODEL_FILE).is_file():
        raise ProfileError(f"{chosen}: no {MODEL_FILE}")
    return chosen / MODEL_FILE


def read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Column names and a float64 (rows, columns) array of ``path`` (CSV, or Parquet with
    pyarrow); missing cells are NaN. Raises ProfileError for unreadable or non-numeric data."""
    try:
        if path.suffix.lower() == ".parquet":
            names, rows = _read_parquet(path)
        else:
            names, rows = _read_csv(path)
    except OSError as error:
        raise ProfileError(f"{path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ProfileError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    if not names or rows.shape[0] == 0:
        raise ProfileError(f"{path}: no rows")
    return names, rows


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        names = [n.strip() for n in next(reader, [])]
        if not names:
            raise ProfileError(f"{path}: empty: a header row of column names comes first")
        if len(set(names)) != len(names) or "" in names:
            raise ProfileError(f"{path}: the header needs distinct, non-empty column names")
        rows = []
        for line, cells in enumerate(reader, start=2):
            if not cells:
                continue
            if len(cells) != len(names):
                raise ProfileError(
                    f"{path}:{line}: {len(cells)} cells, the header has {len(names)}"
                )
            rows.append([_cell(c, path, line) for c in cells])
    return names, np.asarray(rows, dtype=np.float64).reshape(-1, len(names))


def _cell(text: str, path: Path, line: int) -> float:
    text = text.strip()
    if text.lower() in MISSING_CELLS:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ProfileError(f"{path}:{line}: {text!r} is not a number") from None


def _read_parquet(path: Path) -> tuple[list[str], np.ndarray]:
    if not HAS_PYARROW:
        raise ProfileError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)")
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    try:
        columns = [
            np.asarray(c.to_numpy(zero_copy_only=False), dtype=np.float64) for c in table.columns
        ]
    except (TypeError, ValueError) as error:
        raise ProfileError(f"{path}: every column must be numeric ({error})") from None
    return list(table.column_names), np.column_stack(columns)
