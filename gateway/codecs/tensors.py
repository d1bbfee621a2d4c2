"""Wire values <-> numpy arrays, shared by the REST and gRPC codecs.

Two wire forms exist: a list of values (JSON `data`, typed gRPC contents) and a raw little-endian
buffer (Triton's binary extension, gRPC `raw_*_contents`). Raw BYTES elements are each prefixed
with their length as a 4-byte little-endian unsigned integer.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from gateway.errors import InvalidInput
from gateway.protocol.datatypes import BY_NAME, Datatype

_LENGTH = struct.Struct("<I")
# Shapes numpy cannot hold even without elements ([0, 2**31, 2**31] overflows its byte count):
# numpy 1 takes at most 32 dimensions, and no request body comes near 2**40 elements.
MAX_DIMS = 32
MAX_ELEMENTS = 2**40


def datatype_named(tensor: str, name: Any) -> Datatype:
    found = BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise InvalidInput(f"unknown datatype {name!r}", tensor)
    return found


def parse_shape(tensor: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes):
        raise InvalidInput("shape must be a list of integers", tensor)
    dims = tuple(shape)
    for dim in dims:
        if not isinstance(dim, int) or isinstance(dim, bool):
            raise InvalidInput(f"shape {list(dims)} must hold integers", tensor)
        if dim < 0:
            raise InvalidInput(f"shape {list(dims)} has a negative dimension", tensor)
    if len(dims) > MAX_DIMS:
        raise InvalidInput(f"shape has {len(dims)} dimensions, more than {MAX_DIMS}", tensor)
    if math.prod(filter(None, dims)) > MAX_ELEMENTS:  # zeros aside: numpy counts the rest
        raise InvalidInput(
            f"shape {list(dims)} is too large: its dimensions multiply past {MAX_ELEMENTS}",
            tensor,
        )
    return dims


def array_from_values(
    tensor: str, datatype: Datatype, shape: tuple[int, ...], values: Any
) -> np.ndarray:
    """Build the array from a flat or nested list of values; its element count must fit `shape`."""
    expected = math.prod(shape)
    try:
        if datatype.is_bytes:
            array = np.array(values, dtype=object)
            flat = array.reshape(-1)  # a view: filling it fills `array`
            flat[:] = [_as_bytes(tensor, v) for v in flat]
        else:
            array = _fixed_width(tensor, datatype, _inferred(values, datatype))
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidInput(f"data does not hold {datatype.name} values: {error}", tensor) from None
    if array.size != expected:
        raise InvalidInput(
            f"data has {array.size} elements but shape {list(shape)} needs {expected}", tensor
        )
    return array.reshape(shape)


# Which kinds of values (numpy's inference from the list) each target kind accepts: numbers
# never silently change kind, so 1.5 is no INT64, "1.5" no FP32 and 2 no BOOL.
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _inferred(values: Any, datatype: Datatype) -> np.ndarray:
    """numpy's own reading of the values. Integers beyond int64 mixed with smaller ones read as
    float64 there, so integer targets get a second, exact look at such lists."""
    inferred = np.array(values)
    if datatype.dtype.kind in "iu" and inferred.dtype.kind in "fO":
        exact = np.array(values, dtype=object)
        flat = exact.reshape(-1)
        if all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
            return exact if flat.size == 0 else exact.astype(_wide_integer(flat))
    return inferred


def _wide_integer(flat: np.ndarray) -> np.dtype:
    # only reached when some value does not fit int64; negative ones then fail the range check
    return np.dtype(np.uint64) if min(flat) >= 0 else np.dtype(np.int64)


def _fixed_width(tensor: str, datatype: Datatype, inferred: np.ndarray) -> np.ndarray:
    target = datatype.dtype
    if inferred.dtype.kind not in _ACCEPTED_KINDS[target.kind]:
        raise InvalidInput(f"data holds {_kind_name(inferred)} values, not {datatype.name}", tensor)
    if inferred.size and target.kind in "iu":
        limits = np.iinfo(target)
        if inferred.min() < limits.min or inferred.max() > limits.max:
            bad = inferred[(inferred < limits.min) | (inferred > limits.max)].flat[0]
            raise InvalidInput(
                f"value {bad} lies outside the range of {datatype.name} "
                f"[{limits.min}, {limits.max}]",
                tensor,
            )
    converted = inferred.astype(target, copy=False)
    narrowed = target.kind == "f" and inferred.dtype.itemsize > target.itemsize
    if narrowed and not np.isfinite(converted).all() and np.isfinite(inferred).all():
        bad = inferred[~np.isfinite(converted)].flat[0]
        raise InvalidInput(f"value {bad} lies outside the range of {datatype.name}", tensor)
    return converted


def _kind_name(array: np.ndarray) -> str:
    kind = array.dtype.kind
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "floating-point"}.get(
        kind, "non-numeric or mixed"
    )


def _as_bytes(tensor: str, value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise InvalidInput(f"BYTES data must be strings, got {type(value).__name__}", tensor)


def array_from_raw(
    tensor: str, datatype: Datatype, shape: tuple[int, ...], buffer: bytes | memoryview
) -> np.ndarray:
    """View (no copy) a raw little-endian buffer as the array; its size must fit `shape` exactly."""
    expected = math.prod(shape)
    if datatype.is_bytes:
        return _bytes_from_raw(tensor, shape, expected, memoryview(buffer))
    needed = expected * datatype.dtype.itemsize
    if len(buffer) != needed:
        raise InvalidInput(
            f"{len(buffer)} bytes of data but shape {list(shape)} of {datatype.name} "
            f"needs {needed}",
            tensor,
        )
    return np.frombuffer(buffer, dtype=datatype.dtype).reshape(shape)


def _bytes_from_raw(
    tensor: str, shape: tuple[int, ...], expected: int, buffer: memoryview
) -> np.ndarray:
    elements: list[bytes] = []
    offset = 0
    while offset < len(buffer):
        if offset + 4 > len(buffer):
            raise InvalidInput("BYTES data ends inside an element length", tensor)
        (length,) = _LENGTH.unpack_from(buffer, offset)
        offset += 4
        if offset + length > len(buffer):
            raise InvalidInput("BYTES element runs past the end of the data", tensor)
        elements.append(bytes(buffer[offset : offset + length]))
        offset += length
    if len(elements) != expected:
        raise InvalidInput(
            f"data has {len(elements)} BYTES elements but shape {list(shape)} needs {expected}",
            tensor,
        )
    array = np.empty(expected, dtype=object)
    array[:] = elements
    return array.reshape(shape)


def raw_from_array(datatype: Datatype, array: np.ndarray) -> bytes:
    """The raw wire form of an array (row-major, little-endian; BYTES length-prefixed)."""
    if datatype.is_bytes:
        parts: list[bytes] = []
        for element in array.reshape(-1):
            data = element.encode() if isinstance(element, str) else bytes(element)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=datatype.dtype).tobytes()


def values_from_array(datatype: Datatype, array: np.ndarray) -> Any:
    """A flat sequence of the array's values for JSON: numpy itself for fixed-width types (orjson
    serializes it without a Python list), strings for BYTES."""
    flat = array.reshape(-1)
    if datatype.is_bytes:
        return [e.decode(errors="replace") if isinstance(e, bytes) else str(e) for e in flat]
    return np.ascontiguousarray(flat)
