"""Tests of the bench (`gateway.bench`): percentiles, medians, the open- and closed-loop
schedules under a fake clock, wire encoders, and the wrk / h2load output parsers on captured
outputs; the pure parts of the journal, compare and routing commands; the journal's append
driver on a real journal for a few tens of milliseconds; and real runs of a few seconds with
the Python load generator: both Triton peers of `compare` and its KServe peer, `routing`
against a real gateway (its admin API switching the policy, the shadow's copies counted), and
`monitoring` against four (each one's drift and accuracy reports read back).
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import peer_cache_dir
from gateway.bench import h2load, loadgen, report, wrk
from gateway.bench.cli import main
from gateway.bench.compare import (
    FLOOR,
    FLOOR_PATH,
    KSERVE,
    MLSERVER,
    PEERS,
    TRITON,
    TRITON_NOBATCH,
    TRITON_PATHS,
    CompareConfig,
    CompareError,
    PeerRatio,
    Point,
    counterpart,
    run_compare,
    summarize_rows,
)
from gateway.bench.journal import (
    AppendCase,
    AppendPoint,
    AppendRun,
    JournalBenchResult,
    append_cases,
    append_run,
    cost_pct,
    cost_rows,
    measure_appends,
    median_append,
    metrics_rates,
    mount_of,
    parse_journal_metrics,
    prediction_payloads,
    prepare_repository,
    rotated,
    server_toml,
    set_top_level_key,
)
from gateway.bench.model import ModelSpec, ModelSpecError, TensorSpec, random_rows, request_shape
from gateway.bench.monitoring import VARIANTS as MONITORING_VARIANTS
from gateway.bench.monitoring import Check as MonitoringCheck
from gateway.bench.monitoring import (
    MonitoringBenchConfig,
    MonitoringResult,
    kept_predictions,
    monitoring_toml,
    run_monitoring_bench,
    sketched_rows,
)
from gateway.bench.payloads import (
    BINARY_HEADER,
    build_request_set,
    encode_grpc_raw,
    encode_grpc_typed,
    encode_http_binary,
    encode_http_json,
    grpc_frame,
    parse_grpc_frames,
)
from gateway.bench.routing import (
    SHADOW,
    SINGLE,
    SPLIT,
    RoutingBenchConfig,
    RoutingResult,
    run_routing_bench,
    scenarios,
    two_versions,
)
from gateway.bench.stats import RunResult, median_result, percentiles, summarize
from gateway.bench.triton import TritonInstall
from tritonclient.grpc import service_pb2

from gateway.config import load_server_config
from gateway.governance.journal import JournalStats, verify_journal
from gateway.governance.records import encode_payload
from gateway.metrics import exposition, make_registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"
# Real runs against real gateways, kept to a few seconds: HTTP JSON at 2 in flight, 0.3 s, once,
# with the Python load generator, unpinned (pinning needs two free cores).
SHORT_RUN: dict[str, Any] = {
    "paths": ("http-json",),
    "concurrency": (2,),
    "duration_s": 0.3,
    "repeats": 1,
    "warmup_s": 0.0,
    "client": "python",
    "pin": False,
}
PEERS_TRITON = (TRITON, TRITON_NOBATCH)

# --------------------------------------------------------------------------- percentiles


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("size", [1, 2, 3, 10, 999, 10_000])
def test_percentiles_match_numpy_linear(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    # Lognormal like latencies, with ties (rounded to microseconds) like tool output.
    values = np.round(rng.lognormal(mean=0.0, sigma=1.0, size=size), 3)
    qs = [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]
    ours = percentiles(values, qs)
    expected = np.percentile(values, qs, method="linear")
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


def test_percentiles_do_not_depend_on_input_order() -> None:
    rng = np.random.default_rng(42)
    values = rng.exponential(size=1001)
    shuffled = rng.permutation(values)
    assert percentiles(values, [50, 99.9]) == percentiles(shuffled, [50, 99.9])


@pytest.mark.parametrize("bad", [-0.1, 100.1])
def test_percentiles_reject_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentiles([1.0, 2.0], [bad])


def test_percentiles_reject_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentiles([], [50])


def test_summarize_reports_ms_and_counts_errors_in_requests() -> None:
    latencies = np.array([0.001, 0.002, 0.003, 0.004])
    result = summarize(latencies, errors=2, elapsed_s=2.0, concurrency=4, tool="t")
    assert result.requests == 6
    assert result.errors == 2
    assert result.throughput_rps == pytest.approx(2.0)  # successes only
    assert result.latency_ms["p50"] == pytest.approx(2.5)
    assert result.latency_ms["max"] == pytest.approx(4.0)


def _run(
    rps: float, p50: float, p99: float, errors: int = 0, notes: list[str] | None = None
) -> RunResult:
    return RunResult(
        concurrency=1,
        duration_s=5.0,
        requests=100,
        errors=errors,
        throughput_rps=rps,
        latency_ms={"p50": p50, "p99": p99},
        tool="t",
        notes=notes or [],
    )


def test_median_result_is_fieldwise_and_sums_errors() -> None:
    runs = [_run(100, 1.0, 9.0), _run(300, 3.0, 1.0, errors=1, notes=["a"]), _run(200, 2.0, 5.0)]
    med = median_result(runs)
    assert med.throughput_rps == 200
    assert med.latency_ms == {"p50": 2.0, "p99": 5.0}
    assert med.errors == 1
    assert med.requests == 300
    assert med.notes == ["a"]


def test_run_result_json_round_trip() -> None:
    run = _run(123.5, 0.25, 1.5, errors=3, notes=["x"])
    assert RunResult.from_json(json.loads(json.dumps(run.to_json()))) == run


# --------------------------------------------------------------------------- load loops


class FakeClock:
    """Virtual time. `sleep_until` yields to the event loop once, then jumps to the deadline, so
    tasks made ready before the sleep run at the time the sleeper was at."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(0)
        self.t = max(self.t, deadline)


