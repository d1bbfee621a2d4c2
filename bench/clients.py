"""Python clients for the V2 paths: async senders for the Python load generator, a blocking
one-request check that a path works before any load is put on it, and a blocking JSON call for
a server's other HTTP APIs (admin, monitoring reports).

The senders send pre-encoded bodies (from `payloads.RequestSet`) in rotation, so a request costs
the client one write and one read, not an encode.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
import grpc
import grpc.aio
from tritonclient.grpc import service_pb2

from .payloads import BINARY_HEADER, GRPC_INFER_METHOD, RequestSet, grpc_frame


@dataclass(frozen=True)
class Endpoint:
    """Where a V2 server listens: `http_base` like "http://127.0.0.1:8000" (no trailing slash),
    `grpc_target` like "127.0.0.1:8001"."""

    http_base: str
    grpc_target: str

    @classmethod
    def local(cls, host: str, http_port: int, grpc_port: int) -> Endpoint:
        return cls(f"http://{host}:{http_port}", f"{host}:{grpc_port}")

    def url(self, path: str) -> str:
        return self.http_base + path


class ApiError(RuntimeError):
    """A call to a server's HTTP API failed: unreachable, an error status, or not a JSON object."""


def call_json(
    endpoint: Endpoint,
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout_s: float,
) -> dict[str, Any]:
    """The JSON object `endpoint` answers to `method path` (with `body` as JSON, if any), blocking;
    raises ApiError."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        endpoint.url(path), data=data, headers=headers or {}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raise ApiError(f"{method} {path}: HTTP {err.code} {err.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise ApiError(f"{method} {path}: {err}") from None
    if not isinstance(answer, dict):
        raise ApiError(f"{method} {path}: not a JSON object: {str(answer)[:300]}")
    return answer


class HttpSender:
    """POSTs the bodies of an HTTP RequestSet in rotation over a keep-alive connection pool.

    Success means status 200 and a fully read body. Use as `async with`.
    """

    def __init__(self, requests: RequestSet, url: str, *, timeout_s: float) -> None:
        # per-run: set up once, read by every request
        self._url = url
        self._bodies = requests.bodies
        self._headers = requests.headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # per-run, mutated by requests (all on one event loop, so no lock)
        self._next = 0
        self.error_kinds: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # limit=0: the load generator, not the pool, bounds how many requests are in flight.
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def __call__(self) -> bool:
        if self._session is None:
            raise RuntimeError("HttpSender used outside `async with`")
        body = self._bodies[self._next % len(self._bodies)]
        self._next += 1
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as resp:
                await resp.read()
                if resp.status == 200:
                    return True
                self.error_kinds[f"HTTP {resp.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as err:
            self.error_kinds[type(err).__name__] += 1
        return False


class GrpcSender:
    """Calls ModelInfer with pre-serialized requests on one HTTP/2 channel (streams multiplex).

    The method is called with identity (de)serializers, so no protobuf work happens per request.
    Success means grpc status OK. Use as `async with`.
    """

    def __init__(self, requests: RequestSet, target: str, *, timeout_s: float) -> None:
        # per-run: set up once, read by every request
        self._target = target
        self._bodies = requests.bodies
        self._timeout_s = timeout_s
        # per-run, mutated by requests (all on one event loop, so no lock)
        self._next = 0
        self.error_kinds: Counter[str] = Counter()
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None

    async def __aenter__(self) -> Self:
        self._channel = grpc.aio.insecure_channel(self._target)
        self._call = self._channel.unary_unary(GRPC_INFER_METHOD)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def __call__(self) -> bool:
        if self._call is None:
            raise RuntimeError("GrpcSender used outside `async with`")
        body = self._bodies[self._next % len(self._bodies)]
        self._next += 1
        try:
            await self._call(body, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as err:
            self.error_kinds[f"gRPC {err.code().name}"] += 1
            return False
        return True


@dataclass(frozen=True)
class Check:
    """Outcome of one real request on a path. `response_bytes` is what one response puts on the
    wire as body (HTTP) or DATA (gRPC, frame header included): the h2load driver uses it to tell
    OK gRPC responses from error ones, which carry no message."""

    ok: bool
    detail: str
    response_bytes: int = 0


def check_path(
    requests: RequestSet, endpoint: Endpoint, infer_path: str, timeout_s: float
) -> Check:
    """Send the first body of `requests` once and check the reply is a V2 infer response.

    Never raises for a server-side problem: an unreachable server, an error status or a reply
    without outputs all come back as `Check(ok=False, detail=...)`.
    """
    if requests.transport == "grpc":
        return _check_grpc(requests.bodies[0], endpoint, timeout_s)
    return _check_http(requests, endpoint.url(infer_path), timeout_s)


def _check_http(requests: RequestSet, url: str, timeout_s: float) -> Check:
    request = urllib.request.Request(
        url, data=requests.bodies[0], headers=requests.headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            body = resp.read()
            header_length = resp.headers.get(BINARY_HEADER)
    except urllib.error.HTTPError as err:
        return Check(False, f"HTTP {err.code}: {err.read()[:200]!r}")
    except (urllib.error.URLError, OSError) as err:
        return Check(False, f"{url}: {err}")
    # A binary-extension reply starts with a JSON header of the announced length; a JSON reply
    # is all JSON. Either way the JSON part must list outputs.
    head = body[: int(header_length)] if header_length is not None else body
    if requests.path == "http-binary" and header_length is None:
        return Check(False, f"reply has no {BINARY_HEADER} header: binary outputs not supported")
    try:
        outputs = json.loads(head).get("outputs")
    except (ValueError, AttributeError):
        return Check(False, f"reply is not V2 JSON: {body[:200]!r}")
    if not outputs:
        return Check(False, f"reply lists no outputs: {body[:200]!r}")
    return Check(True, f"{len(outputs)} outputs", len(body))


def _check_grpc(body: bytes, endpoint: Endpoint, timeout_s: float) -> Check:
    with grpc.insecure_channel(endpoint.grpc_target) as channel:
        call = channel.unary_unary(GRPC_INFER_METHOD)
        try:
            reply = call(body, timeout=timeout_s)
        except grpc.RpcError as err:
            return Check(False, f"gRPC {err.code().name}: {err.details()}")  # type: ignore[attr-defined]
    response = service_pb2.ModelInferResponse.FromString(reply)
    if not response.outputs:
        return Check(False, "ModelInferResponse lists no outputs")
    return Check(True, f"{len(response.outputs)} outputs", len(grpc_frame(reply)))
