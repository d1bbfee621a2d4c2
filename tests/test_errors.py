"""Every way a request can be wrong, on both transports: the status, the message, and that the
server keeps serving afterwards.

HTTP errors must be JSON `{"error": "..."}` naming the culprit, never 422, never a traceback;
gRPC errors must carry a specific status code, never UNKNOWN. After each test a good request on
each transport must still succeed and match onnxruntime, and the server must not have logged a
Python traceback while the test ran.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pytest
from conftest import (
    HttpAnswer,
    Server,
    copy_credit_risk,
    credit_risk_rows,
    http_request,
    model_file,
    run_direct,
    start_server,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto import inference_pb2 as pb
from gateway._proto import inference_pb2_grpc as pb_grpc

TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def stub(grpc_address: str):
    with grpc.insecure_channel(grpc_address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(autouse=True)
def still_serving(server: Server, http_url: str, stub, repository: Path, request):
    """After every test: no traceback was logged, and good requests still get right answers."""
    logged = len(server.lines)
    yield
    new_lines = "".join(server.lines[logged:])
    assert "Traceback" not in new_lines, new_lines
    assert "unhandled error" not in new_lines, new_lines
    rng = np.random.default_rng(zlib.crc32(request.node.name.encode()))
    features = credit_risk_rows(rng, 3)
    expected = run_direct(model_file(repository, "credit_risk", "2"), {"features": features})
    answer = http_request(
        "POST", f"{http_url}/v2/models/credit_risk/infer", _body(_features(features))
    )
    assert answer.status == 200, answer.body
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    np.testing.assert_array_equal(outputs["label"]["data"], expected["label"])
    message = pb.ModelInferRequest(model_name="credit_risk")
    _typed(message, "features", "FP32", [3, 20], features.reshape(-1).tolist())
    response = stub.ModelInfer(message, timeout=TIMEOUT_S)
    labels = {t.name: list(t.contents.int64_contents) for t in response.outputs}["label"]
    np.testing.assert_array_equal(labels, expected["label"])


# ---- request builders -------------------------------------------------------------------------


def _input(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def _features(features: np.ndarray) -> dict[str, Any]:
    return _input("features", "FP32", list(features.shape), features.reshape(-1).tolist())


def _body(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


def _typed(
    message: pb.ModelInferRequest, name: str, datatype: str, shape: list[int], values: list
) -> None:
    field = {
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
        "INT64": "int64_contents",
        "UINT8": "uint_contents",
        "BYTES": "bytes_contents",
    }.get(datatype, "fp32_contents")
    tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)


def _grpc_from_body(model: str, body: dict[str, Any], version: str = "") -> pb.ModelInferRequest:
    """The typed gRPC twin of a JSON body built by `_body`."""
    message = pb.ModelInferRequest(model_name=model, model_version=version)
    for item in body["inputs"]:
        data = np.asarray(item["data"]).reshape(-1).tolist()
        _typed(message, item["name"], item["datatype"], item["shape"], data)
    for output in body.get("outputs", []):
        message.outputs.add(name=output["name"])
    return message


def assert_http_error(answer: HttpAnswer, status: int, *fragments: str) -> str:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
    document = orjson.loads(answer.body)
    assert list(document) == ["error"], document
    message = document["error"]
    assert isinstance(message, str) and message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def assert_grpc_error(call: Callable[[], Any], code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error = raised.value
    assert error.code() != grpc.StatusCode.UNKNOWN, error.details()
    assert error.code() == code, (error.code(), error.details())
    message = error.details()
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---- invalid inputs: one table, both transports -------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bad request as a JSON body and, when it has one, its typed gRPC twin."""

    id: str
    model: str
    body: dict[str, Any]
    fragments: tuple[str, ...]
    grpc: bool = True