class GatedSender:
    """Each call records the fake time it was made at and waits until the test opens its gate."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent_at: list[float] = []
        self.gates: list[asyncio.Future[bool]] = []
        self._waiters: list[tuple[int, asyncio.Event]] = []

    async def __call__(self) -> bool:
        gate: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.sent_at.append(self.clock.now())
        self.gates.append(gate)
        for n, event in self._waiters:
            if len(self.gates) >= n:
                event.set()
        return await gate

    async def wait_for_calls(self, n: int) -> None:
        event = asyncio.Event()
        self._waiters.append((n, event))
        if len(self.gates) >= n:
            event.set()
        await asyncio.wait_for(event.wait(), timeout=5)  # a guard against hanging, not a sync


def test_open_loop_schedule_is_exact() -> None:
    offsets = loadgen.open_loop_schedule(rate=200.0, duration_s=0.5)
    assert len(offsets) == 100
    np.testing.assert_array_equal(offsets, np.arange(100) / 200.0)
    with pytest.raises(ValueError):
        loadgen.open_loop_schedule(rate=0.0, duration_s=1.0)


async def test_open_loop_sends_on_schedule_without_waiting_for_replies() -> None:
    clock = FakeClock()
    sender = GatedSender(clock)
    run = asyncio.create_task(
        loadgen.open_loop(sender, rate=100.0, duration_s=0.1, clock=clock, max_in_flight=100)
    )
    # All ten requests go out while not one reply has come back: a generator that waited for
    # replies (coordinated omission) would stop at the first and this would time out.
    await sender.wait_for_calls(10)
    assert sender.sent_at == pytest.approx([i / 100.0 for i in range(10)])
    clock.t = 1.0  # every reply arrives at t = 1 s
    for gate in sender.gates:
        gate.set_result(True)
    samples = await asyncio.wait_for(run, timeout=5)
    # ...and each is timed from its own intended send time, not from one common start.
    assert sorted(samples.latencies_s) == pytest.approx(sorted(1.0 - i / 100.0 for i in range(10)))
    assert samples.errors == 0
    assert samples.late_sends == 0


async def test_open_loop_charges_a_generator_stall_to_latency() -> None:
    clock = FakeClock()
    calls = 0

    async def stalls_once() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            clock.t += 0.3  # the whole process stalls for 300 ms during the first send
        return True

    samples = await loadgen.open_loop(
        stalls_once, rate=100.0, duration_s=0.5, clock=clock, max_in_flight=1000
    )
    latencies = sorted(samples.latencies_s, reverse=True)
    # Requests due during the stall went out late and carry the delay: 0.30, 0.29, ... 0.01.
    expected = sorted((max(0.3 - i / 100.0, 0.0) for i in range(50)), reverse=True)
    assert latencies == pytest.approx(expected, abs=1e-9)
    assert samples.late_sends == 29


async def test_open_loop_time_waiting_for_a_slot_counts_as_latency() -> None:
    clock = FakeClock()
    sender = GatedSender(clock)
    run = asyncio.create_task(
        loadgen.open_loop(sender, rate=100.0, duration_s=0.03, clock=clock, max_in_flight=1)
    )
    for i, reply_at in enumerate([0.5, 0.7, 0.9]):
        await sender.wait_for_calls(i + 1)
        clock.t = reply_at
        sender.gates[i].set_result(i != 1)  # the second one fails
    samples = await asyncio.wait_for(run, timeout=5)
    assert sender.sent_at == pytest.approx([0.0, 0.5, 0.7])
    assert list(samples.latencies_s) == pytest.approx([0.5, 0.9 - 0.02])
    assert samples.errors == 1
    assert samples.late_sends == 2


async def test_closed_loop_keeps_exactly_n_in_flight() -> None:
    clock = FakeClock()
    in_flight = 0
    peak = 0
    calls = 0

    async def sender() -> bool:
        nonlocal in_flight, peak, calls
        in_flight += 1
        calls += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        clock.t += 0.01
        in_flight -= 1
        return calls % 5 != 0  # every fifth fails

    samples = await loadgen.closed_loop(sender, concurrency=3, duration_s=0.2, clock=clock)
    assert peak == 3
    assert samples.latencies_s.size + samples.errors == calls
    assert samples.errors == calls // 5
    assert 20 <= calls <= 23  # 0.2 s / 0.01 s, plus the requests in flight at the deadline
    assert samples.elapsed_s >= 0.2


async def test_closed_loop_rejects_zero_concurrency() -> None:
    with pytest.raises(ValueError):
        await loadgen.closed_loop(lambda: None, concurrency=0, duration_s=1, clock=FakeClock())  # type: ignore[arg-type,return-value]


# --------------------------------------------------------------------------- payloads

MODEL = ModelSpec(
    "credit_risk",
    (TensorSpec("features", "FP32", (-1, 20)),),
    (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2))),
    version="2",
)


def test_grpc_frame_layout() -> None:
    assert grpc_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert grpc_frame(b"") == b"\x00\x00\x00\x00\x00"
    body = bytes(range(256)) * 300  # length needs more than two bytes
    assert grpc_frame(body)[1:5] == len(body).to_bytes(4, "big")
    assert parse_grpc_frames(grpc_frame(b"one") + grpc_frame(body) + grpc_frame(b"")) == [
        b"one",
        body,
        b"",
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00\x00", "truncated"),
        (b"\x00\x00\x00\x00\x05abc", "wants 5"),
        (b"\x01\x00\x00\x00\x01a", "compressed"),
    ],
)
def test_parse_grpc_frames_rejects_bad_input(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_grpc_frames(data)


def test_random_rows_follow_metadata_and_seed() -> None:
    a = random_rows(MODEL, batch=1, count=3, seed=7)
    b = random_rows(MODEL, batch=1, count=3, seed=7)
    c = random_rows(MODEL, batch=1, count=3, seed=8)
    assert [r["features"].shape for r in a] == [(1, 20)] * 3
    assert all(r["features"].dtype == np.float32 for r in a)
    assert all(np.array_equal(x["features"], y["features"]) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0]["features"], c[0]["features"])
    assert not np.array_equal(a[0]["features"], a[1]["features"])


def test_request_shape_needs_static_non_batch_dims() -> None:
    assert request_shape(TensorSpec("x", "FP32", (-1, 3, 4)), 2) == (2, 3, 4)
    with pytest.raises(ModelSpecError, match="dynamic"):
        request_shape(TensorSpec("x", "FP32", (-1, -1)), 1)


def test_model_spec_from_v2_metadata() -> None:
    spec = ModelSpec.from_v2_metadata(
        {
            "name": "m",
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 3]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
        }
    )
    assert spec.inputs == (TensorSpec("x", "INT64", (-1, 3)),)
    assert spec.infer_path == "/v2/models/m/infer"
    with pytest.raises(ModelSpecError, match="no inputs"):
        ModelSpec.from_v2_metadata({"name": "m", "inputs": []})


def test_grpc_typed_and_raw_carry_the_same_tensor() -> None:
    rows = random_rows(MODEL, batch=1, count=1, seed=3)[0]
    typed = service_pb2.ModelInferRequest.FromString(encode_grpc_typed(MODEL, rows))
    raw = service_pb2.ModelInferRequest.FromString(encode_grpc_raw(MODEL, rows))
    for request in (typed, raw):
        assert (request.model_name, request.model_version) == ("credit_risk", "2")
        assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
            ("features", "FP32", [1, 20])
        ]
    np.testing.assert_array_equal(
        np.asarray(typed.inputs[0].contents.fp32_contents, dtype=np.float32), rows["features"][0]
    )
    assert not raw.inputs[0].HasField("contents")
    np.testing.assert_array_equal(
        np.frombuffer(raw.raw_input_contents[0], dtype="<f4"), rows["features"].ravel()
    )


def test_http_json_and_binary_bodies() -> None:
    rows = random_rows(MODEL, batch=1, count=1, seed=5)[0]
    body, headers = encode_http_json(MODEL, rows)
    assert headers["Content-Type"] == "application/json"
    tensor = json.loads(body)["inputs"][0]
    assert tensor["shape"] == [1, 20]
    np.testing.assert_array_equal(np.asarray(tensor["data"], dtype=np.float32), rows["features"][0])

    body, headers = encode_http_binary(MODEL, rows)
    split = int(headers[BINARY_HEADER])
    header = json.loads(body[:split])
    assert header["inputs"][0]["parameters"]["binary_data_size"] == 80
    assert header["parameters"]["binary_data_output"] is True
    np.testing.assert_array_equal(np.frombuffer(body[split:], "<f4"), rows["features"].ravel())


def test_typed_grpc_refuses_fp16() -> None:
    spec = ModelSpec("h", (TensorSpec("x", "FP16", (-1, 2)),), ())
    rows = random_rows(spec, batch=1, count=1, seed=0)
    with pytest.raises(ModelSpecError, match="FP16"):
        build_request_set("grpc-typed", spec, rows)
    assert build_request_set("grpc-raw", spec, rows).transport == "grpc"


# --------------------------------------------------------------------------- wrk

WRK_OK = """\
Running 1s test @ http://127.0.0.1:18090
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   603.27us  120.98us   2.58ms   86.36%
    Req/Sec     6.67k   292.73     6.91k    90.00%
  6642 requests in 1.00s, 2.81MB read
