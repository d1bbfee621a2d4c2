"""V2 gRPC over grpc.aio: `inference.GRPCInferenceService`, grpc.health.v1 and server reflection.

Every servicer method is wrapped once, at registration, by `_MappedErrors`: the one place where
error kinds become gRPC status codes, so no method can leak UNKNOWN.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from gateway import access_log
from gateway._proto import POOL, adopt
from gateway._proto import inference_pb2 as pb
from gateway._proto import inference_pb2_grpc as pb_grpc
from gateway.codecs import grpc as codec
from gateway.errors import ErrorKind, GatewayError
from gateway.governance.access import AccessControl
from gateway.governance.identity import metadata_authorization
from gateway.serving import InferenceService

logger = logging.getLogger("modelgate")

STATUS_BY_KIND: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.INVALID_INPUT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}
DEFAULT_STATUS = grpc.StatusCode.INTERNAL

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name

Method = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class InferenceServicer:
    def __init__(self, service: InferenceService) -> None:
        self._service = service

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Any
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Any
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.ready)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(
            ready=self._service.model_ready(request.name, request.version or None)
        )

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return codec.from_dict(pb.ServerMetadataResponse, self._service.server_metadata())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        metadata = self._service.model_metadata(request.name, request.version or None)
        return codec.from_dict(pb.ModelMetadataResponse, metadata)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Any
    ) -> pb.ModelInferResponse:
        return await self._service.infer(
            request.model_name,
            request.model_version or None,
            lambda: codec.decode_infer_request(request),
            codec.encode_infer_response,
        )

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        stats = self._service.statistics(request.name, request.version or None)
        return codec.from_dict(pb.ModelStatisticsResponse, {"model_stats": stats})

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        index = self._service.repository_index(request.ready)
        return codec.from_dict(pb.RepositoryIndexResponse, {"models": index})


# What each method is (rbac.OPERATIONS) and which request field names the model; None: open.
OPERATION_BY_METHOD: dict[str, tuple[str, str | None] | None] = {
    "ServerLive": None,
    "ServerReady": None,
    "ServerMetadata": None,
    "ModelReady": ("read", "name"),
    "ModelMetadata": ("read", "name"),
    "ModelInfer": ("infer", "model_name"),
    "ModelStatistics": ("read", "name"),
    "RepositoryIndex": ("read", None),
}


class _MappedErrors:
    """Stands in for a servicer at registration: each method it hands out checks access
    (`OPERATION_BY_METHOD`), maps GatewayError to its status and anything else to INTERNAL
    (logged), before gRPC sees it; with the access log on, it also logs each call."""

    def __init__(self, servicer: object, access: AccessControl, access_logged: bool) -> None:
        self._servicer = servicer
        self._access = access
        self._access_logged = access_logged

    def __getattr__(self, name: str) -> Method:
        method: Method = getattr(self._servicer, name)
        guard = OPERATION_BY_METHOD[name]
        access = self._access

        async def mapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                if guard is not None:
                    operation, field = guard
                    authorization = metadata_authorization(context.invocation_metadata())
                    model = getattr(request, field) if field else None
                    await access.check(authorization, operation, model)
                return await method(request, context)
            except GatewayError as error:
                await context.abort(STATUS_BY_KIND.get(error.kind, DEFAULT_STATUS), error.message)
            except Exception:
                logger.exception("unhandled error in %s", name)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        if not self._access_logged:
            return mapped

        async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                return await mapped(request, context)
            finally:
                code = context.code() or grpc.StatusCode.OK
                access_log.record("grpc", context.peer(), name, code.name, started)

        return logged


@dataclass(frozen=True)
class GrpcEndpoint:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    port: int  # the bound port, chosen by the system when 0 was asked for

    async def publish_readiness(self, ready: bool) -> None:
        """What grpc.health.v1 reports for the server ("") and the inference service."""
        serving = health_pb2.HealthCheckResponse.SERVING
        status = serving if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)


def create_server(service: InferenceService, access: AccessControl, address: str) -> GrpcEndpoint:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", service.config.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            # without this a second server could bind the same port without an error
            ("grpc.so_reuseport", 0),
        ]
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        _MappedErrors(InferenceServicer(service), access, service.config.access_log), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Reflection answers from one pool: ours, into which the health and reflection files are
    # copied so that every service this server offers can be described.
    adopt(health_pb2.DESCRIPTOR)
    adopt(reflection_pb2.DESCRIPTOR)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_name, reflection.SERVICE_NAME), server, pool=POOL
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return GrpcEndpoint(server, health_servicer, port)