def _cases() -> list[Case]:
    rng = np.random.default_rng(3000)
    two = credit_risk_rows(rng, 2)
    flat = two.reshape(-1).tolist()
    a, b = rng.standard_normal((2, 2, 4)).astype(np.float32).tolist()
    add_a = _input("a", "FP32", [2, 4], a)
    add_b = _input("b", "FP32", [2, 4], b)
    return [
        Case(
            "unknown-datatype",
            "credit_risk",
            _body(_input("features", "FLOAT32", [2, 20], flat)),
            ("features", "FLOAT32"),
        ),
        Case(
            "datatype-differs-from-model",
            "credit_risk",
            _body(_input("features", "FP64", [2, 20], flat)),
            ("features", "FP64", "FP32"),
        ),
        Case(
            "data-length-not-shape-product",
            "credit_risk",
            _body(_input("features", "FP32", [2, 20], flat[:-1])),
            ("features", "39"),
        ),
        Case(
            "wrong-rank",
            "credit_risk",
            _body(_input("features", "FP32", [40], flat)),
            ("features", "shape"),
        ),
        Case(
            "wrong-feature-count",
            "credit_risk",
            _body(_input("features", "FP32", [4, 10], flat)),
            ("features", "[4, 10]"),
        ),
        Case(
            "negative-dimension",
            "credit_risk",
            _body(_input("features", "FP32", [-2, 20], flat)),
            ("features", "negative"),
        ),
        Case(
            "no-elements-but-dimensions-past-numpy",
            "credit_risk",
            _body(_input("features", "FP32", [0, 2**31, 2**31], [])),
            ("features", "too large"),
        ),
        Case(
            "more-dimensions-than-numpy-takes",
            "credit_risk",
            _body(_input("features", "FP32", [1] * 70, [1.0])),
            ("features", "70 dimensions"),
        ),
        Case(
            "zero-rows",
            "credit_risk",
            _body(_input("features", "FP32", [0, 20], [])),
            ("features", "no elements"),
        ),
        Case(
            "batch-over-max-batch-size",
            "credit_risk",
            _body(
                _input(
                    "features",
                    "FP32",
                    [65, 20],
                    credit_risk_rows(rng, 65).reshape(-1).tolist(),
                )
            ),
            ("65", "max_batch_size"),
        ),
        Case("missing-input", "add_sub", _body(add_a), ("missing", "b")),
        Case(
            "inputs-disagree-on-batch",
            "add_sub",
            _body(add_a, _input("b", "FP32", [1, 4], b[0])),
            ("batch",),
        ),
        Case("duplicate-input", "add_sub", _body(add_a, add_b, add_a), ("'a'",)),
        Case(
            "empty-input-name",
            "credit_risk",
            _body(_input("", "FP32", [2, 20], flat)),
            ("name",),
        ),
        Case(
            "unknown-input-name",
            "credit_risk",
            _body(_input("featurez", "FP32", [2, 20], flat)),
            ("featurez",),
        ),
        Case(
            "unknown-requested-output",
            "credit_risk",
            _body(_input("features", "FP32", [2, 20], flat), outputs=[{"name": "nope"}]),
            ("nope",),
        ),
        Case(
            "output-requested-twice",
            "credit_risk",
            _body(
                _input("features", "FP32", [2, 20], flat),
                outputs=[{"name": "label"}, {"name": "label"}],
            ),
            ("label",),
        ),
        Case(
            "fixed-shape-model-given-other-shape",
            "fixed_shape",
            _body(_input("x", "FP32", [1, 3], [1.0, 2.0, 3.0])),
            ("x", "[1, 3]"),
        ),
        Case(
            "value-out-of-range",
            "identity_uint8",
            _body(_input("INPUT", "UINT8", [1, 3], [1, 300, 2])),
            ("INPUT", "300"),
        ),
        Case(
            "numeric-data-for-bytes",
            "identity_bytes",
            _body(_input("INPUT", "BYTES", [1, 3], [1, 2, 3])),
            ("INPUT",),
            grpc=False,
        ),
        Case(
            "no-inputs",
            "credit_risk",
            _body(),
            ("inputs",),
        ),
    ]


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_invalid_input(http_url, case: Case):
    answer = http_request("POST", f"{http_url}/v2/models/{case.model}/infer", case.body)
    assert_http_error(answer, 400, *case.fragments)