Requests/sec:   6637.88
Transfer/sec:      2.81MB
MODELGATE_WRK {"requests":6642,"duration_us":1000620,"bytes":2949048,"errors":{"connect":0,\
"read":0,"write":0,"status":0,"timeout":0},"latency_us":{"min":419,"max":2578,"mean":603.27,\
"p50":586, "p90":696, "p99":948, "p99.9":1976}}
"""

WRK_404 = """\
Running 1s test @ http://127.0.0.1:18090
  1 threads and 4 connections
  14657 requests in 1.10s, 2.59MB read
  Non-2xx or 3xx responses: 14657
Requests/sec:  13333.77
MODELGATE_WRK {"requests":14657,"duration_us":1099239,"bytes":2711545,"errors":{"connect":0,\
"read":0,"write":0,"status":14657,"timeout":0},"latency_us":{"min":131,"max":1870,"mean":297.77,\
"p50":302, "p90":361, "p99":479, "p99.9":1270}}
"""


def test_parse_wrk_output() -> None:
    report = wrk.parse_wrk_output(WRK_OK)
    assert report.replies == 6642
    assert report.duration_s == pytest.approx(1.00062)
    assert report.latency_ms == pytest.approx(
        {"max": 2.578, "mean": 0.60327, "p50": 0.586, "p90": 0.696, "p99": 0.948, "p99.9": 1.976}
    )
    result = wrk.to_result(report, concurrency=4)
    assert result.errors == 0
    assert result.throughput_rps == pytest.approx(6642 / 1.00062)


def test_wrk_error_statuses_are_errors_not_throughput() -> None:
    result = wrk.to_result(wrk.parse_wrk_output(WRK_404), concurrency=4)
    assert result.errors == 14657
    assert result.throughput_rps == 0
    assert any("no successful reply" in n for n in result.notes)


def test_wrk_without_any_reply_counts_the_requests_in_flight() -> None:
    silent = WRK_OK.replace('"requests":6642', '"requests":0')
    result = wrk.to_result(wrk.parse_wrk_output(silent), concurrency=64)
    assert result.errors == 64
    assert result.latency_ms == {}


def test_parse_wrk_output_without_report_line_fails() -> None:
    with pytest.raises(ValueError, match="MODELGATE_WRK"):
        wrk.parse_wrk_output(WRK_OK.split("MODELGATE_WRK")[0])


def test_lua_script_embeds_lengths_path_and_headers(tmp_path: Path) -> None:
    rows = random_rows(MODEL, batch=1, count=3, seed=1)
    requests = build_request_set("http-binary", MODEL, rows)
    script = wrk.lua_script(requests, "/v2/models/x]]y/infer", tmp_path / "b.bin")
    lengths = ", ".join(str(len(b)) for b in requests.bodies)
    assert f"local lengths = {{{lengths}}}" in script
    # a "]]" in the path must not end the Lua long string early
    assert "[=[/v2/models/x]]y/infer]=]" in script
    assert f"[ [[{BINARY_HEADER}]] ]" in script
    assert "done = function(summary, latency, requests)" in script
    assert "latency:percentile(99.9)" in script


# --------------------------------------------------------------------------- h2load

H2LOAD_OK = """\
starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 2s of main \
duration for measurements.
Application protocol: h2c

finished in 2.00s, 1567.50 req/s, 602.09KB/s
requests: 3135 total, 3139 started, 3135 done, 3135 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 3135 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.18MB (1233073) total, 9.48KB (9705) headers (space savings 96.18%), \
416.37KB (426360) data
                     min         max         mean         sd        +/- sd
