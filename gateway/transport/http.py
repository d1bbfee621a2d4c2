"""V2 REST over aiohttp: decode -> InferenceService -> encode, nothing else.

Errors are mapped to HTTP statuses in one table, in one middleware, so no handler can leak a
traceback or an aiohttp default page; every error body is `{"error": "..."}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway import access_log
from gateway.admin import CALLS, DEPLOYMENT, AdminCall, dispatch
from gateway.codecs import rest
from gateway.control import Control
from gateway.errors import ErrorKind, GatewayError, InvalidInput
from gateway.governance.access import PRINCIPAL, AccessControl
from gateway.governance.identity import single_authorization
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.metrics import exposition, make_registry
from gateway.monitoring.health import DEFAULT_WINDOW, parse_window
from gateway.serving import InferenceService

logger = logging.getLogger("modelgate")

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.INVALID_INPUT: 400,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}
DEFAULT_STATUS = 500

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_JSON = "application/json"
ROUTING_KEY_HEADER = "x-routing-key"  # sticky routing; gRPC clients use the parameter


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=rest.dumps(document), status=status, content_type=_JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def error_middleware(challenge: str) -> Any:
    """The one place where errors become HTTP answers; `challenge` is the WWW-Authenticate
    value a 401 carries."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except GatewayError as error:
            response = _error(STATUS_BY_KIND.get(error.kind, DEFAULT_STATUS), error.message)
            if error.kind is ErrorKind.UNAUTHENTICATED:
                response.headers["WWW-Authenticate"] = challenge
            return response
        except web.HTTPRequestEntityTooLarge as error:
            # aiohttp's text names the limit and the body's size
            return _error(413, error.text or "request body too large")
        except web.HTTPException as error:  # aiohttp's own: unknown route, wrong method
            if error.status < 400:
                raise
            return _error(error.status, error.reason)
        except Exception:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            return _error(500, "internal error")

    return middleware


def _guarded(access: AccessControl, operation: str, handler: Handler) -> Handler:
    """`handler`, once the caller may do `operation` on the model in the path (if any)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        authorization = single_authorization(request.headers.getall("Authorization", ()))
        match = request.match_info
        await access.check(authorization, operation, match.get("model") or match.get(DEPLOYMENT))
        return await handler(request)

    return guarded


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    access_log.record(
        "http", request.remote, f"{request.method} {request.path}", response.status, started
    )
    return response


def create_app(
    service: InferenceService, access: AccessControl, control: Control
) -> web.Application:
    """Health, server metadata and /metrics are open; every other route names the operation
    it is (rbac.OPERATIONS) and passes `access` first."""
    config = service.config
    middlewares: list[Any] = [error_middleware(access.authenticator.challenge)]
    if config.access_log:
        middlewares.insert(0, access_log_middleware)
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=middlewares)
    routes = _Routes(service, control)

    def add(method: str, path: str, operation: str, handler: Handler) -> None:
        app.router.add_route(method, path, _guarded(access, operation, handler))

    # aiohttp tries a path's routes in the order they were added, one pattern match each: the
    # request path's route first spares every inference that many matches
    model, version = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    for prefix in (model, version):
        add("POST", prefix + "/infer", "infer", routes.infer)
    app.router.add_get("/v2/health/live", routes.live)
    app.router.add_get("/v2/health/ready", routes.ready)
    app.router.add_get("/v2", routes.server_metadata)
    app.router.add_get("/metrics", routes.metrics)
    add("GET", "/v2/models/stats", "read", routes.statistics)
    add("POST", "/v2/repository/index", "read", routes.repository_index)
    add("GET", "/v2/predictions/{request_id}", "journal.read", routes.prediction)
    for prefix in (model, version):
        add("GET", prefix, "read", routes.model_metadata)
        add("GET", prefix + "/ready", "read", routes.model_ready)
        add("GET", prefix + "/config", "read", routes.model_config)
        add("GET", prefix + "/stats", "read", routes.statistics)
        add("GET", prefix + "/health", "read", routes.health)
        add("GET", prefix + "/drift", "read", routes.drift)
        add("GET", prefix + "/accuracy", "read", routes.accuracy)
    add("POST", model + "/actuals", "infer", routes.actuals)
    add("GET", "/admin/tokens", "token.list", routes.list_tokens)
    add("POST", "/admin/tokens", "token.create", routes.create_token)
    add("DELETE", "/admin/tokens/{token_id}", "token.revoke", routes.revoke_token)
    for call in CALLS:
        add(call.http_method, "/admin" + call.http_path, call.operation, routes.admin(call))
    return app


def _report_of(request: web.Request) -> tuple[str, str | None, float]:
    """The deployment, version and `?window=` of a monitoring report's route."""
    window_s = parse_window(request.query.get("window", DEFAULT_WINDOW))
    return request.match_info["model"], request.match_info.get("version"), window_s


