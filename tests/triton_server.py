"""Test models for a real tritonserver (gateway.bench.triton: its own venv, CPU only).

Python-backend models whose behaviour the remote-backend tests need and no real model has: one
that fails, one that sleeps, one that echoes BYTES. The server itself, the venv it runs from and
the ONNX wrapper model are the bench's (gateway/bench/triton.py documents the gotchas).
"""

from __future__ import annotations

from pathlib import Path

from gateway.bench.model import TensorSpec
from gateway.bench.triton import add_python_model

_FAILING_MODEL_PY = """
class TritonPythonModel:
    def execute(self, requests):
        raise RuntimeError("this model fails on purpose")
"""

_SLEEPING_MODEL_PY = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({seconds})
        answers = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", data)]))
        return answers
"""

_IDENTITY_MODEL_PY = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        answers = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            answers.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", data)]))
        return answers
"""


def _echo_tensors(
    datatype: str, shape: tuple[int, ...]
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """INPUT and OUTPUT, alike."""
    return (TensorSpec("INPUT", datatype, shape),), (TensorSpec("OUTPUT", datatype, shape),)


def add_failing_model(repository: Path, name: str) -> None:
    """A model that raises in every execute: INPUT and OUTPUT, FP32 [-1]."""
    add_python_model(repository, name, _FAILING_MODEL_PY, *_echo_tensors("FP32", (-1,)))


def add_identity_model(repository: Path, name: str, datatype: str = "BYTES") -> None:
    """A model that answers its INPUT as OUTPUT, both `datatype` [-1, -1]."""
    add_python_model(repository, name, _IDENTITY_MODEL_PY, *_echo_tensors(datatype, (-1, -1)))


def add_sleeping_model(repository: Path, name: str, seconds: float) -> None:
    """A model that sleeps `seconds` in every execute, then answers INPUT as OUTPUT (FP32 [-1])."""
    source = _SLEEPING_MODEL_PY.format(seconds=seconds)
    add_python_model(repository, name, source, *_echo_tensors("FP32", (-1,)))
