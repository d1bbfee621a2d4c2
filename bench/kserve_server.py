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
from kserve.utils.numpy_codec import from_np_dtype


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
        self._output_names = [output.name for output in self._session.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        # KServe decodes each input to the dtype of its V2 datatype; ORT refuses a wrong one
        feeds = {given.name: given.as_numpy() for given in payload.inputs}
        # Inline on the event loop, as KServe's bundled predictors (sklearn, xgboost) run: with
        # one core for the server, a thread hop would only add a context switch.
        results = self._session.run(self._output_names, feeds)
        binary = payload.use_binary_outputs  # REST: binary_data_output; gRPC: raw inputs
        outputs = []
        for name, value in zip(self._output_names, results, strict=True):
            value = np.asarray(value)
            output = InferOutput(name, list(value.shape), from_np_dtype(value.dtype))
            output.set_data_from_numpy(value, binary_data=binary)
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
