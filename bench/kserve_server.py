"""KServe model server for one .onnx file through ONNX Runtime, for the KServe peer.

This file is never imported by the bench itself: `gateway.bench.kserve` runs it with the
Python of KServe's own venv. KServe ships no ONNX runtime of its own for the V2 protocol, so
this is the smallest fair one, like the MLServer peer's: the same .onnx, the same ORT settings
as the direct floor (one intra-op thread, sequential execution), KServe's own codecs
(`InferInput.as_numpy`, `InferOutput.set_data_from_numpy`), so what we measure is KServe's
request path: FastAPI on uvicorn for REST, grpc.aio for gRPC.

    python kserve_server.py MODEL_NAME MODEL_FILE HTTP_PORT GRPC_PORT
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

# ONNX type -> (V2 datatype, numpy dtype)
_ONNX_TYPES: dict[str, tuple[str, type[np.generic]]] = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(uint16)": ("UINT16", np.uint16),
    "tensor(uint32)": ("UINT32", np.uint32),
    "tensor(uint64)": ("UINT64", np.uint64),
    "tensor(bool)": ("BOOL", np.bool_),
}


class OnnxModel(Model):
    """Loads the .onnx file and runs it on every request, batch as sent."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self._path = path

    def load(self) -> bool:
        options = ort.SessionOptions()
        # One core for the whole server: ORT's own thread pool would compete with the event loop.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(
            self._path, options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [(o.name, _ONNX_TYPES[o.type][0]) for o in self._session.get_outputs()]
        self._input_dtypes = {i.name: _ONNX_TYPES[i.type][1] for i in self._session.get_inputs()}
        self.ready = True
        return self.ready

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        feeds = {
            given.name: given.as_numpy().astype(self._input_dtypes[given.name], copy=False)
            for given in payload.inputs
        }
        # Inline on the event loop, as KServe's bundled predictors (sklearn, xgboost) run: with
        # one core for the server, a thread hop would only add a context switch.
        results = self._session.run([name for name, _ in self._outputs], feeds)
        binary = payload.use_binary_outputs  # REST: binary_data_output; gRPC: raw inputs
        outputs = []
        for (name, datatype), value in zip(self._outputs, results, strict=True):
            output = InferOutput(name, list(value.shape), datatype)
            output.set_data_from_numpy(np.asarray(value), binary_data=binary)
            outputs.append(output)
        # KServe re-encodes per requested output (`binary_data`) over REST
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            from_grpc=payload.from_grpc,
            use_binary_outputs=binary,
            requested_outputs=payload.request_outputs,
        )


if __name__ == "__main__":
    name, path, http_port, grpc_port = sys.argv[1:5]
    model = OnnxModel(name, path)
    model.load()
    server = ModelServer(
        http_port=int(http_port),
        grpc_port=int(grpc_port),
        workers=1,
        enable_latency_logging=False,  # no per-request log line (Modelgate logs none either)
    )
    # no access log and no per-request lines either: KServe's REST middleware logs timings,
    # its gRPC interceptor each call's method
    for logger in ("uvicorn.access", "kserve.trace", "kserve"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    server.start([model])
