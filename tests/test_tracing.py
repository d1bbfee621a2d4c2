"""RequestTracer builds the decode -> queue -> compute -> encode spans from request marks."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.batching import Timing
from gateway.config import ConfigError, TracingConfig
from gateway.tracing import RequestMarks, RequestTracer, make_tracer


@pytest.fixture
def exporter_and_tracer() -> tuple[InMemorySpanExporter, RequestTracer]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, RequestTracer(provider)


def test_spans_nest_under_one_infer_span_in_order(exporter_and_tracer) -> None:
    exporter, tracer = exporter_and_tracer
    marks = RequestMarks(started=1_000, decoded=3_000, inferred=20_000, encoded=24_000)
    timing = Timing(
        queue_ns=5_000,
        compute_input_ns=1_000,
        compute_infer_ns=9_000,
        compute_output_ns=500,
        batch_size=4,
    )
    tracer.record("credit_risk", "2", "req-7", marks, timing)

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"infer", "decode", "queue", "compute", "encode"}
    root = spans["infer"]
    assert root.parent is None
    assert root.attributes["model.name"] == "credit_risk"
    assert root.attributes["model.version"] == "2"
    assert root.attributes["request.id"] == "req-7"
    assert root.attributes["batch.size"] == 4
    for name in ("decode", "queue", "compute", "encode"):
        assert spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
        assert root.start_time <= spans[name].start_time <= spans[name].end_time <= root.end_time
    # children follow each other: decode ends where the queue starts, and so on
    assert spans["decode"].end_time == spans["queue"].start_time
    assert spans["queue"].end_time - spans["queue"].start_time == timing.queue_ns
    assert spans["compute"].start_time == spans["queue"].end_time
    assert spans["encode"].end_time - spans["encode"].start_time == 4_000
    assert root.end_time - root.start_time == marks.encoded - marks.started


def test_no_request_id_means_no_attribute(exporter_and_tracer) -> None:
    exporter, tracer = exporter_and_tracer
    tracer.record("m", "1", "", RequestMarks(0, 1, 2, 3), Timing(batch_size=1))
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "infer"]
    assert "request.id" not in root.attributes


def test_exporter_choice() -> None:
    assert make_tracer(TracingConfig(exporter="off")) is None
    tracer = make_tracer(TracingConfig(exporter="console", sample_ratio=0.5))
    assert isinstance(tracer, RequestTracer)
    tracer.shutdown()
    with pytest.raises(ConfigError, match="exporter"):
        TracingConfig(exporter="jaeger")
    with pytest.raises(ConfigError, match="sample_ratio"):
        TracingConfig(sample_ratio=1.5)