GRPC_CASES = [c for c in CASES if c.grpc]


@pytest.mark.parametrize("case", GRPC_CASES, ids=[c.id for c in GRPC_CASES])
def test_grpc_invalid_input(stub, case: Case):
    message = _grpc_from_body(case.model, case.body)
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        *case.fragments,
    )


def test_failed_requests_count_as_failures(http_url, stub):
    def fail_count() -> int:
        answer = http_request("GET", f"{http_url}/v2/models/add_sub/versions/1/stats")
        (entry,) = answer.json()["model_stats"]
        return entry["inference_stats"]["fail"]["count"]

    before = fail_count()
    body = _body(_input("a", "FP32", [1, 4], [1, 2, 3, 4]))
    http_request("POST", f"{http_url}/v2/models/add_sub/infer", body)
    with pytest.raises(grpc.RpcError):
        stub.ModelInfer(_grpc_from_body("add_sub", body), timeout=TIMEOUT_S)
    assert fail_count() == before + 2


# ---- not found and not ready ------------------------------------------------------------------


def _good_features_body() -> dict[str, Any]:
    return _body(_features(credit_risk_rows(np.random.default_rng(3100), 1)))


@pytest.mark.parametrize(
    ("model", "version", "fragments"),
    [
        ("no_such_model", "", ("no_such_model",)),
        ("credit_risk", "9", ("'9'", "credit_risk")),
        ("credit_risk", "two", ("two", "credit_risk")),
    ],
    ids=["unknown-model", "unknown-version", "non-integer-version"],
)
def test_not_found(http_url, stub, model, version, fragments):
    body = _good_features_body()
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    answer = http_request("POST", f"{http_url}{path}/infer", body)
    assert_http_error(answer, 404, *fragments)
    assert_http_error(http_request("GET", f"{http_url}{path}"), 404, *fragments)
    message = _grpc_from_body(model, body, version)
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S), grpc.StatusCode.NOT_FOUND, *fragments
    )
    metadata = pb.ModelMetadataRequest(name=model, version=version)
    assert_grpc_error(
        lambda: stub.ModelMetadata(metadata, timeout=TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        *fragments,
    )


def test_unavailable_model(http_url, stub):
    body = _body(_input("INPUT", "FP32", [1, 3], [1.0, 2.0, 3.0]))
    for model in ("broken", "bad_config"):
        answer = http_request("POST", f"{http_url}/v2/models/{model}/infer", body)
        assert_http_error(answer, 503, model, "not ready")
        message = _grpc_from_body(model, body)
        assert_grpc_error(
            lambda message=message: stub.ModelInfer(message, timeout=TIMEOUT_S),
            grpc.StatusCode.UNAVAILABLE,
            model,
        )
    answer = http_request("GET", f"{http_url}/v2/models/broken/versions/1")
    assert_http_error(answer, 503, "broken")


# ---- HTTP-only: the body itself ---------------------------------------------------------------


def _post_raw(http_url: str, body: bytes, headers: dict[str, str] | None = None) -> HttpAnswer:
    return http_request("POST", f"{http_url}/v2/models/credit_risk/infer", body, headers)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b'{"inputs": [', '{"inputs": "\u00e9"'.encode("latin-1")],
    ids=["garbage", "empty", "truncated", "not-utf8"],
)
def test_http_malformed_json(http_url, body):
    assert_http_error(_post_raw(http_url, body), 400, "JSON")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (b"[1, 2]", ("object",)),
        (b'{"inputs": {}}', ("inputs",)),
        (b'{"inputs": [1]}', ("input",)),
        (b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20]}]}', ("data",)),
        (
            b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": "1,20", "data": []}]}',
            ("shape",),
        ),
        (
            b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20], "data": 5}]}',
            ("list",),
        ),
        (
            b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 2],'
            b' "data": [[1], [2, 3]]}]}',
            ("features",),
        ),
        (
            b'{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 20],'
            b' "data": [' + b",".join([b'"x"'] * 20) + b"]}]}",
            ("features", "FP32"),
        ),
    ],
    ids=[
        "top-level-list",
        "inputs-not-list",
        "input-not-object",
        "no-data",
        "shape-not-list",
        "data-not-list",
        "ragged-data",
        "strings-for-fp32",
    ],
)
def test_http_malformed_request(http_url, body, fragments):
    assert_http_error(_post_raw(http_url, body), 400, *fragments)


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("id", 7, "id"),
        ("outputs", "label", "outputs"),
        ("outputs", [{"parameters": {}}], "output"),
        ("parameters", [1], "parameters"),
    ],
    ids=["id-not-string", "outputs-not-list", "output-without-name", "parameters-not-object"],
)
def test_http_malformed_fields_next_to_good_inputs(http_url, key, value, fragment):
    body = _good_features_body()
    body[key] = value
    assert_http_error(_post_raw(http_url, orjson.dumps(body)), 400, fragment)


