"""What a model takes: input names, V2 datatypes and shapes, read from the .onnx file or from a
V2 server's model metadata; and seeded random rows that fit it.

Datatypes come from the gateway's own V2 table (`gateway.protocol.datatypes`); nothing else of
the gateway is used, so the bench measures any V2 server from the outside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.protocol.datatypes import BY_NAME, BY_ORT_TYPE

# The fixed-width datatypes (the bench generates numeric rows only), from the gateway's one table.
V2_TO_NUMPY: dict[str, np.dtype] = {d.name: d.dtype for d in BY_NAME.values() if not d.is_bytes}
ONNX_TO_V2: dict[str, str] = {t: d.name for t, d in BY_ORT_TYPE.items() if not d.is_bytes}


class ModelSpecError(ValueError):
    """The model's metadata cannot be turned into a request (unsupported type, unknown shape)."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. `shape` keeps -1 for dynamic dimensions (the batch one included)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """A model as requests address it: `version` "" means the server's default version."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    version: str = ""

    @property
    def infer_path(self) -> str:
        """The V2 REST infer route for this model (and version, if pinned)."""
        if self.version:
            return f"/v2/models/{self.name}/versions/{self.version}/infer"
        return f"/v2/models/{self.name}/infer"

    @property
    def ready_path(self) -> str:
        """The V2 REST readiness route of this model (and version, if pinned)."""
        return self.infer_path.removesuffix("/infer") + "/ready"

    @classmethod
    def from_onnx(cls, path: Path, name: str, version: str = "") -> ModelSpec:
        """Read inputs and outputs from an .onnx file; raises ModelSpecError on unsupported types.

        Symbolic dimensions ("batch", None) become -1.
        """
        import onnxruntime as ort  # only this path needs ORT loaded into the process

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def convert(nodes: Sequence[object]) -> tuple[TensorSpec, ...]:
            specs = []
            for node in nodes:
                onnx_type = node.type  # type: ignore[attr-defined]
                if onnx_type not in ONNX_TO_V2:
                    raise ModelSpecError(f"{node.name}: unsupported ONNX type {onnx_type}")  # type: ignore[attr-defined]
                shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)  # type: ignore[attr-defined]
                specs.append(TensorSpec(node.name, ONNX_TO_V2[onnx_type], shape))  # type: ignore[attr-defined]
            return tuple(specs)

        return cls(name, convert(session.get_inputs()), convert(session.get_outputs()), version)

    @classmethod
    def from_v2_metadata(cls, metadata: Mapping[str, object], version: str = "") -> ModelSpec:
        """Build from a V2 `GET /v2/models/{name}` reply body; raises ModelSpecError if it lists
        no inputs."""

        def convert(entries: object) -> tuple[TensorSpec, ...]:
            if not isinstance(entries, list):
                return ()
            return tuple(
                TensorSpec(str(e["name"]), str(e["datatype"]), tuple(int(d) for d in e["shape"]))
                for e in entries
            )

        inputs = convert(metadata.get("inputs"))
        if not inputs:
            raise ModelSpecError(
                f"server metadata for {metadata.get('name')!r} lists no inputs; pass --model-file"
            )
        outputs = convert(metadata.get("outputs"))
        return cls(str(metadata.get("name", "")), inputs, outputs, version)


def request_shape(spec: TensorSpec, batch: int) -> tuple[int, ...]:
    """The concrete shape of one request: dimension 0 is the batch, the rest must be static."""
    if not spec.shape:
        raise ModelSpecError(f"{spec.name}: scalar inputs are not supported")
    rest = spec.shape[1:]
    if any(d < 0 for d in rest):
        raise ModelSpecError(f"{spec.name}: dynamic non-batch dimension in {list(spec.shape)}")
    return (batch, *rest)


def random_rows(
    model: ModelSpec, *, batch: int, count: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """`count` distinct requests of `batch` rows each, drawn from `np.random.default_rng(seed)`.

    Floats are standard normal, integers small non-negative, booleans fair coins: values do not
    change what the bench measures, but distinct rows keep any caching honest.
    """
    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        tensors: dict[str, np.ndarray] = {}
        for spec in model.inputs:
            if spec.datatype not in V2_TO_NUMPY:
                raise ModelSpecError(f"{spec.name}: unsupported datatype {spec.datatype}")
            dtype = V2_TO_NUMPY[spec.datatype]
            shape = request_shape(spec, batch)
            if dtype.kind == "f":
                array = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                array = rng.integers(0, 2, shape).astype(dtype)
            else:
                array = rng.integers(0, 100, shape).astype(dtype)
            tensors[spec.name] = np.ascontiguousarray(array)
        requests.append(tensors)
    return requests
