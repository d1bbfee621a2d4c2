"""V2 tensor datatypes and their numpy, ONNX Runtime and gRPC-contents counterparts.

One table drives every conversion so the transports and the backend can never disagree.
BYTES tensors are numpy object arrays of `bytes`; every other datatype is a fixed-width dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Datatype:
    name: str  # the V2 name on the wire
    dtype: np.dtype  # little-endian, as the binary extension and raw gRPC contents carry it
    ort_type: str  # onnxruntime's `NodeArg.type`
    contents_field: str  # the InferTensorContents field that carries it in typed gRPC

    @property
    def is_bytes(self) -> bool:
        return self.name == "BYTES"


_TABLE = (
    Datatype("BOOL", np.dtype("?"), "tensor(bool)", "bool_contents"),
    Datatype("UINT8", np.dtype("<u1"), "tensor(uint8)", "uint_contents"),
    Datatype("UINT16", np.dtype("<u2"), "tensor(uint16)", "uint_contents"),
    Datatype("UINT32", np.dtype("<u4"), "tensor(uint32)", "uint_contents"),
    Datatype("UINT64", np.dtype("<u8"), "tensor(uint64)", "uint64_contents"),
    Datatype("INT8", np.dtype("<i1"), "tensor(int8)", "int_contents"),
    Datatype("INT16", np.dtype("<i2"), "tensor(int16)", "int_contents"),
    Datatype("INT32", np.dtype("<i4"), "tensor(int32)", "int_contents"),
    Datatype("INT64", np.dtype("<i8"), "tensor(int64)", "int64_contents"),
    # FP16 has no typed gRPC field; the spec carries it raw only.
    Datatype("FP16", np.dtype("<f2"), "tensor(float16)", ""),
    Datatype("FP32", np.dtype("<f4"), "tensor(float)", "fp32_contents"),
    Datatype("FP64", np.dtype("<f8"), "tensor(double)", "fp64_contents"),
    Datatype("BYTES", np.dtype("O"), "tensor(string)", "bytes_contents"),
)

BY_NAME: dict[str, Datatype] = {d.name: d for d in _TABLE}
BY_ORT_TYPE: dict[str, Datatype] = {d.ort_type: d for d in _TABLE}
