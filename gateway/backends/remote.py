"""A model version served by a remote Open Inference Protocol (KServe V2) server over gRPC:
Triton, MLServer, or another Modelgate.

The remote server batches on its own, so RemoteBackend is a Runner itself: `submit` sends one
request as one ModelInfer call, raw tensors both ways. Failures split in two kinds, because the
request path treats them differently:
  BackendUnavailable  the remote could not answer (refused, UNAVAILABLE, DEADLINE_EXCEEDED, model
                      gone, backend closed): worth failing over to another version;
  BatchError          the remote answered that this request failed (INVALID_ARGUMENT, INTERNAL,
                      a malformed answer): another try elsewhere would likely fail the same way.

Threads: none of our own. The client, its channel and the in-flight count belong to the event
loop that ran `open` (a grpc.aio channel is bound to its loop); call every method from that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc.aio as triton
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from gateway.batching import BatchError, Timing
from gateway.codecs.tensors import array_from_raw, array_from_values
from gateway.config import ConfigError
from gateway.errors import InvalidInput
from gateway.protocol.datatypes import BY_NAME
from gateway.protocol.types import ModelSignature, TensorMetadata

SCHEME = "grpc://"
HEALTH_TIMEOUT_S = 1.0  # health probes run often and must not pile up behind a slow remote
# tritonclient's channel options (no message size limit) plus a cap on gRPC's reconnect backoff:
# by default it grows to 120 s, and until the next attempt every call fails at once, so a
# remote back after a long outage would look down for up to two minutes more.
RECONNECT_BACKOFF_MAX_MS = 1000
_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
]

# gRPC codes that mean "this remote cannot answer now", as tritonclient spells them. NOT_FOUND
# is here because the model was ready at open: it has been unloaded since; CANCELLED comes from
# a server that cancels its calls as it shuts down (a local cancellation is CancelledError).
_UNAVAILABLE_CODES = frozenset(
    str(code)
    for code in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.CANCELLED,
    )
)


class BackendUnavailable(Exception):
    """The remote server could not be reached or could not serve the model in time; another
    version (or a retry later) may succeed. `url` names the remote."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(f"{url}: {message}" if url else message)
        self.message = message
        self.url = url


@dataclass(frozen=True)
class RemoteSpec:
    """Where a version is served: `url` is the remote's gRPC endpoint, "host:port" or
    "grpc://host:port" (no TLS). `version` "" lets the remote choose (its version policy)."""

    url: str
    model: str
    version: str = ""
    timeout_s: float = 5.0  # deadline of each remote call

    def __post_init__(self) -> None:
        address = self.address
        if not address or "://" in address or ":" not in address:
            raise ConfigError(f"remote url must be host:port or {SCHEME}host:port: {self.url!r}")
        if not self.model:
            raise ConfigError("remote model must not be empty")
        if not self.timeout_s > 0:
            raise ConfigError(f"remote timeout_s must be > 0: {self.timeout_s}")

    @property
    def address(self) -> str:
        """host:port, as gRPC takes it."""
        return self.url.removeprefix(SCHEME)