def _binary_request(
    features: np.ndarray, declared_size: int, header_length: str | None = None
) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": list(features.shape),
                    "parameters": {"binary_data_size": declared_size},
                }
            ]
        }
    )
    length = str(len(header)) if header_length is None else header_length
    return header + features.tobytes(), {"Inference-Header-Content-Length": length}


def test_http_binary_data_size_past_the_body(http_url):
    features = credit_risk_rows(np.random.default_rng(3200), 2)
    body, headers = _binary_request(features, features.nbytes + 4)
    assert_http_error(_post_raw(http_url, body, headers), 400, "features", "binary_data_size")


def test_http_binary_data_size_short_of_the_shape(http_url):
    features = credit_risk_rows(np.random.default_rng(3201), 2)
    body, headers = _binary_request(features, features.nbytes - 4)
    # the tensor's bytes do not fit its shape, and 4 bytes are left over: either is an error
    assert_http_error(_post_raw(http_url, body, headers), 400)


def test_http_binary_bytes_left_over(http_url):
    features = credit_risk_rows(np.random.default_rng(3202), 2)
    body, headers = _binary_request(features, features.nbytes)
    assert_http_error(_post_raw(http_url, body + b"\x00" * 8, headers), 400, "8 bytes")


@pytest.mark.parametrize("value", ["abc", "-1", "999999999", "", "12.5"])
def test_http_header_length_garbage(http_url, value):
    features = credit_risk_rows(np.random.default_rng(3203), 1)
    body, headers = _binary_request(features, features.nbytes, header_length=value)
    assert_http_error(_post_raw(http_url, body, headers), 400)


def test_http_binary_without_header_length_is_malformed_json(http_url):
    features = credit_risk_rows(np.random.default_rng(3204), 1)
    body, _ = _binary_request(features, features.nbytes)
    assert_http_error(_post_raw(http_url, body), 400, "JSON")


