"""The floor: the same .onnx called directly with ONNX Runtime in-process, batch 1, one request
at a time, with the session settings the servers use (one intra-op thread, sequential).

Every server path's latency is this plus its own work, so "added latency" in the report is a
path's p50 at 1 in flight minus this p50. With one core and no queueing, one-at-a-time calls are
also the most throughput that core can give, so the floor has no separate 64-in-flight point.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .model import ModelSpec, random_rows
from .progress import ProgressLine, summary_line
from .stats import RunResult, summarize

TOOL = "onnxruntime"
WARMUP_CALLS = 200


def measure_direct(
    model_file: Path, *, duration_s: float, seed: int, distinct: int = 16, label: str = "direct"
) -> RunResult:
    """Time `session.run` back to back for `duration_s` after WARMUP_CALLS unrecorded calls."""
    import onnxruntime as ort  # loaded here so the rest of the bench does not pay for it

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    spec = ModelSpec.from_onnx(model_file, model_file.stem)
    feeds = random_rows(spec, batch=1, count=distinct, seed=seed)
    output_names = [output.name for output in session.get_outputs()]
    for i in range(WARMUP_CALLS):
        session.run(output_names, feeds[i % distinct])

    progress = ProgressLine(label, duration_s)
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    deadline = start + duration_s
    next_tick = start + 1.0
    i = 0
    while (before := clock()) < deadline:
        session.run(output_names, feeds[i % distinct])
        after = clock()
        latencies.append(after - before)
        i += 1
        if after >= next_tick:
            next_tick = after + 1.0
            progress.update(after - start, len(latencies))
    result = summarize(
        np.asarray(latencies), errors=0, elapsed_s=clock() - start, concurrency=1, tool=TOOL
    )
    progress.close(summary_line(result))
    return result
