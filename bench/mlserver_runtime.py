"""MLServer runtime that serves one .onnx file through ONNX Runtime, for the MLServer peer.

This file is never imported by the bench itself: `gateway.bench.mlserver` copies it into the
MLServer model folder, and MLServer (in its own venv, which has `mlserver` installed) imports it
from there as `model-settings.json`'s "implementation". MLServer ships no ONNX runtime, so this is
the smallest fair one: the same .onnx, the same ORT settings as the direct floor (one intra-op
thread, sequential execution), and the stock NumpyCodec for tensors, so what we measure is
MLServer's own request path.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    """Loads `parameters.uri` (a .onnx file) and runs it on every request, batch as sent."""

    async def load(self) -> bool:
        path = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        options = ort.SessionOptions()
        # One core for the whole server: ORT's own thread pool would compete with the event loop.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._output_names = [output.name for output in self._session.get_outputs()]
        self._input_dtypes = {
            node.name: _ONNX_TO_NUMPY[node.type] for node in self._session.get_inputs()
        }
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {
            request_input.name: NumpyCodec.decode_input(request_input).astype(
                self._input_dtypes[request_input.name], copy=False
            )
            for request_input in payload.inputs
        }
        # Run inline on the event loop, as MLServer's bundled runtimes (sklearn, xgboost) do: with
        # one core for the server, a thread hop would only add a context switch.
        results = self._session.run(self._output_names, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=[
                NumpyCodec.encode_output(name, np.asarray(value))
                for name, value in zip(self._output_names, results, strict=True)
            ],
        )


_ONNX_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}