time for request:      849us      4.59ms      2.55ms       116us    88.61%
"""

H2LOAD_GRPC_ERRORS = """\
finished in 1.00s, 1387.00 req/s, 100.56KB/s
requests: 1387 total, 1389 started, 1387 done, 1387 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 1387 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 100.56KB (102972) total, 70.52KB (72212) headers (space savings 45.77%), 0B (0) data
"""

H2LOAD_LOG = "1795727778364829\t200\t2476\n1795727778365005\t200\t3137\n1795727778364998\t503\t10\n"


def test_parse_h2load_output() -> None:
    report = h2load.parse_h2load_output(H2LOAD_OK)
    assert report == h2load.H2loadReport(
        duration_s=2.0,
        total=3135,
        started=3139,
        status_2xx=3135,
        failed=0,
        errored=0,
        timeout=0,
        data_bytes=426360,
    )
    assert h2load.parse_h2load_output(H2LOAD_OK.replace("2.00s,", "850.5ms,")).duration_s == (
        pytest.approx(0.8505)
    )


def test_parse_h2load_log_keeps_2xx_only() -> None:
    np.testing.assert_allclose(h2load.parse_h2load_log(H2LOAD_LOG), [2.476e-3, 3.137e-3])


def test_h2load_replies_with_full_messages_are_ok() -> None:
    report = h2load.parse_h2load_output(H2LOAD_OK)
    latencies = np.full(3135, 2.5e-3)
    result = h2load.to_result(report, latencies, concurrency=4, bytes_per_reply=136)  # 426360/3135
    assert result.errors == 0
    assert result.throughput_rps == pytest.approx(3135 / 2.0)
    assert result.latency_ms["p50"] == pytest.approx(2.5)


def test_h2load_replies_without_message_are_grpc_errors() -> None:
    report = h2load.parse_h2load_output(H2LOAD_GRPC_ERRORS)
    result = h2load.to_result(report, np.full(1387, 1e-3), concurrency=2, bytes_per_reply=84)
    assert result.throughput_rps == 0
    assert result.errors == 1387 + 2  # the two still unanswered count too, since none succeeded
    assert any("gRPC errors" in n for n in result.notes)
    # Partial: a reply short is an error, and the rest still count.
    partial = h2load.to_result(
        h2load.parse_h2load_output(H2LOAD_OK.replace("(426360) data", f"({136 * 3000}) data")),
        np.full(3135, 1e-3),
        concurrency=4,
        bytes_per_reply=136,
    )
    assert (partial.errors, partial.throughput_rps) == (135, pytest.approx(1500.0))


def test_parse_h2load_output_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="unrecognised"):
        h2load.parse_h2load_output("connect error\n")


# --------------------------------------------------------------------------- compare table


def _point(server: str, path: str, c: int, rps: float, p50: float, p99: float) -> Point:
    return Point(server, path, c, [_run(rps, p50, p99)])


def test_summary_rows_added_latency_and_ratios() -> None:
    points = [
        _point(FLOOR, FLOOR_PATH, 1, 10_000, 0.010, 0.020),
        _point("modelgate", "http-binary", 1, 2_000, 0.260, 0.5),
        _point("modelgate", "http-binary", 64, 9_000, 6.0, 24.0),
        _point("modelgate", "grpc-raw", 1, 2_000, 0.400, 0.6),
        _point("modelgate", "grpc-raw", 64, 2_500, 26.0, 30.0),
        _point(MLSERVER, "http-json", 1, 1_500, 0.600, 1.0),
        _point(MLSERVER, "http-json", 64, 2_500, 20.0, 120.0),
        _point(MLSERVER, "grpc-raw", 1, 1_400, 0.650, 1.1),
        _point(MLSERVER, "grpc-raw", 64, 1_250, 44.0, 100.0),
    ]
    rows = {(r.server, r.path): r for r in summarize_rows(points, low=1, high=64)}
    floor = rows[(FLOOR, FLOOR_PATH)]
    assert (floor.throughput_rps, floor.p99_ms, floor.added_latency_us) == (10_000, None, 0.0)
    binary = rows[("modelgate", "http-binary")]
    assert binary.added_latency_us == pytest.approx(250.0)
    assert binary.throughput_vs_floor == pytest.approx(0.9)
    assert binary.p50_vs_floor == pytest.approx(26.0)
    # MLServer has no binary extension: held against its HTTP JSON path
    assert binary.vs["MLServer"] == PeerRatio(
        MLSERVER, "http-json", pytest.approx(9_000 / 2_500), pytest.approx(24.0 / 120.0)
    )
    raw = rows[("modelgate", "grpc-raw")]
    assert raw.vs["MLServer"].path == "grpc-raw"
    assert raw.vs["MLServer"].throughput == pytest.approx(2.0)
    assert "Triton" not in raw.vs  # not measured
    assert rows[(MLSERVER, "grpc-raw")].vs == {}


def test_summary_rows_hold_every_server_against_triton_with_batching_first() -> None:
    points = [
        _point("modelgate", "http-json", 64, 9_000, 6.0, 24.0),
        _point("modelgate", "grpc-typed", 64, 2_000, 20.0, 40.0),
        _point(MLSERVER, "http-json", 64, 2_500, 20.0, 120.0),
        _point(TRITON_NOBATCH, "http-json", 64, 1_000, 60.0, 90.0),
        _point(TRITON, "http-json", 64, 3_000, 20.0, 30.0),
        _point(TRITON, "grpc-raw", 64, 4_000, 16.0, 20.0),
    ]
    rows = {(r.server, r.path): r for r in summarize_rows(points, low=64, high=64)}
    json_row = rows[("modelgate", "http-json")]
    assert json_row.vs["Triton"] == PeerRatio(TRITON, "http-json", 3.0, pytest.approx(0.8))
    assert json_row.vs["MLServer"].throughput == pytest.approx(3.6)
    assert rows[("modelgate", "grpc-typed")].vs["Triton"] == PeerRatio(TRITON, "grpc-raw", 0.5, 2.0)
    # Triton's rows are held against MLServer, not against Triton; MLServer's against Triton
    assert set(rows[(TRITON_NOBATCH, "http-json")].vs) == {"MLServer"}
    assert rows[(MLSERVER, "http-json")].vs["Triton"].throughput == pytest.approx(2_500 / 3_000)
    # without the batching entry, the other one is the reference
    alone = [p for p in points if p.server != TRITON]
    rows = {(r.server, r.path): r for r in summarize_rows(alone, low=64, high=64)}
    assert rows[("modelgate", "http-json")].vs["Triton"].server == TRITON_NOBATCH
    assert "Triton" not in rows[("modelgate", "grpc-typed")].vs  # no gRPC path measured


def test_summary_table_shows_ratio_columns_of_measured_references_only() -> None:
    points = [
        _point("modelgate", "http-binary", 64, 9_000, 6.0, 24.0),
        _point(TRITON, "http-json", 64, 3_000, 20.0, 30.0),
    ]
    rows = summarize_rows(points, low=64, high=64)
    text = report.summary_table(rows, 64, 64)
    header = text.splitlines()[0]
    assert "vs Triton: req/s, p99" in header
    assert "MLServer" not in header
    cells = re.split(r"\s{2,}", text.splitlines()[2])
    assert cells[-2:] == ["3.00x, 0.80x (http-json)", "0"]


def test_counterpart_falls_back_within_transport_only() -> None:
    assert counterpart("grpc-typed", {"http-json"}) is None
    assert counterpart("grpc-typed", {"grpc-raw", "http-json"}) == "grpc-raw"


def test_compare_cli_rejects_a_run_without_one_in_flight(tmp_path: Path) -> None:
    code = main(["compare", "--concurrency", "8,64", "--out", str(tmp_path), "--servers", "direct"])
    assert code == 2


def test_saved_compare_re_renders_to_text_and_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")  # in the `bench` extra, not the `test` one
    from gateway.bench import report
    from gateway.bench.compare import CompareResult

    points = [
        _point(FLOOR, FLOOR_PATH, 1, 10_000, 0.010, 0.020),
        _point("modelgate", "http-json", 1, 2_000, 0.260, 0.5),
        _point("modelgate", "http-json", 64, 9_000, 6.0, 24.0),
    ]
    meta = {
        "model": "m",
        "model_version": "1",
        "repeats": 1,
        "duration_s": 1.0,
        "server_cores": [0],
        "client_cores": [1],
        "tools": {},
        "low_concurrency": 1,
        "high_concurrency": 64,
    }
    result = CompareResult(meta, points, summarize_rows(points, 1, 64), [])
    document = json.loads(json.dumps(report.compare_json(result)))
    again = report.compare_from_json(document)
    assert again.rows == result.rows
    assert "modelgate  http-json" in report.compare_text(again)
    png = tmp_path / "out.png"
    report.plot_compare(again, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_fails_on_errors_and_broken_servers_but_not_on_unserved_paths() -> None:
    from gateway.bench.compare import CompareResult

    ok = [_point("modelgate", "http-json", 1, 2_000, 0.26, 0.5)]
    bad = [Point("modelgate", "http-json", 1, [_run(2_000, 0.26, 0.5, errors=3)])]
    unserved = {"kind": "path", "server": MLSERVER, "path": "http-binary", "reason": "HTTP 500"}
    dead = {"kind": "server", "server": MLSERVER, "path": "*", "reason": "exited with 1"}
    assert not CompareResult({}, ok, summarize_rows(ok, 1, 1), [unserved]).failed
    assert CompareResult({}, bad, summarize_rows(bad, 1, 1), [unserved]).failed
    assert CompareResult({}, ok, summarize_rows(ok, 1, 1), [dead]).failed


# --------------------------------------------------------------------------- journal


def test_journal_append_cases_cover_batch_async_and_off() -> None:

    cases = append_cases((1, 64), 32)
    assert [(c.mode, c.fsync, c.callers) for c in cases] == [
        ("durable", "batch", 1),
        ("durable", "batch", 64),
        ("async", "batch", 32),
        ("durable", "off", 1),
        ("durable", "off", 64),
    ]
    assert cases[2].label == "async fsync=batch callers=32"


def test_journal_append_run_rates_and_group_size() -> None:

    run = append_run(
        records=1000,
        groups=10,
        fsyncs=11,
        written_bytes=2_000_000,
        largest_group=150,
        elapsed_s=2.0,
        latencies_ns=[1_000_000, 3_000_000],
    )
    assert run.records_per_s == 500.0
    assert run.groups_per_s == 5.0
    assert run.fsyncs_per_s == 5.5
    assert run.mean_group == 100.0
    assert run.mb_per_s == 1.0
    assert run.append_ms["p50"] == pytest.approx(2.0)
    assert run.append_ms["p99"] == pytest.approx(2.98)
    idle = append_run(
        records=0,
        groups=0,
        fsyncs=0,
        written_bytes=0,
        largest_group=0,
        elapsed_s=0.0,
        latencies_ns=[],
    )
    assert (idle.records_per_s, idle.mean_group, idle.append_ms) == (0.0, 0.0, {})


def test_journal_median_append_is_fieldwise() -> None:

    runs = [
        append_run(
            records=r,
            groups=g,
            fsyncs=g,
            written_bytes=r * 300,
            largest_group=big,
            elapsed_s=1.0,
            latencies_ns=[lat],
        )
        for r, g, big, lat in [
            (100, 10, 12, 1_000_000),
            (300, 10, 40, 5_000_000),
            (200, 50, 9, 2e6),
        ]
    ]
    median = median_append(runs)
    assert median.records_per_s == 200.0
    assert median.groups_per_s == 10.0
    assert median.mean_group == 10.0  # of 10, 30, 4
    assert median.records == 600
    assert median.largest_group == 40
    assert median.append_ms["p50"] == pytest.approx(2.0)
    assert AppendRun.from_json(json.loads(json.dumps(median.to_json()))) == median
    with pytest.raises(ValueError):
        median_append([])


def test_journal_appends_measure_a_real_journal(tmp_path: Path) -> None:

    payloads = [
        encode_payload({"request_id": f"{i:032x}", "model": "m", "input_digest": "0" * 64})
        for i in range(8)
    ]
    for durable in (True, False):
        root = tmp_path / str(durable)
        run = measure_appends(
            AppendCase(durable, "off", 4),
            payloads,
            root,
            warmup_s=0.01,
            duration_s=0.05,
            queue_limit=256,  # async callers fill the queue before they yield: keep it short
        )
        assert run.records > 0 and run.mean_group > 0 and run.fsyncs_per_s == 0.0
        assert "p99" in run.append_ms
        # closed: everything appended is in the journal, warm-up and drain included
        assert verify_journal(root)["predictions"].head_seq >= run.records


def test_journal_prediction_payloads_are_digest_records(tmp_path: Path) -> None:

    model = ModelSpec("m", (TensorSpec("x", "FP32", (-1, 3)),), (), "2")
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes(b"not really onnx")
    encoded = prediction_payloads(model, model_file, count=3, seed=1)
    payloads = [orjson.loads(p) for p in encoded]
    assert len({p["request_id"] for p in payloads}) == 3
    assert len({p["input_digest"] for p in payloads}) == 3
    first = payloads[0]
    assert first["model"] == "m" and first["version"] == "2" and first["routing"] == "pinned"
    assert first["profile_id"] == "" and len(first["content_hash"]) == 64
    assert "inputs" not in first
    assert prediction_payloads(model, model_file, count=3, seed=1) == encoded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "record_durable = true\n"),
        ("a = 1\n", "a = 1\nrecord_durable = true\n"),
        ("a = 1\nrecord_durable = false # old\nb = 2\n", "a = 1\nrecord_durable = true\nb = 2\n"),
        (
            "# c\na = 1\n\n[shapes]\nx = [1]\n",
            "# c\na = 1\nrecord_durable = true\n\n[shapes]\nx = [1]\n",
        ),
        # a key of the same name inside a table is not the model's
        ("[t]\nrecord_durable = false\n", "record_durable = true\n[t]\nrecord_durable = false\n"),
    ],
)
def test_journal_set_top_level_key(text: str, expected: str) -> None:

    assert set_top_level_key(text, "record_durable", "true") == expected


def test_journal_prepare_repository_keeps_the_model_config(tmp_path: Path) -> None:

    source = Path(__file__).resolve().parents[1] / "examples" / "models"
    original = tomllib.loads((source / "credit_risk" / "config.toml").read_text())
    for durable in (True, False):
        target = tmp_path / f"repo-{durable}"
        config = prepare_repository(source, "credit_risk", target, durable=durable)
        edited = tomllib.loads((target / "credit_risk" / "config.toml").read_text())
        assert edited == {**original, "record_durable": durable}
        assert config.record_durable is durable
        assert config.warmup_file == original["warmup_file"]
        assert (target / "credit_risk" / "2" / "model.onnx").is_file()
    # the source is untouched
    assert tomllib.loads((source / "credit_risk" / "config.toml").read_text()) == original


def test_journal_server_toml_is_a_valid_server_config(tmp_path: Path) -> None:

    for enabled, fsync in ((False, "batch"), (True, "interval")):
        path = tmp_path / f"{enabled}.toml"
        path.write_text(server_toml(enabled, fsync))
        config = load_server_config(path).journal
        assert (config.enabled, config.fsync) == (enabled, fsync)


def test_journal_rotation_puts_each_variant_in_each_position() -> None:

    orders = [rotated(["off", "async", "durable"], r) for r in range(3)]
    assert orders == [
        ["off", "async", "durable"],
        ["async", "durable", "off"],
        ["durable", "off", "async"],
    ]
    assert rotated([], 2) == []


def test_journal_cost_rows_against_journal_off() -> None:

    assert cost_pct(1000.0, 970.0) == pytest.approx(3.0)
    assert cost_pct(1000.0, 1010.0) == pytest.approx(-1.0)
    assert cost_pct(0.0, 10.0) is None
    assert cost_pct(None, 10.0) is None
    points = {
        ("off", "grpc-raw", 64): Point(
            "off", "grpc-raw", 64, [_run(r, 26.0, 30.0) for r in (2400, 2500, 2000)]
        ),
        ("async", "grpc-raw", 64): Point(
            "async", "grpc-raw", 64, [_run(r, 27.0, 33.0) for r in (2376, 2375, 1900)]
        ),
        ("durable", "grpc-raw", 64): Point(
            "durable", "grpc-raw", 64, [_run(2000, 30.0, 40.0, errors=2)]
        ),
    }
    server = {("async", "grpc-raw", 64): [{"groups_per_s": 100.0, "mean_group": 20.0}] * 2}
    off, on, durable = cost_rows(points, server)
    assert (off.variant, off.cost_pct, off.paired_cost_pct, off.server_journal) == (
        "off",
        None,
        (),
        None,
    )
    assert on.throughput_rps == 2375
    assert on.cost_pct == pytest.approx(100 * 25 / 2400)  # medians: 2400 -> 2375
    assert on.paired_cost_pct == pytest.approx((1.0, 5.0, 5.0))
    assert on.p50_delta_ms == pytest.approx(1.0) and on.p99_delta_ms == pytest.approx(3.0)
    assert on.server_journal == {"groups_per_s": 100.0, "mean_group": 20.0}
    # one durable run against three off runs: no pairing, still a median cost
    assert durable.paired_cost_pct == () and durable.cost_pct == pytest.approx(100 / 6)
    assert durable.errors == 2


def test_journal_metrics_from_the_gateways_exposition() -> None:

    def stats(records: int, groups: int, fsyncs: int) -> JournalStats:
        return JournalStats(0, 0, 0, 0.0, records, groups, fsyncs, records * 300, 64, {"a": 1})

    def scrape(s: JournalStats) -> dict[str, float]:
        return parse_journal_metrics(exposition(make_registry(lambda: [], lambda: s)).decode())

    before, after = scrape(stats(100, 10, 10)), scrape(stats(1100, 60, 61))
    assert before["records"] == 100 and before["group_commits"] == 10 and before["fsyncs"] == 10
    assert "head_seq" not in before  # labelled per stream: skipped
    rates = metrics_rates(before, after, 2.0)
    assert rates == {"groups_per_s": 25.0, "fsyncs_per_s": 25.5, "mean_group": 20.0}
    assert metrics_rates({}, after, 2.0) is None  # journal off: no journal metrics
    assert metrics_rates(after, after, 2.0) is None  # nothing committed


def test_journal_mount_of_picks_the_longest_prefix() -> None:

    mounts = (
        "/dev/vda / ext4 rw 0 0\n"
        "tmpfs /tmp tmpfs rw 0 0\n"
        "tmpfs /tmpfoo tmpfs rw 0 0\n"
        "/dev/vdb /data\\040disk xfs rw 0 0\n"
    )
    assert mount_of(Path("/tmp/x/y"), mounts) == ("/tmp", "tmpfs")
    assert mount_of(Path("/tmpx"), mounts) == ("/", "ext4")
    assert mount_of(Path("/data disk/j"), mounts) == ("/data disk", "xfs")
    assert mount_of(Path("/x"), "") == ("?", "?")


def _journal_result() -> JournalBenchResult:

    appends = [
        AppendPoint(
            AppendCase(True, "batch", 64),
            [
                append_run(
                    records=5000,
                    groups=100,
                    fsyncs=100,
                    written_bytes=1_500_000,
                    largest_group=64,
                    elapsed_s=1.0,
                    latencies_ns=[800_000],
                )
            ],
        )
    ]
    points = {
        ("off", "grpc-raw", 64): Point("off", "grpc-raw", 64, [_run(2400, 26.0, 30.0)]),
        ("async", "grpc-raw", 64): Point("async", "grpc-raw", 64, [_run(2350, 27.0, 31.0)]),
        ("durable", "grpc-raw", 64): Point("durable", "grpc-raw", 64, [_run(2000, 30.0, 40.0)]),
    }
    meta = {
        "repeats": 1,
        "duration_s": 1.0,
        "payload_capture": "digest",
        "payload_bytes_mean": 317.0,
        "journal_filesystem": {"path": "/tmp", "type": "ext4", "mount": "/"},
        "server_cores": [0],
        "client_cores": [1],
        "model": "m",
        "model_version": "2",
        "gateway_fsync": "batch",
        "record_capture": "digest",
        "target": {"pct": 3.0, "path": "grpc-raw", "concurrency": 64},
    }
    journalled = {"off": {"records": 0, "ok_replies": 0}, "async": {"records": 9, "ok_replies": 5}}
    return JournalBenchResult(meta, appends, points, cost_rows(points), journalled, [])


def test_journal_report_text_and_json() -> None:

    result = _journal_result()
    text = report.journal_text(result)
    assert "durable  batch       64       5000       100" in text
    assert "grpc-raw  async    64   2350  27.000  31.000      +2.1 %" in text
    assert (
        "target: journaling costs <= 3 % of req/s at c=64 on grpc-raw: "
        "async +2.1 % (within, per repeat +2.1..+2.1 %); durable +16.7 % (over, per repeat "
        "+16.7..+16.7 %)" in text
    )
    assert "journal async: 9 prediction records for 5 OK replies" in text
    assert "journal off:" not in text
    assert "code:" not in text
    moved = replace(result, meta={**result.meta, "git": "abc", "git_at_server_start": "def"})
    assert "code: abc (servers started on def)" in report.journal_text(moved)
    document = json.loads(json.dumps(report.journal_json(result)))
    assert document["appends"][0]["median"]["mean_group"] == 50.0
    assert [g["variant"] for g in document["gateway"]] == ["off", "async", "durable"]
    assert not result.failed


def test_journal_result_fails_on_missing_records_and_errors() -> None:

    result = _journal_result()
    short = replace(result, journalled={"async": {"records": 4, "ok_replies": 5}})
    assert short.failed
    dead = replace(result, skipped=[{"kind": "server", "server": "x", "path": "*", "reason": ""}])
    assert dead.failed
    unserved = replace(result, skipped=[{"kind": "path", "server": "x", "path": "p", "reason": ""}])
    assert not unserved.failed


def test_journal_cli_rejects_bad_options(tmp_path: Path) -> None:
    assert main(["journal", "--repeats", "0", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["journal", "--parts", "appends,nope"])
    assert exit_.value.code == 2


# --------------------------------------------------------------------------- triton peer


def _short_compare(**fields: Any) -> CompareConfig:
    """A comparison of the example at 1 in flight, one short run per point, unpinned."""
    return CompareConfig(
        model_repository=EXAMPLES,
        model="credit_risk",
        concurrency=(1,),
        duration_s=0.3,
        repeats=1,
        warmup_s=0.0,
        client="python",
        pin=False,
        **fields,
    )


def _triton_config(triton_install: TritonInstall, **fields: Any) -> CompareConfig:
    return _short_compare(servers=(TRITON,), cache_dir=triton_install.venv.parent, **fields)


def test_triton_peers_differ_in_dynamic_batching_only(
    triton_install: TritonInstall, tmp_path: Path
) -> None:
    model_file = EXAMPLES / "credit_risk" / "2" / "model.onnx"
    model = ModelSpec.from_onnx(model_file, "credit_risk", "2")
    config = _triton_config(triton_install)
    specs = {name: PEERS[name].start(config, model, model_file, tmp_path) for name in PEERS_TRITON}
    texts = {
        name: (tmp_path / name / "models" / "credit_risk" / "config.pbtxt").read_text()
        for name in PEERS_TRITON
    }
    # as the model's config.toml: max_batch_size 64; its adaptive wait maps to no wait
    assert "max_batch_size: 64" in texts[TRITON] and "max_batch_size: 64" in texts[TRITON_NOBATCH]
    assert "dynamic_batching { max_queue_delay_microseconds: 0 }" in texts[TRITON]
    assert texts[TRITON_NOBATCH] == texts[TRITON].replace(
        "dynamic_batching { max_queue_delay_microseconds: 0 }\n", ""
    )
    # the version the requests pin
    assert (tmp_path / TRITON / "models" / "credit_risk" / "2" / "model.py").is_file()
    assert "not Triton's best case" in specs[TRITON].notes[0]
    assert PEERS[TRITON].paths == PEERS[TRITON_NOBATCH].paths == TRITON_PATHS


def test_compare_runs_modelgate_with_the_server_config_given(tmp_path: Path) -> None:
    """--modelgate-config reaches the server: here it turns the journal off (the server logs its
    journal at start only when on), and the run's notes say which config ran."""
    server_config = tmp_path / "core.toml"
    server_config.write_text("[journal]\nenabled = false\n")
    config = _short_compare(
        servers=("modelgate",), paths=("http-json",), modelgate_config=server_config
    )
    logs = tmp_path / "logs"
    result = run_compare(config, log_dir=logs, say=lambda _: None)
    assert not result.failed, result.skipped
    assert [p.server for p in result.points if p.runs] == ["modelgate"]
    assert result.meta["server_notes"]["modelgate"][1] == f"server config {server_config}"
    log = (logs / "modelgate.log").read_text()
    assert "ready: yes" in log
    assert "checkpoints signed by" not in log


