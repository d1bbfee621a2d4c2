"""The request and response of the request path, independent of any transport.

Codecs turn wire messages into these and back; the serving core only ever sees these.
Tensor data is always a numpy array already shaped as declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Parameters = dict[str, Any]


@dataclass(slots=True)
class InferInput:
    name: str
    datatype: str
    data: np.ndarray  # shaped as the client declared it


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    inputs: list[InferInput]
    id: str = ""
    parameters: Parameters = field(default_factory=dict)
    # empty means "every output of the model"
    outputs: list[RequestedOutput] = field(default_factory=list)


@dataclass(slots=True)
class InferOutput:
    name: str
    datatype: str
    data: np.ndarray


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[InferOutput]
    id: str = ""
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TensorMetadata:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 marks a dynamic dimension

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """What a model version takes and gives, as V2 metadata reports it."""

    platform: str
    inputs: tuple[TensorMetadata, ...]
    outputs: tuple[TensorMetadata, ...]
