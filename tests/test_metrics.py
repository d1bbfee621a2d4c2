"""The Prometheus exposition at /metrics: it parses, the latency histogram is cumulative and
agrees with the counters, and the counters agree with the statistics extension."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest
from conftest import http_request
from prometheus_client.parser import text_string_to_metric_families

from gateway.statistics import LATENCY_BUCKETS

HISTOGRAM = "modelgate_inference_request_duration_seconds"
COUNTERS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_exec_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_compute_input_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_compute_output_duration_us",
)
MODEL, VERSION = "identity_int32", "1"


def scrape(http_url: str):
    answer = http_request("GET", f"{http_url}/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(answer.body.decode())}


def sample_value(families, name: str, model: str = MODEL, version: str = VERSION) -> float:
    for sample in families[name].samples:
        if sample.name == name and sample.labels == {"model": model, "version": version}:
            return sample.value
    raise AssertionError(f"no {name} for {model} {version}")


def histograms(families) -> dict[tuple[str, str], dict]:
    """Per (model, version): bucket (le -> value), count and sum of the latency histogram."""
    found: dict[tuple[str, str], dict] = defaultdict(lambda: {"buckets": []})
    for sample in families[HISTOGRAM].samples:
        labels = dict(sample.labels)
        le = labels.pop("le", None)
        entry = found[(labels["model"], labels["version"])]
        if sample.name.endswith("_bucket"):
            entry["buckets"].append((float(le), sample.value))
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
    return dict(found)


def _infer(http_url: str, rng: np.random.Generator, rows: int, good: bool = True) -> None:
    values = rng.integers(-1000, 1000, size=(rows, 3 if good else 4)).astype(np.int32)
    body = {
        "inputs": [
            {
                "name": "INPUT",
                "datatype": "INT32",
                "shape": list(values.shape),
                "data": values.reshape(-1).tolist(),
            }
        ]
    }
    answer = http_request("POST", f"{http_url}/v2/models/{MODEL}/infer", body)
    assert answer.status == (200 if good else 400), answer.body


@pytest.fixture(scope="module")
def traffic(http_url: str) -> dict[str, int]:
    """Some successes and failures on MODEL, so every series has data."""
    rng = np.random.default_rng(7000)
    rows = [int(n) for n in rng.integers(1, 5, size=5)]
    for n in rows:
        _infer(http_url, rng, n)
    _infer(http_url, rng, 1, good=False)
    return {"successes": len(rows), "rows": sum(rows), "failures": 1}


def test_exposition_parses_with_every_family(http_url, traffic):
    families = scrape(http_url)
    for name in COUNTERS:
        assert name in families, sorted(families)
    assert families[HISTOGRAM].type == "histogram"
    # every loaded version has a series; the unloadable ones have none
    labels = {tuple(sorted(s.labels.items())) for s in families[COUNTERS[0]].samples}
    assert (("model", "credit_risk"), ("version", "2")) in labels
    assert (("model", "broken"), ("version", "1")) not in labels


def test_histogram_buckets_are_cumulative(http_url, traffic):
    families = scrape(http_url)
    found = histograms(families)
    assert (MODEL, VERSION) in found
    for key, entry in found.items():
        bounds = [le for le, _ in entry["buckets"]]
        assert bounds == sorted(bounds), key
        assert bounds == [*LATENCY_BUCKETS, math.inf], key
        values = [value for _, value in entry["buckets"]]
        assert all(a <= b for a, b in itertools.pairwise(values)), (key, values)
        assert values[-1] == entry["count"], key
        assert entry["sum"] >= 0
        success = sample_value(families, "nv_inference_request_success", *key)
        failure = sample_value(families, "nv_inference_request_failure", *key)
        assert entry["count"] == success + failure, key
    mine = found[(MODEL, VERSION)]
    assert mine["count"] >= traffic["successes"] + traffic["failures"]
    assert mine["sum"] > 0
    # the buckets really spread: at least one request lies at or under the largest finite bound
    assert mine["buckets"][-2][1] > 0


def test_counters_follow_requests(http_url, traffic):
    rng = np.random.default_rng(7001)
    before = scrape(http_url)
    rows = [int(n) for n in rng.integers(1, 6, size=4)]
    for n in rows:
        _infer(http_url, rng, n)
    _infer(http_url, rng, 2, good=False)
    after = scrape(http_url)

    def delta(name: str) -> float:
        return sample_value(after, name) - sample_value(before, name)

    assert delta("nv_inference_request_success") == len(rows)
    assert delta("nv_inference_request_failure") == 1
    assert delta("nv_inference_count") == sum(rows)
    assert 1 <= delta("nv_inference_exec_count") <= len(rows)
    assert delta("nv_inference_request_duration_us") > 0
    assert delta("nv_inference_compute_infer_duration_us") > 0
    hist_before, hist_after = histograms(before), histograms(after)
    assert hist_after[(MODEL, VERSION)]["count"] - hist_before[(MODEL, VERSION)]["count"] == 5


def test_counters_agree_with_the_statistics_extension(http_url, traffic):
    families = scrape(http_url)
    answer = http_request("GET", f"{http_url}/v2/models/{MODEL}/versions/{VERSION}/stats")
    (stats,) = answer.json()["model_stats"]
    inference = stats["inference_stats"]
    assert sample_value(families, "nv_inference_request_success") == inference["success"]["count"]
    assert sample_value(families, "nv_inference_request_failure") == inference["fail"]["count"]
    assert sample_value(families, "nv_inference_count") == stats["inference_count"]
    assert sample_value(families, "nv_inference_exec_count") == stats["execution_count"]
    assert sample_value(families, "nv_inference_request_duration_us") == pytest.approx(
        inference["success"]["ns"] / 1000
    )


def _journal_value(families, name: str, stream: str | None = None) -> float:
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and (stream is None or sample.labels.get("stream") == stream):
                return sample.value
    raise AssertionError(f"{name} not exposed")


def test_journal_progress_is_exposed_and_follows_predictions(http_url):
    before = scrape(http_url)
    records = _journal_value(before, "modelgate_journal_records_total")
    head = _journal_value(before, "modelgate_journal_head_seq", "predictions")
    rng = np.random.default_rng(41)
    for _ in range(3):
        _infer(http_url, rng, rows=1)
    # the records are written after the answers (async mode): read until they are committed,
    # bounded by the number of scrapes, not by time
    for _ in range(1000):
        after = scrape(http_url)
        if _journal_value(after, "modelgate_journal_head_seq", "predictions") >= head + 3:
            break
    assert _journal_value(after, "modelgate_journal_head_seq", "predictions") >= head + 3
    assert _journal_value(after, "modelgate_journal_records_total") >= records + 3
    assert _journal_value(after, "modelgate_journal_queue_depth") >= 0
    assert _journal_value(after, "modelgate_journal_lag_seconds") >= 0