def test_http_bytes_that_are_not_utf8_for_a_string_model(http_url, stub):
    """ONNX string tensors hold text: raw BYTES that are not UTF-8 are the client's error."""
    elements = [b"ok", b"\xff\xfe", b"x"]
    raw = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT",
                    "datatype": "BYTES",
                    "shape": [1, 3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    answer = http_request(
        "POST",
        f"{http_url}/v2/models/identity_bytes/infer",
        header + raw,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert_http_error(answer, 400, "INPUT", "UTF-8")
    message = pb.ModelInferRequest(model_name="identity_bytes")
    _typed(message, "INPUT", "BYTES", [1, 3], elements)
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INPUT",
        "UTF-8",
    )


def test_http_bytes_element_length_runs_past_the_data(http_url):
    raw = (100).to_bytes(4, "little") + b"short"
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT",
                    "datatype": "BYTES",
                    "shape": [1, 3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    answer = http_request(
        "POST",
        f"{http_url}/v2/models/identity_bytes/infer",
        header + raw,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert_http_error(answer, 400, "INPUT", "BYTES")


@pytest.mark.parametrize(
    ("datatype", "model", "data"),
    [
        ("INT64", "identity_int64", [1.5, 2, 3]),
        ("FP32", "identity_fp32", [None, 1.0, 2.0]),
        ("FP32", "identity_fp32", ["1.5", "2", "3"]),
        ("BOOL", "identity_bool", [2, 0, 1]),
    ],
    ids=["float-for-int64", "null-for-fp32", "numeric-strings-for-fp32", "two-for-bool"],
)
def test_http_json_values_of_the_wrong_type_are_refused(http_url, datatype, model, data):
    body = _body(_input("INPUT", datatype, [1, 3], data))
    answer = http_request("POST", f"{http_url}/v2/models/{model}/infer", body)
    assert_http_error(answer, 400, "INPUT")


# ---- gRPC-only: contents ------------------------------------------------------------------------


def test_grpc_raw_size_not_shape(stub):
    features = credit_risk_rows(np.random.default_rng(3300), 2)
    message = pb.ModelInferRequest(model_name="credit_risk")
    message.inputs.add(name="features", datatype="FP32", shape=[2, 20])
    message.raw_input_contents.append(features.tobytes()[:-4])
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "features",
        str(features.nbytes - 4),
    )


def test_grpc_raw_count_not_inputs(stub):
    features = credit_risk_rows(np.random.default_rng(3301), 1)
    message = pb.ModelInferRequest(model_name="credit_risk")
    message.inputs.add(name="features", datatype="FP32", shape=[1, 20])
    message.raw_input_contents.extend([features.tobytes(), features.tobytes()])
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "raw_input_contents",
    )


def test_grpc_raw_and_typed_contents_together(stub):
    features = credit_risk_rows(np.random.default_rng(3302), 1)
    message = pb.ModelInferRequest(model_name="credit_risk")
    _typed(message, "features", "FP32", [1, 20], features.reshape(-1).tolist())
    message.raw_input_contents.append(features.tobytes())
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "features",
        "contents",
    )


def test_grpc_typed_fp16_is_refused(stub):
    message = pb.ModelInferRequest(model_name="identity_fp16")
    message.inputs.add(name="INPUT", datatype="FP16", shape=[1, 3])
    message.inputs[0].contents.fp32_contents.extend([1.0, 2.0, 3.0])
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INPUT",
        "FP16",
    )


def test_grpc_empty_parameter_is_refused(stub):
    features = credit_risk_rows(np.random.default_rng(3303), 1)
    message = pb.ModelInferRequest(model_name="credit_risk")
    _typed(message, "features", "FP32", [1, 20], features.reshape(-1).tolist())
    message.parameters["empty"].Clear()  # present, with no value chosen
    assert_grpc_error(
        lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
        grpc.StatusCode.INVALID_ARGUMENT,
        "empty",
    )


def test_grpc_model_ready_of_unknown_model(stub):
    assert_grpc_error(
        lambda: stub.ModelReady(pb.ModelReadyRequest(name="no_such_model"), timeout=TIMEOUT_S),
        grpc.StatusCode.NOT_FOUND,
        "no_such_model",
    )


def test_grpc_statistics_of_unknown_version(stub):
    request = pb.ModelStatisticsRequest(name="credit_risk", version="9")
    assert_grpc_error(
        lambda: stub.ModelStatistics(request, timeout=TIMEOUT_S), grpc.StatusCode.NOT_FOUND, "9"
    )


# ---- model failure at run time ------------------------------------------------------------------


def test_model_failure_is_internal_with_the_reason(http_url, stub, repository):
    rng = np.random.default_rng(3400)
    data = rng.standard_normal(6).astype(np.float32)
    bad = _body(_input("data", "FP32", [6], data.tolist()), _input("target", "INT64", [2], [4, 4]))
    answer = http_request("POST", f"{http_url}/v2/models/reshape/infer", bad)
    message = assert_http_error(answer, 500, "reshape")
    assert "Reshape" in message or "reshape" in message.split("failed:", 1)[-1]
    assert_grpc_error(
        lambda: stub.ModelInfer(_grpc_from_body("reshape", bad), timeout=TIMEOUT_S),
        grpc.StatusCode.INTERNAL,
        "reshape",
    )
    # the model still serves a request it can run
    good = _body(_input("data", "FP32", [6], data.tolist()), _input("target", "INT64", [2], [2, 3]))
    answer = http_request("POST", f"{http_url}/v2/models/reshape/infer", good)
    assert answer.status == 200, answer.body
    (output,) = answer.json()["outputs"]
    expected = run_direct(
        model_file(repository, "reshape"), {"data": data, "target": np.array([2, 3])}
    )["reshaped"]
    assert output["shape"] == [2, 3]
    np.testing.assert_array_equal(np.asarray(output["data"], np.float32).reshape(2, 3), expected)


