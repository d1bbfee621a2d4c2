"""OpenTelemetry spans for the request path: decode -> queue -> infer -> encode under one parent.

The request path only takes timestamps (which the statistics need anyway); spans are built from
them after the response is ready, so a disabled exporter costs one `is None` check per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from gateway.batching import Timing
from gateway.config import TracingConfig


@dataclass(slots=True)
class RequestMarks:
    """perf_counter_ns() marks of one request, in the order they are taken."""

    started: int
    decoded: int
    inferred: int
    encoded: int


class RequestTracer:
    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("modelgate")
        # perf_counter_ns has no epoch; OpenTelemetry wants wall-clock nanoseconds.
        self._epoch_offset = time.time_ns() - time.perf_counter_ns()

    def record(
        self, model: str, version: str, request_id: str, marks: RequestMarks, timing: Timing
    ) -> None:
        at = self._epoch_offset
        attributes = {
            "model.name": model,
            "model.version": version,
            "batch.size": timing.batch_size,
        }
        if request_id:
            attributes["request.id"] = request_id
        parent = self._tracer.start_span(
            "infer", start_time=marks.started + at, attributes=attributes
        )
        context = trace.set_span_in_context(parent)
        queued = marks.decoded + timing.queue_ns
        computed = (
            queued + timing.compute_input_ns + timing.compute_infer_ns + timing.compute_output_ns
        )
        for name, begin, end in (
            ("decode", marks.started, marks.decoded),
            ("queue", marks.decoded, queued),
            ("compute", queued, max(computed, marks.inferred)),
            ("encode", marks.inferred, marks.encoded),
        ):
            span = self._tracer.start_span(name, context=context, start_time=begin + at)
            span.end(end_time=end + at)
        parent.end(end_time=marks.encoded + at)

    def shutdown(self) -> None:
        self._provider.shutdown()


def make_tracer(config: TracingConfig) -> RequestTracer | None:
    if config.exporter == "off":
        return None
    exporter: SpanExporter
    if config.exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        # imported here: the OTLP exporter pulls in its own gRPC stubs, needed only when chosen
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint, insecure=True)
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=TraceIdRatioBased(config.sample_ratio),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return RequestTracer(provider)