class RemoteBackend:
    """One model version on a remote V2 server. Build it with `await RemoteBackend.open(spec)`."""

    def __init__(
        self,
        spec: RemoteSpec,
        client: triton.InferenceServerClient,
        signature: ModelSignature,
        max_batch_size: int,
    ) -> None:
        # fixed at open
        self.spec = spec
        self.signature = signature
        self.max_batch_size = max_batch_size  # the remote's own limit; 0 when it did not say
        self.content_id = f"{SCHEME}{spec.address}/{spec.model}/{spec.version or 'default'}"
        self._client = client
        self._input_datatypes = {t.name: t.datatype for t in signature.inputs}
        self._output_names = [t.name for t in signature.outputs]
        self._output_datatypes = [t.datatype for t in signature.outputs]
        # asking for every output by name fixes which ones come back, whatever the remote's default
        self._requested = [InferRequestedOutput(name) for name in self._output_names]
        # event-loop state: close() waits for in-flight calls before it closes the channel
        self._closed = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    async def open(cls, spec: RemoteSpec) -> RemoteBackend:
        """Connect, check that the server is live and the model ready, and read the model's
        metadata (and max_batch_size from its config, where the server offers one). Must run on
        the event loop that will use the backend.

        Raises BackendUnavailable when the remote cannot be reached or the model is not ready,
        InvalidInput when the metadata names a datatype V2 does not define."""
        client = triton.InferenceServerClient(spec.address, channel_args=_CHANNEL_ARGS)
        try:
            signature, max_batch_size = await _describe(client, spec)
        except BaseException:
            await client.close()
            raise
        return cls(spec, client, signature, max_batch_size)

    def adapt(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The remote takes the checked feeds as they are."""
        return feeds

    async def submit(
        self, feeds: Mapping[str, np.ndarray], rows: int, key: Hashable
    ) -> tuple[list[np.ndarray], Timing]:
        """Run one request remotely. `feeds` must have been checked against `signature` (names,
        datatypes, shapes), as for any version. Returns the outputs in `signature.outputs` order
        (read-only arrays: views of the answer's buffers) and the timing: `compute_infer_ns` is
        the wall time of the remote call. `key` is unused: the remote batches by its own rules.

        Raises BackendUnavailable or BatchError (see the module docstring)."""
        if self._closed:
            raise BackendUnavailable("the remote backend is closed", url=self.spec.url)
        try:
            inputs = []
            for name, array in feeds.items():
                tensor = InferInput(name, list(array.shape), self._input_datatypes[name])
                tensor.set_data_from_numpy(array)
                inputs.append(tensor)
        except InferenceServerException as error:
            raise BatchError(f"cannot send the inputs: {error.message()}") from error
        self._enter()
        try:
            begin = perf_counter_ns()
            result = await self._client.infer(
                self.spec.model,
                inputs,
                model_version=self.spec.version,
                outputs=self._requested,
                client_timeout=self.spec.timeout_s,
            )
            elapsed = perf_counter_ns() - begin
        except InferenceServerException as error:
            raise self._failure(error) from error
        except asyncio.CancelledError:
            self._raise_if_closed_under_us()
            raise
        finally:
            self._leave()
        outputs = decode_outputs(result.get_response(), self._output_names, self._output_datatypes)
        outputs = [
            _as_declared(o, t.shape) for o, t in zip(outputs, self.signature.outputs, strict=True)
        ]
        return outputs, Timing(compute_infer_ns=elapsed, batch_size=rows)

    async def health(self) -> bool:
        """Whether the server is live and the model ready, asked with a short deadline. False on
        any failure, the backend closed included; never raises (cancellation aside)."""
        if self._closed:
            return False
        timeout = min(HEALTH_TIMEOUT_S, self.spec.timeout_s)
        self._enter()
        try:
            return bool(
                await self._client.is_server_live(client_timeout=timeout)
                and await self._client.is_model_ready(
                    self.spec.model, self.spec.version, client_timeout=timeout
                )
            )
        except Exception:
            return False
        except asyncio.CancelledError:
            self._raise_if_closed_under_us()
            raise
        finally:
            self._leave()

    async def close(self) -> None:
        """Refuse new calls, let those in flight finish (each is bounded by its deadline), then
        close the channel. Idempotent."""
        self._closed = True
        await self._idle.wait()
        await self._client.close()  # a no-op on a closed channel

    def _enter(self) -> None:
        self._in_flight += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    def _raise_if_closed_under_us(self) -> None:
        """grpc.aio reports a call cut by the channel's closing as CancelledError; when nobody
        cancelled our task, that must not look like a cancelled request to the caller."""
        task = asyncio.current_task()
        if self._closed and task is not None and not task.cancelling():
            raise BackendUnavailable("the remote backend was closed", url=self.spec.url)

    def _failure(self, error: InferenceServerException) -> Exception:
        reason = error.message() or str(error)
        if error.status() in _UNAVAILABLE_CODES:
            return BackendUnavailable(f"{error.status()}: {reason}", url=self.spec.url)
        return BatchError(f"the remote model failed: {reason}")


async def _describe(
    client: triton.InferenceServerClient, spec: RemoteSpec
) -> tuple[ModelSignature, int]:
    """The model's signature and max_batch_size (0 where the remote has no model config)."""
    timeout = spec.timeout_s
    try:
        if not await client.is_server_live(client_timeout=timeout):
            raise BackendUnavailable("the server is not live", url=spec.url)
        if not await client.is_model_ready(spec.model, spec.version, client_timeout=timeout):
            raise BackendUnavailable(
                f"model '{spec.model}' version '{spec.version}' is not ready", url=spec.url
            )
        metadata = await client.get_model_metadata(spec.model, spec.version, client_timeout=timeout)
    except InferenceServerException as error:
        raise BackendUnavailable(f"{error.status()}: {error.message()}", url=spec.url) from error
    try:
        config = await client.get_model_config(spec.model, spec.version, client_timeout=timeout)
        max_batch_size = int(config.config.max_batch_size)
    except InferenceServerException:
        max_batch_size = 0  # the model config is a Triton extension, not part of V2
    return signature_from_metadata(metadata), max_batch_size


def _as_declared(output: np.ndarray, declared: tuple[int, ...]) -> np.ndarray:
    """Drop a trailing unit dimension the metadata does not declare: MLServer's NumpyCodec
    answers a [N] tensor as [N, 1] whatever its metadata says, which would fail validation and
    differ from the local version of the same model. Anything else is left for the checks."""
    if output.ndim == len(declared) + 1 and output.shape[-1] == 1:
        return output.reshape(output.shape[:-1])
    return output


def decode_outputs(response: Any, names: list[str], datatypes: list[str]) -> list[np.ndarray]:
    """The outputs `names` of a ModelInferResponse, in that order, each checked to have the
    expected V2 datatype. Triton answers raw contents, but a V2 server may answer typed ones
    (tritonclient's `as_numpy` reads those as empty), so both forms are read. Raises BatchError
    for a malformed answer."""
    raw = response.raw_output_contents
    by_name = {tensor.name: (i, tensor) for i, tensor in enumerate(response.outputs)}
    outputs = []
    for name, expected in zip(names, datatypes, strict=True):
        found = by_name.get(name)
        if found is None:
            raise BatchError(f"the remote answer lacks output '{name}'")
        position, tensor = found
        if tensor.datatype != expected:
            raise BatchError(
                f"the remote answered output '{name}' as {tensor.datatype}, "
                f"its metadata says {expected}"
            )
        datatype = BY_NAME[expected]
        shape = tuple(tensor.shape)
        try:
            if raw:
                outputs.append(array_from_raw(name, datatype, shape, raw[position]))
            elif datatype.contents_field:
                values = getattr(tensor.contents, datatype.contents_field)
                outputs.append(array_from_values(name, datatype, shape, values))
            else:
                raise BatchError(f"the remote sent {expected} output '{name}' without raw contents")
        except (InvalidInput, IndexError) as error:
            raise BatchError(f"the remote answer is malformed: {error}") from error
    return outputs


def signature_from_metadata(metadata: Any) -> ModelSignature:
    """A ModelMetadataResponse as a signature; InvalidInput for a datatype V2 does not define."""
    for tensor in (*metadata.inputs, *metadata.outputs):
        if tensor.datatype not in BY_NAME:
            raise InvalidInput(
                f"the remote metadata has unknown datatype {tensor.datatype!r}", tensor.name
            )
    return ModelSignature(
        platform=metadata.platform,
        inputs=tuple(TensorMetadata(t.name, t.datatype, tuple(t.shape)) for t in metadata.inputs),
        outputs=tuple(TensorMetadata(t.name, t.datatype, tuple(t.shape)) for t in metadata.outputs),
    )