def test_compare_measures_triton(triton_install: TritonInstall, tmp_path: Path) -> None:
    result = run_compare(_triton_config(triton_install), log_dir=tmp_path, say=lambda _: None)
    assert not result.failed, result.skipped
    # HTTP JSON and gRPC raw only, the version the requests pin (the highest: 2) served
    assert {(p.server, p.path) for p in result.points if p.runs} == {
        (TRITON, p) for p in TRITON_PATHS
    }
    assert result.meta["model_version"] == "2"
    assert result.meta["server_notes"][TRITON][1].startswith("dynamic batching on")


def test_compare_measures_kserve_on_every_path_without_versions(tmp_path: Path) -> None:
    """KServe answers 501 on versioned V2 routes: it is asked for the model by name (the
    version the others pin is the only one it serves), on each of the four paths, and logs no
    line per request (its latency, access and gRPC-method logs are off, as Modelgate's are)."""
    config = _short_compare(servers=(KSERVE,), cache_dir=peer_cache_dir("kserve"))
    result = run_compare(config, log_dir=tmp_path, say=lambda _: None)
    assert not result.failed, result.skipped
    assert {(p.server, p.path) for p in result.points if p.runs} == {
        (KSERVE, path) for path in config.paths
    }
    assert not PEERS[KSERVE].versioned and PEERS[MLSERVER].versioned
    log = (tmp_path / "kserve.log").read_text()
    assert "Uvicorn running" in log
    assert "ModelInfer" not in log and "/infer" not in log


