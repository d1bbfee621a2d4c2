"""V2 REST against a real gateway on 127.0.0.1, with tritonclient.http as the client and plain
urllib requests where a client library would hide the wire.

Every inference answer is compared with a direct onnxruntime session on the same .onnx file.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np
import onnx_models
import orjson
import pytest
import tritonclient.http as httpclient
from conftest import (
    CREDIT_RISK_FEATURES,
    Server,
    assert_same,
    credit_risk_rows,
    http_request,
    identity_values,
    model_file,
    ort_session,
    run_direct,
)
from prometheus_client.parser import text_string_to_metric_families

# onnxruntime's type names -> V2 datatypes (the spec's mapping), for metadata expectations
V2_BY_ORT_TYPE = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


@pytest.fixture(scope="module")
def client(http_address: str):
    client = httpclient.InferenceServerClient(url=http_address, network_timeout=30.0)
    yield client
    client.close()


def _tensors(args) -> list[dict]:
    """V2 metadata of onnxruntime NodeArgs: dynamic dimensions are -1."""
    return [
        {
            "name": arg.name,
            "datatype": V2_BY_ORT_TYPE[arg.type],
            "shape": [d if isinstance(d, int) else -1 for d in arg.shape],
        }
        for arg in args
    ]


def _credit_risk_oracle(repository: Path, features: np.ndarray, version: str = "2") -> dict:
    return run_direct(model_file(repository, "credit_risk", version), {"features": features})


def _assert_credit_risk(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(outputs["label"], expected["label"])
    assert outputs["label"].dtype == np.int64
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], rtol=1e-6)


def _json_body(response: bytes) -> dict:
    return orjson.loads(response)


def _outputs_from_json(document: dict) -> dict[str, np.ndarray]:
    dtypes = {"INT64": np.int64, "FP32": np.float32}
    return {
        o["name"]: np.asarray(o["data"], dtype=dtypes[o["datatype"]]).reshape(o["shape"])
        for o in document["outputs"]
    }


# ---- health and metadata -----------------------------------------------------------------


def test_live_and_ready(client, http_url):
    assert client.is_server_live()
    assert client.is_server_ready()
    live = http_request("GET", f"{http_url}/v2/health/live")
    assert (live.status, live.json()) == (200, {"live": True})
    ready = http_request("GET", f"{http_url}/v2/health/ready")
    assert (ready.status, ready.json()) == (200, {"ready": True})


def test_server_metadata(client):
    metadata = client.get_server_metadata()
    assert metadata["name"] == "modelgate"
    assert metadata["version"] == package_version("modelgate")
    for extension in ("binary_tensor_data", "parameters", "statistics"):
        assert extension in metadata["extensions"]


def test_model_metadata_unversioned(client, repository):
    metadata = client.get_model_metadata("credit_risk")
    session = ort_session(model_file(repository, "credit_risk", "2"))
    assert metadata == {
        "name": "credit_risk",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": _tensors(session.get_inputs()),
        "outputs": _tensors(session.get_outputs()),
    }


@pytest.mark.parametrize("version", ["1", "2"])
def test_model_metadata_versioned(client, repository, version):
    metadata = client.get_model_metadata("credit_risk", model_version=version)
    session = ort_session(model_file(repository, "credit_risk", version))
    assert metadata["versions"] == [version]
    assert metadata["inputs"] == _tensors(session.get_inputs())
    assert metadata["outputs"] == _tensors(session.get_outputs())


@pytest.mark.parametrize("datatype", list(onnx_models.IDENTITY_TYPES))
def test_identity_metadata_reports_each_datatype(client, datatype):
    metadata = client.get_model_metadata(onnx_models.identity_name(datatype))
    width = onnx_models.IDENTITY_WIDTH
    assert metadata["inputs"] == [{"name": "INPUT", "datatype": datatype, "shape": [-1, width]}]
    assert metadata["outputs"] == [{"name": "OUTPUT", "datatype": datatype, "shape": [-1, width]}]


def test_model_ready(client, http_url):
    assert client.is_model_ready("credit_risk")
    assert client.is_model_ready("credit_risk", model_version="1")
    assert client.is_model_ready("fixed_shape")
    assert not client.is_model_ready("broken")
    answer = http_request("GET", f"{http_url}/v2/models/broken/ready")
    assert answer.status == 400
    assert answer.json()["ready"] is False
    answer = http_request("GET", f"{http_url}/v2/models/credit_risk/versions/2/ready")
    assert (answer.status, answer.json()["ready"]) == (200, True)


def test_model_config_batching(client, repository):
    config = client.get_model_config("credit_risk")
    declared = tomllib.loads((repository / "credit_risk" / "config.toml").read_text())
    assert config["name"] == "credit_risk"
    assert config["max_batch_size"] == declared["max_batch_size"]
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": declared["max_queue_delay_us"]
    }
    # with batching on, dims leave out the batch dimension
    inputs = {t["name"]: t for t in config["input"]}
    assert inputs["features"] == {
        "name": "features",
        "data_type": "TYPE_FP32",
        "dims": [CREDIT_RISK_FEATURES],
    }
    outputs = {t["name"]: t for t in config["output"]}
    assert outputs["label"]["data_type"] == "TYPE_INT64"
    assert outputs["label"]["dims"] == []
    assert outputs["probabilities"]["dims"] == [2]


def test_model_config_without_batching(client):
    config = client.get_model_config("fixed_shape")
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config
    assert config["input"] == [
        {"name": "x", "data_type": "TYPE_FP32", "dims": list(onnx_models.FIXED_SHAPE)}
    ]
    assert client.get_model_config("identity_bytes")["input"][0]["data_type"] == "TYPE_STRING"


# ---- infer: JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_infer_json(http_url, repository, nested):
    rng = np.random.default_rng(101 + nested)
    features = credit_risk_rows(rng, 5)
    data = features.tolist() if nested else features.reshape(-1).tolist()
    body = {"inputs": [{"name": "features", "shape": [5, 20], "datatype": "FP32", "data": data}]}
    answer = http_request("POST", f"{http_url}/v2/models/credit_risk/infer", body)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    assert document["model_name"] == "credit_risk"
    assert document["model_version"] == "2"
    shapes = {o["name"]: (o["datatype"], o["shape"]) for o in document["outputs"]}
    assert shapes == {"label": ("INT64", [5]), "probabilities": ("FP32", [5, 2])}
    _assert_credit_risk(_outputs_from_json(document), _credit_risk_oracle(repository, features))


def test_infer_fixed_shape_model(http_url, repository):
    rng = np.random.default_rng(102)
    x = rng.standard_normal(onnx_models.FIXED_SHAPE).astype(np.float32)
    body = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": x.tolist()}]}
    answer = http_request("POST", f"{http_url}/v2/models/fixed_shape/infer", body)
    assert answer.status == 200, answer.body
    (output,) = answer.json()["outputs"]
    expected = run_direct(model_file(repository, "fixed_shape"), {"x": x})["y"]
    assert output["shape"] == [2, 3]
    np.testing.assert_allclose(np.asarray(output["data"], np.float32).reshape(2, 3), expected)


def test_infer_reshape_model_succeeds_on_good_input(client, repository):
    rng = np.random.default_rng(103)
    data = rng.standard_normal(12).astype(np.float32)
    target = np.array([3, 4], dtype=np.int64)
    inputs = [
        httpclient.InferInput("data", [12], "FP32"),
        httpclient.InferInput("target", [2], "INT64"),
    ]
    inputs[0].set_data_from_numpy(data)
    inputs[1].set_data_from_numpy(target, binary_data=False)
    result = client.infer("reshape", inputs)
    expected = run_direct(model_file(repository, "reshape"), {"data": data, "target": target})
    np.testing.assert_array_equal(result.as_numpy("reshaped"), expected["reshaped"])


# ---- infer: the binary tensor data extension -------------------------------------------------


@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
def test_infer_binary_extension(client, repository, binary_in, binary_out):
    rng = np.random.default_rng(200 + 2 * binary_in + binary_out)
    rows = int(rng.integers(1, 9))
    features = credit_risk_rows(rng, rows)
    infer_input = httpclient.InferInput("features", list(features.shape), "FP32")
    infer_input.set_data_from_numpy(features, binary_data=binary_in)
    outputs = [
        httpclient.InferRequestedOutput(name, binary_data=binary_out)
        for name in ("label", "probabilities")
    ]
    result = client.infer("credit_risk", [infer_input], outputs=outputs)
    response = result.get_response()
    for output in response["outputs"]:
        assert ("data" in output) is not binary_out
        assert ("binary_data_size" in output.get("parameters", {})) is binary_out
    got = {name: result.as_numpy(name) for name in ("label", "probabilities")}
    _assert_credit_risk(got, _credit_risk_oracle(repository, features))


def test_infer_binary_raw_wire(http_url, repository):
    """The extension on the wire: two inputs sent raw in order, outputs asked raw by default."""
    rng = np.random.default_rng(210)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": n,
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 48},
                }
                for n in ("a", "b")
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    answer = http_request(
        "POST",
        f"{http_url}/v2/models/add_sub/infer",
        header + a.tobytes() + b.tobytes(),
        {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert answer.status == 200, answer.body
    json_length = int(answer.headers["Inference-Header-Content-Length"])
    document = orjson.loads(answer.body[:json_length])
    raw = answer.body[json_length:]
    expected = run_direct(model_file(repository, "add_sub"), {"a": a, "b": b})
    offset = 0
    for output in document["outputs"]:
        size = output["parameters"]["binary_data_size"]
        got = np.frombuffer(raw[offset : offset + size], dtype=np.float32).reshape(output["shape"])
        np.testing.assert_array_equal(got, expected[output["name"]])
        offset += size
    assert offset == len(raw)
    assert [o["name"] for o in document["outputs"]] == ["sum", "difference"]


def test_infer_binary_and_json_inputs_mixed(client, repository):
    rng = np.random.default_rng(211)
    a = rng.standard_normal((2, 4)).astype(np.float32)
    b = rng.standard_normal((2, 4)).astype(np.float32)
    inputs = [httpclient.InferInput(n, [2, 4], "FP32") for n in ("a", "b")]
    inputs[0].set_data_from_numpy(a, binary_data=False)
    inputs[1].set_data_from_numpy(b, binary_data=True)
    outputs = [
        httpclient.InferRequestedOutput("sum", binary_data=True),
        httpclient.InferRequestedOutput("difference", binary_data=False),
    ]
    result = client.infer("add_sub", inputs, outputs=outputs)
    expected = run_direct(model_file(repository, "add_sub"), {"a": a, "b": b})
    np.testing.assert_array_equal(result.as_numpy("sum"), expected["sum"])
    np.testing.assert_array_equal(result.as_numpy("difference"), expected["difference"])


# ---- infer: outputs, id, parameters, versions ----------------------------------------------


def test_requested_outputs_are_the_only_ones_returned(client, repository):
    rng = np.random.default_rng(300)
    features = credit_risk_rows(rng, 3)
    infer_input = httpclient.InferInput("features", [3, 20], "FP32")
    infer_input.set_data_from_numpy(features)
    result = client.infer(
        "credit_risk", [infer_input], outputs=[httpclient.InferRequestedOutput("probabilities")]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("label") is None
    expected = _credit_risk_oracle(repository, features)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6
    )


def test_requested_outputs_follow_the_request_order(http_url, repository):
    rng = np.random.default_rng(301)
    a, b = rng.standard_normal((2, 1, 4)).astype(np.float32)
    body = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": a.tolist()},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": b.tolist()},
        ],
        "outputs": [{"name": "difference"}, {"name": "sum"}],
    }
    answer = http_request("POST", f"{http_url}/v2/models/add_sub/infer", body)
    assert answer.status == 200, answer.body
    document = answer.json()
    assert [o["name"] for o in document["outputs"]] == ["difference", "sum"]
    expected = run_direct(model_file(repository, "add_sub"), {"a": a, "b": b})
    for output in document["outputs"]:
        got = np.asarray(output["data"], np.float32).reshape(output["shape"])
        np.testing.assert_array_equal(got, expected[output["name"]])


def test_id_is_echoed_and_parameters_accepted(client, http_url):
    rng = np.random.default_rng(302)
    features = credit_risk_rows(rng, 1)
    infer_input = httpclient.InferInput("features", [1, 20], "FP32")
    infer_input.set_data_from_numpy(features)
    request_id = f"request-{rng.integers(1 << 30)}"
    result = client.infer(
        "credit_risk",
        [infer_input],
        request_id=request_id,
        parameters={"note": "any text", "level": 3, "flag": True},
    )
    assert result.get_response()["id"] == request_id
    # without an id the gateway makes one, so that the answer can be traced in the journal
    body = {
        "inputs": [
            {"name": "features", "shape": [1, 20], "datatype": "FP32", "data": features.tolist()}
        ]
    }
    answer = http_request("POST", f"{http_url}/v2/models/credit_risk/infer", body)
    assert answer.status == 200
    made_up = answer.json()["id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)
    again = http_request("POST", f"{http_url}/v2/models/credit_risk/infer", body)
    assert again.json()["id"] != made_up


@pytest.mark.parametrize("version", ["1", "2"])
def test_versioned_infer_hits_that_version(client, repository, version):
    rng = np.random.default_rng(310 + int(version))
    features = credit_risk_rows(rng, 16)
    infer_input = httpclient.InferInput("features", [16, 20], "FP32")
    infer_input.set_data_from_numpy(features)
    result = client.infer("credit_risk", [infer_input], model_version=version)
    assert result.get_response()["model_version"] == version
    got = {name: result.as_numpy(name) for name in ("label", "probabilities")}
    _assert_credit_risk(got, _credit_risk_oracle(repository, features, version))


def test_the_two_versions_differ(repository):
    """Guards the versioned test above: it could not tell the versions apart if they agreed."""
    features = credit_risk_rows(np.random.default_rng(312), 16)
    one = _credit_risk_oracle(repository, features, "1")["probabilities"]
    two = _credit_risk_oracle(repository, features, "2")["probabilities"]
    assert not np.allclose(one, two, rtol=1e-6)


# ---- every datatype round-trips ------------------------------------------------------------


@pytest.mark.parametrize("binary_out", [True, False], ids=["out-binary", "out-json"])
@pytest.mark.parametrize("binary_in", [True, False], ids=["in-binary", "in-json"])
@pytest.mark.parametrize("datatype", list(onnx_models.IDENTITY_TYPES))
def test_datatype_round_trip(client, repository, datatype, binary_in, binary_out):
    seed = 400 + 4 * list(onnx_models.IDENTITY_TYPES).index(datatype) + 2 * binary_in + binary_out
    rng = np.random.default_rng(seed)
    values = identity_values(rng, datatype, rows=int(rng.integers(1, 5)))
    model = onnx_models.identity_name(datatype)
    infer_input = httpclient.InferInput("INPUT", list(values.shape), datatype)
    infer_input.set_data_from_numpy(values, binary_data=binary_in)
    output = httpclient.InferRequestedOutput("OUTPUT", binary_data=binary_out)
    result = client.infer(model, [infer_input], outputs=[output])
    got = result.as_numpy("OUTPUT")
    feed = values
    if datatype == "BYTES":  # onnxruntime takes str for tensor(string)
        feed = np.vectorize(lambda b: b.decode(), otypes=[object])(values)
    expected = run_direct(model_file(repository, model), {"INPUT": feed})["OUTPUT"]
    assert_same(datatype, got, expected)
    assert_same(datatype, got, values)


def test_bytes_json_carries_non_ascii_text_unchanged(http_url):
    text = ["grüße", "日本語", "🙂 ok", "", "a\u00a0b", "€"]
    body = {"inputs": [{"name": "INPUT", "shape": [2, 3], "datatype": "BYTES", "data": text}]}
    answer = http_request("POST", f"{http_url}/v2/models/identity_bytes/infer", body)
    assert answer.status == 200, answer.body
    (output,) = answer.json()["outputs"]
    assert output["data"] == text
    assert output["datatype"] == "BYTES"


# ---- statistics, repository index, metrics -------------------------------------------------


def _stats(client, model: str, version: str) -> dict:
    (entry,) = client.get_inference_statistics(model, model_version=version)["model_stats"]
    assert (entry["name"], entry["version"]) == (model, version)
    return entry


def test_statistics_count_requests(client, http_url):
    rng = np.random.default_rng(500)
    before = _stats(client, "credit_risk", "1")
    row_counts = [int(n) for n in rng.integers(1, 6, size=4)]
    for rows in row_counts:
        infer_input = httpclient.InferInput("features", [rows, 20], "FP32")
        infer_input.set_data_from_numpy(credit_risk_rows(rng, rows))
        client.infer("credit_risk", [infer_input], model_version="1")
    bad = {"inputs": [{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    answer = http_request("POST", f"{http_url}/v2/models/credit_risk/versions/1/infer", bad)
    assert answer.status == 400
    after = _stats(client, "credit_risk", "1")

    def delta(*path: str) -> int:
        old, new = before, after
        for key in path:
            old, new = old[key], new[key]
        return int(new) - int(old)

    assert delta("inference_stats", "success", "count") == len(row_counts)
    assert delta("inference_stats", "fail", "count") == 1
    assert delta("inference_count") == sum(row_counts)
    assert 1 <= delta("execution_count") <= len(row_counts)
    assert delta("inference_stats", "success", "ns") > 0
    assert int(after["last_inference"]) >= int(before["last_inference"])
    assert int(after["last_inference"]) > 0
    # every model is listed when no model is named
    everything = client.get_inference_statistics()["model_stats"]
    assert {("credit_risk", "1"), ("credit_risk", "2"), ("add_sub", "1")} <= {
        (e["name"], e["version"]) for e in everything
    }


def test_repository_index(client, http_url):
    index = client.get_model_repository_index()
    by_key = {(e["name"], e["version"]): e for e in index}
    assert by_key[("credit_risk", "1")]["state"] == "READY"
    assert by_key[("credit_risk", "2")]["state"] == "READY"
    for datatype in onnx_models.IDENTITY_TYPES:
        assert by_key[(onnx_models.identity_name(datatype), "1")]["state"] == "READY"
    broken = by_key[("broken", "1")]
    assert broken["state"] == "UNAVAILABLE"
    assert broken["reason"]
    bad_config = by_key[("bad_config", "1")]
    assert bad_config["state"] == "UNAVAILABLE"
    assert "max_batch_size" in bad_config["reason"]

    ready_only = http_request("POST", f"{http_url}/v2/repository/index", {"ready": True})
    assert ready_only.status == 200
    names = {(e["name"], e["version"]) for e in ready_only.json()}
    assert ("broken", "1") not in names
    assert ("credit_risk", "2") in names
    assert all(e["state"] == "READY" for e in ready_only.json())


def _success_count(http_url: str, model: str, version: str) -> float:
    answer = http_request("GET", f"{http_url}/metrics")
    assert answer.status == 200
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            if sample.name == "nv_inference_request_success" and sample.labels == {
                "model": model,
                "version": version,
            }:
                return sample.value
    raise AssertionError(f"no nv_inference_request_success for {model} {version}")


def test_metrics_count_successes(client, http_url):
    rng = np.random.default_rng(600)
    before = _success_count(http_url, "add_sub", "1")
    requests = 3
    for _ in range(requests):
        inputs = [httpclient.InferInput(n, [1, 4], "FP32") for n in ("a", "b")]
        for infer_input in inputs:
            infer_input.set_data_from_numpy(rng.standard_normal((1, 4)).astype(np.float32))
        client.infer("add_sub", inputs)
    assert _success_count(http_url, "add_sub", "1") == before + requests


def test_server_keeps_serving(server: Server, client):
    assert server.process.poll() is None
    assert client.is_server_live()
