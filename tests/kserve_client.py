"""Run by test_kserve_client.py in KServe's own venv (KServe pins versions that clash with ours):
KServe's Python SDK clients, as a user would call them, against a running gateway.

    python kserve_client.py HTTP_URL GRPC_ADDRESS MODEL ROWS_JSON

ROWS_JSON is a file holding the request's FP32 rows (a list of lists). Prints one JSON document:
for each way of calling, the outputs it got (name -> nested list; over REST, also whether they
came back as binary tensor data) or the error it raised (its type and text), so that the test
compares them with onnxruntime's answer.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import InferResponse, RequestedOutput


def _request(model: str, rows: np.ndarray, *, binary: bool, request_id: str) -> InferRequest:
    features = InferInput("features", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows, binary_data=binary)
    outputs = [
        RequestedOutput(name, {"binary_data": binary}) for name in ("label", "probabilities")
    ]
    return InferRequest(model, [features], request_id=request_id, request_outputs=outputs)


def _outputs(response: InferResponse, **extra: Any) -> dict[str, Any]:
    return {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": {output.name: output.as_numpy().tolist() for output in response.outputs},
        **extra,
    }


async def _outcome(call: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    try:
        return {"result": await call()}
    except (httpx.HTTPStatusError, grpc.aio.AioRpcError) as error:
        code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else None
        text = error.details() if isinstance(error, grpc.aio.AioRpcError) else str(error)
        return {"error": type(error).__name__, "code": code, "text": text}


async def main(http_url: str, grpc_address: str, model: str, rows: np.ndarray) -> dict[str, Any]:
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    grpc_client = InferenceGRPCClient(grpc_address, timeout=30, retries=0)
    wrong = rows[:, :-1]  # one feature short
    try:
        return {
            "rest_live": await _outcome(lambda: rest.is_server_live(http_url)),
            "rest_ready": await _outcome(lambda: rest.is_server_ready(http_url)),
            "rest_model_ready": await _outcome(lambda: rest.is_model_ready(http_url, model)),
            "rest_json": await _outcome(
                lambda: _rest_infer(rest, http_url, model, rows, binary=False, id="rest-json")
            ),
            "rest_binary": await _outcome(
                lambda: _rest_infer(rest, http_url, model, rows, binary=True, id="rest-binary")
            ),
            "rest_unknown_model": await _outcome(
                lambda: _rest_infer(rest, http_url, "no_such_model", rows, binary=False, id="x")
            ),
            "rest_wrong_shape": await _outcome(
                lambda: _rest_infer(rest, http_url, model, wrong, binary=False, id="x")
            ),
            "grpc_live": await _outcome(grpc_client.is_server_live),
            "grpc_ready": await _outcome(grpc_client.is_server_ready),
            "grpc_model_ready": await _outcome(lambda: grpc_client.is_model_ready(model)),
            "grpc": await _outcome(lambda: _grpc_infer(grpc_client, model, rows, id="grpc")),
            "grpc_wrong_shape": await _outcome(
                lambda: _grpc_infer(grpc_client, model, wrong, id="x")
            ),
        }
    finally:
        await rest.close()
        await grpc_client.close()


async def _rest_infer(
    client: InferenceRESTClient, url: str, model: str, rows: np.ndarray, *, binary: bool, id: str
) -> dict[str, Any]:
    request = _request(model, rows, binary=binary, request_id=id)
    headers: dict[str, str] = {}
    response = await client.infer(url, request, model_name=model, response_headers=headers)
    # whether the outputs came back as binary tensor data (the header says where JSON ends)
    return _outputs(response, binary="inference-header-content-length" in headers)


async def _grpc_infer(
    client: InferenceGRPCClient, model: str, rows: np.ndarray, *, id: str
) -> dict[str, Any]:
    return _outputs(await client.infer(_request(model, rows, binary=True, request_id=id)))


if __name__ == "__main__":
    http_url, grpc_address, model, rows_file = sys.argv[1:5]
    with open(rows_file) as file:
        rows = np.asarray(json.load(file), dtype=np.float32)
    print(json.dumps(asyncio.run(main(http_url, grpc_address, model, rows))))