# --------------------------------------------------------------------------- routing


def test_routing_scenarios_are_whole_policies() -> None:
    single, split, shadow = scenarios("1", "2")
    assert (single.name, split.name, shadow.name) == (SINGLE, SPLIT, SHADOW)
    assert single.policy == {"weights": {"2": 100}, "shadows": []}
    assert split.policy == {"weights": {"1": 90, "2": 10}, "shadows": []}
    assert shadow.policy == {"weights": {"2": 100}, "shadows": ["1"]}
    assert (single.shadow, shadow.shadow) == (None, "1")
    assert split.describe() == "v1 90, v2 10"
    assert shadow.describe() == "v2 100, v1 shadow"


def test_routing_takes_the_two_highest_versions(tmp_path: Path) -> None:
    for version in ("1", "2", "10", "notes"):
        (tmp_path / "m" / version).mkdir(parents=True)
        (tmp_path / "m" / version / "model.onnx").write_bytes(b"")
    assert two_versions(tmp_path, "m", None) == ("2", "10")
    assert two_versions(tmp_path, "m", ("10", "1")) == ("10", "1")
    with pytest.raises(CompareError, match="differ"):
        two_versions(tmp_path, "m", ("1", "1"))
    with pytest.raises(CompareError, match="does not exist"):
        two_versions(tmp_path, "m", ("1", "3"))
    (tmp_path / "one" / "1").mkdir(parents=True)
    with pytest.raises(CompareError, match="two numeric"):
        two_versions(tmp_path, "one", None)


