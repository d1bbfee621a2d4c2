"""Checks an InferRequest against a model's signature before it is queued.

Everything a client can get wrong about a model's inputs and outputs is caught here, once, for
both transports, and reported as InvalidInput naming the tensor.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import orjson

from gateway.errors import InvalidInput
from gateway.protocol.types import InferRequest, ModelSignature


@dataclass(frozen=True, slots=True)
class CheckedRequest:
    feeds: dict[str, np.ndarray]
    rows: int  # the batch dimension shared by every input; 1 for models that do not batch
    batch_key: Hashable  # requests may share one run only if their keys are equal
    output_names: tuple[str, ...]


def check_request(
    request: InferRequest, signature: ModelSignature, max_batch_size: int
) -> CheckedRequest:
    """Validate `request` against `signature`.

    `max_batch_size` > 0 means the first dimension of every input is the batch dimension and may
    not exceed it. Raises InvalidInput naming the first offending tensor.
    """
    declared = {tensor.name: tensor for tensor in signature.inputs}
    feeds: dict[str, np.ndarray] = {}
    for given in request.inputs:
        spec = declared.get(given.name)
        if spec is None:
            known = ", ".join(sorted(declared))
            raise InvalidInput(f"the model has no such input (inputs: {known})", given.name)
        if given.name in feeds:
            raise InvalidInput("given more than once", given.name)
        if given.datatype != spec.datatype:
            raise InvalidInput(
                f"datatype {given.datatype} does not match the model's {spec.datatype}", given.name
            )
        shape = given.data.shape
        if len(shape) != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
        ):
            raise InvalidInput(
                f"shape {list(shape)} does not match the model's {list(spec.shape)}", given.name
            )
        if given.data.size == 0:
            raise InvalidInput(f"shape {list(shape)} holds no elements", given.name)
        feeds[given.name] = given.data
    missing = declared.keys() - feeds.keys()
    if missing:
        raise InvalidInput(f"missing input(s): {', '.join(sorted(missing))}")

    rows = 1
    if max_batch_size > 0:
        batch_sizes = {data.shape[0] for data in feeds.values()}
        if len(batch_sizes) != 1:
            raise InvalidInput(f"inputs disagree on the batch size: {sorted(batch_sizes)}")
        rows = batch_sizes.pop()
        if rows > max_batch_size:
            raise InvalidInput(
                f"batch size {rows} exceeds the model's max_batch_size {max_batch_size}"
            )

    output_names = _output_names(request, signature)
    key = (
        tuple((name, data.dtype.str, data.shape[1:]) for name, data in sorted(feeds.items())),
        orjson.dumps(request.parameters, option=orjson.OPT_SORT_KEYS)
        if request.parameters
        else b"",
    )
    return CheckedRequest(feeds, rows, key, output_names)


def _output_names(request: InferRequest, signature: ModelSignature) -> tuple[str, ...]:
    if not request.outputs:
        return tuple(tensor.name for tensor in signature.outputs)
    known = {tensor.name for tensor in signature.outputs}
    names: list[str] = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidInput(
                f"requested output '{output.name}' does not exist "
                f"(outputs: {', '.join(sorted(known))})"
            )
        if output.name in names:
            raise InvalidInput(f"output '{output.name}' requested more than once")
        names.append(output.name)
    return tuple(names)
