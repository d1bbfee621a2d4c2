"""Generated gRPC/protobuf modules for Modelgate, and the private descriptor pool they live in.

Why a private pool: ``protos/inference.proto`` is wire-compatible with the Open Inference
Protocol, so it defines the same fully qualified symbols (``inference.ModelInferRequest``,
``inference.GRPCInferenceService``, ...) as the module that ``tritonclient.grpc`` ships.
Generated code normally registers its file into protobuf's process-wide default pool, and the
default pool refuses a second definition of a symbol from a different file: a process that
imports both tritonclient and our modules (the tests, the bench, the Triton backend) would fail
at import time with "duplicate symbol". ``protos/generate.py`` therefore rewrites every
generated ``*_pb2.py`` to register into :data:`POOL` instead. Nothing on the wire changes:
message and service names, and so gRPC method paths such as
``/inference.GRPCInferenceService/ModelInfer``, stay the same.

Contract and hazards:

- Import messages from the generated modules (``from gateway._proto import inference_pb2``);
  never look ``inference.*`` names up in the default pool or ``symbol_database.Default()``,
  where they are either missing or tritonclient's.
- Our message classes and tritonclient's are different classes for the same wire format.
  Crossing between them goes through bytes (``SerializeToString`` / ``FromString``), never
  ``CopyFrom`` or ``MergeFrom``, which reject a class from another pool.
- The same holds for files a ``.proto`` here imports from outside this package (e.g.
  ``google/protobuf/timestamp.proto``): generated code copies them into :data:`POOL` with
  :func:`adopt`, so such a field holds POOL's ``Timestamp`` class (well-known-type helpers such
  as ``FromDatetime`` work), not ``timestamp_pb2.Timestamp``.
- Do not edit the generated files: run ``python protos/generate.py``. ``tests/test_protos.py``
  fails when they are stale.
"""

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor

__all__ = ["POOL", "adopt"]

POOL = descriptor_pool.DescriptorPool()
"""The descriptor pool holding every message and service generated from ``protos/*.proto``."""


def adopt(file: FileDescriptor) -> None:
    """Copy ``file`` from another pool into :data:`POOL`, dependencies first.

    Called by generated code for each imported ``.proto`` that is not one of ours. Idempotent:
    a file already in :data:`POOL` is skipped. Raises ``TypeError`` if :data:`POOL` already
    holds a different file defining the same symbols.
    """
    try:
        POOL.FindFileByName(file.name)
    except KeyError:
        pass
    else:
        return
    for dependency in file.dependencies:
        adopt(dependency)
    POOL.AddSerializedFile(file.serialized_pb)