def _routing_result() -> RoutingResult:
    points = {
        (SINGLE, "grpc-raw", 64): Point(
            SINGLE, "grpc-raw", 64, [_run(r, 40.0, 50.0) for r in (1600, 1500)]
        ),
        (SPLIT, "grpc-raw", 64): Point(
            SPLIT, "grpc-raw", 64, [_run(r, 40.0, 40.0) for r in (1600, 1200)]
        ),
        (SHADOW, "grpc-raw", 64): Point(
            SHADOW, "grpc-raw", 64, [_run(r, 50.0, 100.0) for r in (1200, 1500)]
        ),
    }
    meta = {
        "model": "m",
        "versions": {"old": "1", "new": "2"},
        "server_cores": [0],
        "client_cores": [1],
        "repeats": 2,
        "duration_s": 1.0,
        "scenarios": {s.name: s.describe() for s in scenarios("1", "2")},
        "server_notes": ["journal on"],
    }
    shadow = {("grpc-raw", 64): {"copies": 2600, "dropped": 100, "failed": 0}}
    return RoutingResult(meta, points, cost_rows(points, base_variant=SINGLE), shadow)


def test_routing_rows_hold_each_scenario_against_single() -> None:
    single, split, shadow = _routing_result().rows
    assert (single.throughput_ratio, single.p99_ratio) == (None, None)
    assert split.throughput_ratio == pytest.approx(1400 / 1550)
    assert split.p99_ratio == pytest.approx(0.8)
    assert shadow.throughput_ratio == pytest.approx(1350 / 1550)
    assert shadow.p99_ratio == pytest.approx(2.0)
    # per repeat, each against the same repeat's single run
    assert [1 - c / 100 for c in shadow.paired_cost_pct] == pytest.approx([0.75, 1.0])


def _cells_by_variant(text: str, path: str) -> dict[str, list[str]]:
    """The cells of a report's table lines on `path`, by their second column."""
    return {
        line.split()[1]: re.split(r"\s{2,}", line)
        for line in text.splitlines()
        if line.startswith(path)
    }


def test_routing_report_text_and_json() -> None:
    result = _routing_result()
    text = report.routing_text(result)
    lines = _cells_by_variant(text, "grpc-raw")
    assert lines[SINGLE][6:11] == ["-", "-", "-", "-", "-"]
    assert lines[SPLIT][6:9] == ["0.90x", "1.00 0.80", "0.80x"]
    assert lines[SHADOW][6:11] == ["0.87x", "0.75 1.00", "2.00x", "2600", "100"]
    assert "split = v1 90, v2 10" in text
    document = json.loads(json.dumps(report.routing_json(result)))
    assert [r["variant"] for r in document["rows"]] == [SINGLE, SPLIT, SHADOW]
    assert document["rows"][2]["p99_ratio"] == pytest.approx(2.0)
    assert document["shadow"] == [
        {"path": "grpc-raw", "concurrency": 64, "copies": 2600, "dropped": 100, "failed": 0}
    ]
    assert len(document["runs"][0]["runs"]) == 2
    assert not result.failed


