"""Warm-up and validation: what a version must pass before it may take traffic.

Samples go through the version's runner like requests (one by one, then as one batch when the
version batches), so the first client request finds every allocation made, on every kind of
backend. Each answer is checked: the declared outputs, with the declared datatypes and shapes,
finite floats, and, given golden outputs, values within their tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.batching import BatchError
from gateway.errors import InvalidInput
from gateway.loading import LoadedVersion
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import ModelSignature, TensorMetadata

Sample = dict[str, np.ndarray]


class ValidationFailed(InvalidInput):
    """The version answered its warm-up or golden samples wrongly (or not at all)."""


@dataclass(frozen=True)
class Golden:
    """Inputs and the outputs a version must give for them (each within `tolerance`)."""

    inputs: Sample
    outputs: dict[str, np.ndarray]
    tolerance: float = 1e-4

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], signature: ModelSignature) -> Golden:
        """From `{"inputs": {name: rows}, "outputs": {name: rows}, "tolerance": t}`."""
        if not isinstance(document, Mapping):
            raise InvalidInput("'golden' must be an object with 'inputs' and 'outputs'")
        tolerance = document.get("tolerance", 1e-4)
        if not isinstance(tolerance, int | float) or tolerance < 0:
            raise InvalidInput("golden 'tolerance' must be a number >= 0")
        return cls(
            _arrays(document.get("inputs"), signature.inputs, "golden inputs", every=True),
            _arrays(document.get("outputs"), signature.outputs, "golden outputs", every=False),
            float(tolerance),
        )


def _arrays(
    rows: Any, tensors: Sequence[TensorMetadata], what: str, every: bool
) -> dict[str, np.ndarray]:
    if not isinstance(rows, Mapping) or not rows:
        raise InvalidInput(f"{what} must map tensor names to rows")
    declared = {t.name: t for t in tensors}
    unknown = set(rows) - set(declared)
    if unknown:
        raise InvalidInput(f"{what} name unknown tensors: {', '.join(sorted(unknown))}")
    if every and set(rows) != set(declared):
        missing = ", ".join(sorted(set(declared) - set(rows)))
        raise InvalidInput(f"{what} lack {missing}")
    arrays = {}
    for name, values in rows.items():
        try:
            arrays[name] = np.asarray(values, dtype=BY_NAME[declared[name].datatype].dtype)
        except (TypeError, ValueError) as error:
            raise InvalidInput(f"{what}: tensor '{name}': {error}") from None
    return arrays


async def warm_up(
    loaded: LoadedVersion, samples: Sequence[Sample], golden: Golden | None = None
) -> int:
    """Run the samples and the golden inputs; the number of runs. Raises ValidationFailed."""
    runs: list[tuple[str, Sample]] = [(f"warm-up sample {i + 1}", s) for i, s in enumerate(samples)]
    if len(samples) > 1 and loaded.config.max_batch_size:
        batch = {n: np.concatenate([s[n] for s in samples]) for n in samples[0]}
        runs.append(("the warm-up samples as one batch", batch))
    for what, sample in runs:
        await _checked_run(loaded, what, sample)
    if golden is None:
        return len(runs)
    _check_golden(loaded, golden, await _checked_run(loaded, "the golden inputs", golden.inputs))
    return len(runs) + 1


async def _checked_run(loaded: LoadedVersion, what: str, sample: Sample) -> list[np.ndarray]:
    outputs = await _run(loaded, what, sample)
    _check_outputs(loaded.signature, what, outputs, _rows(sample))
    return outputs


async def _run(loaded: LoadedVersion, what: str, sample: Sample) -> list[np.ndarray]:
    feeds = loaded.backend.adapt(dict(sample))
    try:
        outputs, _ = await loaded.runner.submit(feeds, _rows(sample), ("warm-up", what))
    except BatchError as error:
        raise ValidationFailed(f"{what} failed: {error}") from None
    except Exception as error:  # a backend that cannot even run a sample must not take traffic
        raise ValidationFailed(f"{what} failed: {type(error).__name__}: {error}") from None
    return outputs


def _rows(sample: Sample) -> int:
    return next(iter(sample.values())).shape[0] if sample else 1


def _check_outputs(
    signature: ModelSignature, what: str, outputs: Sequence[np.ndarray], rows: int
) -> None:
    if len(outputs) != len(signature.outputs):
        raise ValidationFailed(
            f"{what}: {len(outputs)} outputs, the signature declares {len(signature.outputs)}"
        )
    for spec, output in zip(signature.outputs, outputs, strict=True):
        datatype = BY_NAME[spec.datatype]
        if not datatype.is_bytes and output.dtype != datatype.dtype:
            raise ValidationFailed(
                f"{what}: output '{spec.name}' is {output.dtype}, declared {spec.datatype}"
            )
        declared = tuple(rows if d == -1 and i == 0 else d for i, d in enumerate(spec.shape))
        if len(output.shape) != len(declared) or any(
            d not in (-1, s) for d, s in zip(declared, output.shape, strict=True)
        ):
            raise ValidationFailed(
                f"{what}: output '{spec.name}' has shape {list(output.shape)}, "
                f"declared {list(spec.shape)}"
            )
        if output.dtype.kind in "fc" and not np.all(np.isfinite(output)):
            raise ValidationFailed(f"{what}: output '{spec.name}' is not finite")


def _check_golden(loaded: LoadedVersion, golden: Golden, outputs: Sequence[np.ndarray]) -> None:
    for name, expected in golden.outputs.items():
        index, _ = loaded.outputs[name]
        got = outputs[index]
        if got.shape != expected.shape:
            raise ValidationFailed(
                f"golden output '{name}' has shape {list(got.shape)}, "
                f"expected {list(expected.shape)}"
            )
        if expected.dtype.kind in "fc":
            matches = np.allclose(got, expected, rtol=golden.tolerance, atol=golden.tolerance)
        else:
            matches = np.array_equal(got, expected)
        if not matches:
            raise ValidationFailed(
                f"golden output '{name}' differs beyond tolerance {golden.tolerance}"
            )
