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
import orjson
from google.protobuf import json_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from gateway import access_log
from gateway._proto import POOL, adopt
from gateway._proto import admin_pb2 as admin_pb
from gateway._proto import admin_pb2_grpc as admin_pb_grpc
from gateway._proto import inference_pb2 as pb
from gateway._proto import inference_pb2_grpc as pb_grpc
from gateway.admin import CALLS_BY_RPC, DEPLOYMENT, AdminCall, dispatch
from gateway.codecs import grpc as codec
from gateway.control import Control
from gateway.errors import ErrorKind, GatewayError
from gateway.governance.access import PRINCIPAL, AccessControl
from gateway.governance.identity import TokenInfo, metadata_authorization
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
Operations = dict[str, tuple[str, str | None] | None]
INFERENCE_OPERATIONS: Operations = {
    "ServerLive": None,
    "ServerReady": None,
    "ServerMetadata": None,
    "ModelReady": ("read", "name"),
    "ModelMetadata": ("read", "name"),
    "ModelInfer": ("infer", "model_name"),
    "ModelStatistics": ("read", "name"),
    "RepositoryIndex": ("read", None),
}


ADMIN_OPERATIONS: Operations = {
    "GetPrediction": ("journal.read", None),
    "CreateToken": ("token.create", None),
    "ListTokens": ("token.list", None),
    "RevokeToken": ("token.revoke", None),
    **{
        call.rpc: (call.operation, DEPLOYMENT if call.concerns_deployment else None)
        for call in CALLS_BY_RPC.values()
    },
}


class AdminServicer:
    """`modelgate.admin.v1.Admin`: the operator API, over the same control path as HTTP."""

    def __init__(self, service: InferenceService, control: Control) -> None:
        self._service = service
        self._control = control

    async def GetPrediction(
        self, request: admin_pb.GetPredictionRequest, context: Any
    ) -> admin_pb.GetPredictionResponse:
        record = await self._service.prediction(request.request_id)
        return admin_pb.GetPredictionResponse(record_json=orjson.dumps(record).decode())

    async def CreateToken(
        self, request: admin_pb.CreateTokenRequest, context: Any
    ) -> admin_pb.CreateTokenResponse:
        info, secret = await self._control.create_token(
            PRINCIPAL.get().actor, request.name, request.role, list(request.scopes) or None
        )
        return admin_pb.CreateTokenResponse(token=_token(info), secret=secret)

    async def ListTokens(
        self, request: admin_pb.ListTokensRequest, context: Any
    ) -> admin_pb.ListTokensResponse:
        return admin_pb.ListTokensResponse(
            tokens=[_token(info) for info in self._control.list_tokens()]
        )

    async def RevokeToken(self, request: admin_pb.RevokeTokenRequest, context: Any) -> Any:
        return _token(await self._control.revoke_token(PRINCIPAL.get().actor, request.id))

    def __getattr__(self, name: str) -> Any:
        """The deployment calls (gateway/admin.py), each the request as a dict in, the
        response message out."""
        call = CALLS_BY_RPC.get(name)
        if call is None:
            raise AttributeError(name)
        return self._deployment_call(call)

    def _deployment_call(self, call: AdminCall) -> Any:
        response_type = getattr(admin_pb, call.response)

        async def method(request: Any, context: Any) -> Any:
            document = json_format.MessageToDict(request, preserving_proto_field_name=True)
            actor = PRINCIPAL.get().actor
            result, _ = await dispatch(self._control, call, actor, document)
            return codec.from_dict(response_type, result)

        return method


def _token(info: TokenInfo) -> admin_pb.Token:
    fields = info.to_dict()
    return codec.from_dict(admin_pb.Token, {**fields, "revoked_at": fields["revoked_at"] or ""})


class _MappedErrors:
    """Stands in for a servicer at registration: each method it hands out checks access (its
    `operations` table), maps GatewayError to its status and anything else to INTERNAL
    (logged), before gRPC sees it; with the access log on, it also logs each call."""

    def __init__(
        self,
        servicer: object,
        operations: Operations,
        access: AccessControl,
        access_logged: bool,
    ) -> None:
        self._servicer = servicer
        self._operations = operations
        self._access = access
        self._access_logged = access_logged

    def __getattr__(self, name: str) -> Method:
        method: Method = getattr(self._servicer, name)
        guard = self._operations[name]
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


class _GenericHandlersOnly:
    """What the generated `add_*Servicer_to_server` functions get instead of the server: each
    service's generic handler goes to the server, its table of registered methods does not.
    grpc.aio (since 1.75.1) accepts calls for registered methods through one pending request
    per method and an asyncio.wait over all of them on every call (grpc/grpc#43092, #43461):
    with this server's ~45 methods, about 4 % of its gRPC throughput. A generic handler finds
    the method by name in a dict."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        """Dropped (class docstring)."""


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


def create_server(
    service: InferenceService, access: AccessControl, control: Control, address: str
) -> GrpcEndpoint:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", service.config.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            # without this a second server could bind the same port without an error
            ("grpc.so_reuseport", 0),
        ]
    )
    logged = service.config.access_log
    services = _GenericHandlersOnly(server)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        _MappedErrors(InferenceServicer(service), INFERENCE_OPERATIONS, access, logged), services
    )
    admin_pb_grpc.add_AdminServicer_to_server(
        _MappedErrors(AdminServicer(service, control), ADMIN_OPERATIONS, access, logged), services
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    # Reflection answers from one pool: ours, into which the health and reflection files are
    # copied so that every service this server offers can be described.
    adopt(health_pb2.DESCRIPTOR)
    adopt(reflection_pb2.DESCRIPTOR)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    admin_name = admin_pb.DESCRIPTOR.services_by_name["Admin"].full_name
    names = (SERVICE_NAME, admin_name, health_name, reflection.SERVICE_NAME)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(names, pool=POOL), services
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return GrpcEndpoint(server, health_servicer, port)