# ---- routes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("POST", "/v2/models/credit_risk/versions/1/nothing", 404),
        ("GET", "/v2/models/credit_risk/infer", 405),
        ("DELETE", "/v2/health/live", 405),
        ("PUT", "/v2/repository/index", 405),
    ],
)
def test_http_routes(http_url, method, path, status):
    assert_http_error(http_request(method, f"{http_url}{path}"), status)


def test_http_repository_index_with_malformed_body(http_url):
    answer = http_request("POST", f"{http_url}/v2/repository/index", b"{nope")
    assert_http_error(answer, 400, "JSON")


# ---- size limits (a server of its own) ----------------------------------------------------------

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("small-limit")
    copy_credit_risk(root / "models")
    with start_server(root / "models", f"max_request_bytes = {LIMIT}\n", config_dir=root) as srv:
        yield srv


def _big_features(rows: int) -> np.ndarray:
    return credit_risk_rows(np.random.default_rng(3500), rows)


def test_http_body_over_the_limit(small_server: Server):
    logged = len(small_server.lines)
    # a request the model would take, padded past the limit with a parameter
    body = orjson.dumps(_body(_features(_big_features(64)), parameters={"pad": "x" * LIMIT}))
    assert len(body) > LIMIT
    answer = http_request("POST", f"{small_server.http_url}/v2/models/credit_risk/infer", body)
    assert_http_error(answer, 413, str(LIMIT))
    _assert_serves(small_server, logged)


def test_grpc_message_over_the_limit(small_server: Server):
    logged = len(small_server.lines)
    features = _big_features(64)
    message = pb.ModelInferRequest(model_name="credit_risk")
    for _ in range(20):  # 20 x 5 KiB of raw data: past the limit, the content does not matter
        message.inputs.add(name="features", datatype="FP32", shape=[64, 20])
        message.raw_input_contents.append(features.tobytes())
    assert message.ByteSize() > LIMIT
    with grpc.insecure_channel(small_server.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert_grpc_error(
            lambda: stub.ModelInfer(message, timeout=TIMEOUT_S),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
    _assert_serves(small_server, logged)


def _assert_serves(target: Server, logged: int) -> None:
    """A good request succeeds, and nothing since line `logged` of the log is a traceback."""
    features = credit_risk_rows(np.random.default_rng(3501), 2)
    answer = http_request(
        "POST",
        f"{target.http_url}/v2/models/credit_risk/infer",
        _body(_features(features)),
    )
    assert answer.status == 200, answer.body
    expected = run_direct(model_file(target.repository, "credit_risk", "2"), {"features": features})
    outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    assert "Traceback" not in "".join(target.lines[logged:])


# ---- strict readiness (a server of its own) -----------------------------------------------------


def test_strict_readiness_with_a_broken_model(server_factory, tmp_path):
    """By default one broken model makes the server unready on both transports (health
    included), while the models that loaded still serve."""
    root = tmp_path / "models"
    copy_credit_risk(root)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    strict = server_factory(root, expect_ready=False)
    assert "ready: no" in strict.ready_line

    answer = http_request("GET", f"{strict.http_url}/v2/health/ready")
    assert (answer.status, answer.json()) == (400, {"ready": False})
    assert http_request("GET", f"{strict.http_url}/v2/health/live").status == 200
    with grpc.insecure_channel(strict.grpc_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT_S).ready
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=TIMEOUT_S).live
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S
        )
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
    _assert_serves(strict, 0)
