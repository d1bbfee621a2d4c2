"""ONNX Runtime in-process: one InferenceSession per model version."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gateway.errors import InvalidInput
from gateway.protocol.datatypes import BY_ORT_TYPE
from gateway.protocol.types import ModelSignature, TensorMetadata
from gateway.repository import ModelConfig

PLATFORM = "onnxruntime_onnx"


class OnnxBackend:
    def __init__(self, path: Path, config: ModelConfig) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = config.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.signature = ModelSignature(
            platform=PLATFORM,
            inputs=tuple(_metadata(arg, config.shapes) for arg in self._session.get_inputs()),
            outputs=tuple(_metadata(arg, config.shapes) for arg in self._session.get_outputs()),
        )
        self._output_names = [tensor.name for tensor in self.signature.outputs]
        self._string_inputs = frozenset(
            t.name for t in self.signature.inputs if t.datatype == "BYTES"
        )

    def adapt(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._string_inputs:
            return feeds
        # a copy: the same checked feeds may go on to another version (fallback, shadow)
        return {n: _as_str(n, a) if n in self._string_inputs else a for n, a in feeds.items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._output_names, feeds)

    def close(self) -> None:
        del self._session


def _metadata(arg: ort.NodeArg, shapes: Mapping[str, tuple[int, ...]]) -> TensorMetadata:
    datatype = BY_ORT_TYPE.get(arg.type)
    if datatype is None:
        raise ValueError(f"tensor '{arg.name}' has type {arg.type}, which V2 cannot carry")
    declared = shapes.get(arg.name)
    if declared is None:
        # ONNX marks dynamic dimensions by a symbolic name or nothing at all.
        declared = tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape)
    return TensorMetadata(arg.name, datatype.name, declared)


def _as_str(name: str, data: np.ndarray) -> np.ndarray:
    # V2 BYTES arrive as bytes objects; ONNX string tensors take str.
    try:
        flat = [e.decode() for e in data.reshape(-1)]
    except UnicodeDecodeError as error:
        raise InvalidInput(f"an ONNX string tensor needs UTF-8 text: {error}", name) from None
    converted = np.empty(len(flat), dtype=object)
    converted[:] = flat
    return converted.reshape(data.shape)