class _Routes:
    def __init__(self, service: InferenceService, control: Control) -> None:
        self._service = service
        self._control = control
        self._metrics = make_registry(
            lambda: ((v.name, v.version, v.stats) for v in service.registry.loaded()),
            service.journal_stats,
            lambda: service.registry.deployments.values(),
            service.accuracy.stats,
            lambda: service.alerting,
        )

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        header_length = request.headers.get(rest.HEADER_LENGTH)
        body, json_length = await self._service.infer(
            request.match_info["model"],
            request.match_info.get("version"),
            lambda: rest.decode_infer_request(body, header_length),
            rest.encode_infer_response,
            request.headers.get(ROUTING_KEY_HEADER),
        )
        if json_length is None:
            return web.Response(body=body, content_type=_JSON)
        return web.Response(
            body=body,
            content_type="application/octet-stream",
            headers={rest.HEADER_LENGTH: str(json_length)},
        )

    async def live(self, request: web.Request) -> web.Response:
        return _json({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        # The spec answers a health check with 200 for true and a 4xx for false.
        ready = self._service.ready
        return _json({"ready": ready}, 200 if ready else 400)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json(self._service.server_metadata())

    async def model_metadata(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info.get("version")
        return _json(self._service.model_metadata(model, version))

    async def model_ready(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info.get("version")
        ready = self._service.model_ready(model, version)
        return _json({"name": model, "ready": ready}, 200 if ready else 400)

    async def model_config(self, request: web.Request) -> web.Response:
        model, version = request.match_info["model"], request.match_info.get("version")
        return _json(self._service.model_config(model, version))

    async def statistics(self, request: web.Request) -> web.Response:
        model, version = request.match_info.get("model", ""), request.match_info.get("version")
        return _json({"model_stats": self._service.statistics(model, version)})

    async def health(self, request: web.Request) -> web.Response:
        return _json(self._service.health(*_report_of(request)))

    async def drift(self, request: web.Request) -> web.Response:
        return _json(self._service.drift(*_report_of(request)))

    async def accuracy(self, request: web.Request) -> web.Response:
        return _json(self._service.accuracy_report(*_report_of(request)))

    async def actuals(self, request: web.Request) -> web.Response:
        entries = rest.decode_json(await request.read())
        return _json(self._service.add_actuals(request.match_info["model"], entries))

    async def repository_index(self, request: web.Request) -> web.Response:
        body = await request.read()
        ready_only = False
        if body.strip():
            options = rest.decode_object(body)
            ready_only = options.get("ready", False) is True
        return _json(self._service.repository_index(ready_only))

    async def prediction(self, request: web.Request) -> web.Response:
        return _json(await self._service.prediction(request.match_info["request_id"]))

    async def list_tokens(self, request: web.Request) -> web.Response:
        return _json({"tokens": [t.to_dict() for t in self._control.list_tokens()]})

    async def create_token(self, request: web.Request) -> web.Response:
        options = rest.decode_object(await request.read())
        name, role, scopes = options.get("name"), options.get("role"), options.get("scopes")
        if not isinstance(name, str) or not isinstance(role, str):
            raise InvalidInput("a token needs a 'name' and a 'role' (strings)")
        if scopes is not None and not isinstance(scopes, list):
            raise InvalidInput("'scopes' must be a list of deployment names")
        actor = PRINCIPAL.get().actor
        info, secret = await self._control.create_token(actor, name, role, scopes)
        return _json({**info.to_dict(), "token": secret}, 201)

    async def revoke_token(self, request: web.Request) -> web.Response:
        actor = PRINCIPAL.get().actor
        info = await self._control.revoke_token(actor, request.match_info["token_id"])
        return _json(info.to_dict())

    def admin(self, call: AdminCall) -> Handler:
        """The route of one admin call: the query's fields, the JSON body's (or, for an upload,
        the raw ONNX file), and the path's parameters."""

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            document: dict[str, Any] = dict(request.query)
            # aiohttp reports a body without a Content-Type as octet-stream: only a body is
            # an upload
            if body and request.content_type == "application/octet-stream":
                document["model"] = body
            elif body.strip():
                document.update(rest.decode_object(body))
            document.update(request.match_info)
            actor = PRINCIPAL.get().actor
            result, pending = await dispatch(self._control, call, actor, document)
            return _json(result, 202 if pending else 200)

        return handle

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=exposition(self._metrics), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )
