"""Load generator and side-by-side comparisons with peers (imported as `gateway.bench`).

Modules, one job each:
  cli           `python -m gateway.bench {compare,journal,routing,load,report,direct}`
  compare       the comparison run: floor, Modelgate, MLServer, Triton, interleaved repeats
  journal       what prediction journaling costs: the journal alone, Modelgate off vs on
  routing       what a deployment's traffic policy costs: one version, a 90/10 split, a shadow
  recorder      what the measuring commands share: settings, starting servers, points, skips
  measure       picks wrk / h2load / the Python generator for a path and runs one point
  loadgen       Python closed-loop and open-loop generators (open loop: no coordinated omission)
  pydriver      one point with the Python generator
  wrk, h2load   drivers and output parsers for the C load generators
  clients       Python V2 clients (async senders) and the one-request path check
  payloads      wire encodings per path (JSON, binary extension, gRPC typed / raw, gRPC frames)
  model         model inputs from the .onnx or V2 metadata; seeded random rows
  direct        the in-process ONNX Runtime floor
  peers         starting, readiness and stopping of servers, pinned
  venvs         the peers' own venvs (their pins clash with ours), built once and reused
  mlserver      MLServer venv, settings and model folder; mlserver_runtime is copied into it
  triton        tritonserver from its own venv, Python-backend ONNX models, a restartable server
  stats         percentiles, run results, medians of repeats
  report        tables, JSON, PNG
  progress      the progress line
  procs         taskset and pinning, free ports, running a tool with progress
"""