def test_routing_bench_against_a_real_gateway(tmp_path: Path) -> None:
    config = RoutingBenchConfig(model_repository=EXAMPLES, **SHORT_RUN)
    result = run_routing_bench(config, log_dir=tmp_path, say=lambda _: None)
    assert not result.failed, result.skipped
    assert [(r.variant, r.path, r.concurrency) for r in result.rows] == [
        (s, "http-json", 2) for s in (SINGLE, SPLIT, SHADOW)
    ]
    assert all(r.throughput_rps > 0 for r in result.rows)
    # the policy was in force: shadows are copies of routed (unpinned) requests only
    copies = result.shadow[("http-json", 2)]
    assert copies["copies"] > 0 and copies["failed"] == 0
    assert result.meta["versions"] == {"old": "1", "new": "2"}


def test_routing_cli_rejects_bad_versions() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["routing", "--versions", "1"])
    assert exit_.value.code == 2


# --------------------------------------------------------------------------- monitoring


def test_monitoring_server_configs_differ_in_the_monitoring_switches_only(tmp_path: Path) -> None:
    for journal in (True, False):
        for variant in MONITORING_VARIANTS:
            path = tmp_path / f"{variant.name}-{journal}.toml"
            path.write_text(monitoring_toml(variant, journal, "interval"))
            config = load_server_config(path)
            assert (config.monitoring.sketches, config.monitoring.accuracy) == (
                variant.sketches,
                variant.accuracy,
            )
            assert (config.journal.enabled, config.journal.fsync) == (journal, "interval")
    assert [(v.sketches, v.accuracy) for v in MONITORING_VARIANTS] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    ]
    assert MONITORING_VARIANTS[0].name == "off"  # the base of the cost rows


def test_monitoring_check_reads_the_reports_against_the_variant() -> None:
    off, sketches, accuracy, both = MONITORING_VARIANTS
    drift = {
        "deployment": "m",
        "versions": [
            {"version": "1", "state": "ready", "window": {"rows": 0}},
            {"version": "2", "state": "ready", "window": {"rows": 120}},
        ],
    }
    unmonitored = {"versions": [{"version": "2", "error": "drift is not monitored"}]}
    kept = {"versions": [{"version": "2", "join": {"predictions": 110}}]}
    assert sketched_rows(drift) == {"1": 0, "2": 120}
    assert sketched_rows(unmonitored) == {}
    assert kept_predictions(kept) == 110 and kept_predictions({"versions": []}) == 0
    with pytest.raises(KeyError):
        sketched_rows({"versions": [{"version": "2"}]})
    assert MonitoringCheck(both, {"1": 0, "2": 120}, 110, 100).ok
    assert MonitoringCheck(sketches, {"2": 120}, 0, 100).ok
    assert MonitoringCheck(accuracy, {}, 110, 100).ok
    assert MonitoringCheck(off, {}, 0, 100).ok
    # fewer rows than replies, nothing at all, or anything where off: not as configured
    assert not MonitoringCheck(sketches, {"2": 99}, 0, 100).ok
    assert not MonitoringCheck(both, {"2": 120}, 99, 100).ok
    assert not MonitoringCheck(sketches, {"2": 0}, 0, 0).ok
    assert not MonitoringCheck(off, {"2": 0}, 0, 100).ok
    assert not MonitoringCheck(off, {}, 1, 100).ok
    assert (
        "rows sketched v1 0, v2 120; 110 predictions kept"
        in MonitoringCheck(both, {"1": 0, "2": 120}, 110, 100).describe()
    )
    assert "NOT as configured" in MonitoringCheck(off, {}, 1, 100).describe()


def _monitoring_result() -> MonitoringResult:
    names = [v.name for v in MONITORING_VARIANTS]
    points = {
        (name, "grpc-raw", 64): Point(name, "grpc-raw", 64, [_run(r, 40.0, 50.0) for r in rates])
        for name, rates in zip(
            names, ((1600, 1500), (1580, 1500), (1600, 1470), (1560, 1470)), strict=True
        )
    }
    meta = {
        "model": "m",
        "journal": "journal on (fsync batch)",
        "server_cores": [0],
        "client_cores": [1],
        "repeats": 2,
        "duration_s": 1.0,
        "variants": {v.name: v.describe() for v in MONITORING_VARIANTS},
        "target": {"pct": 2.0, "path": "grpc-raw", "concurrency": 64},
    }
    checks = {
        v.name: MonitoringCheck(v, {"2": 500} if v.sketches else {}, 500 if v.accuracy else 0, 400)
        for v in MONITORING_VARIANTS
    }
    return MonitoringResult(meta, points, cost_rows(points), checks, [])


def test_monitoring_report_text_and_json() -> None:
    result = _monitoring_result()
    text = report.monitoring_text(result)
    lines = _cells_by_variant(text, "grpc-raw")
    assert lines["off"][6:8] == ["-", "-"]
    assert lines["sketches"][6:8] == ["+0.6 %", "+1.2 +0.0"]  # medians 1550 -> 1540
    assert lines["both"][6:8] == ["+2.3 %", "+2.5 +2.0"]  # 1550 -> 1515: over the target
    assert (
        "target: monitoring costs <= 2 % of req/s at c=64 on grpc-raw: sketches +0.6 % (within"
        in text
    )
    assert "; both +2.3 % (over, per repeat +2.0..+2.5 %)" in text
    assert "check off: drift not monitored" in text
    assert "check both: rows sketched v2 500; 500 predictions kept" in text
    document = json.loads(json.dumps(report.monitoring_json(result)))
    assert [r["variant"] for r in document["rows"]] == ["off", "sketches", "accuracy", "both"]
    assert document["checks"]["sketches"] == {
        "sketched_rows": {"2": 500},
        "predictions_kept": 0,
        "ok_replies": 400,
        "ok": True,
    }
    assert not result.failed
    broken = {**result.checks, "off": MonitoringCheck(MONITORING_VARIANTS[0], {}, 3, 400)}
    assert replace(result, checks=broken).failed


def test_monitoring_bench_against_real_gateways(tmp_path: Path) -> None:
    config = MonitoringBenchConfig(model_repository=EXAMPLES, **SHORT_RUN)
    result = run_monitoring_bench(config, log_dir=tmp_path, say=lambda _: None)
    assert not result.failed, result.skipped
    assert [(r.variant, r.path, r.concurrency) for r in result.rows] == [
        (v.name, "http-json", 2) for v in MONITORING_VARIANTS
    ]
    assert all(r.throughput_rps > 0 for r in result.rows)
    # the switches took effect: the routed version (2, the highest) was sketched and its
    # predictions kept only where its variant asks for it
    checks = result.checks
    assert checks["off"].sketched == {} and checks["off"].kept == 0
    assert checks["sketches"].sketched["2"] >= checks["sketches"].ok_replies > 0
    assert checks["accuracy"].sketched == {} and checks["accuracy"].kept > 0
    assert checks["both"].sketched["2"] > 0 and checks["both"].kept > 0


def test_monitoring_cli_rejects_bad_options(tmp_path: Path) -> None:
    assert main(["monitoring", "--repeats", "0", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["monitoring", "--journal", "maybe"])
    assert exit_.value.code == 2
