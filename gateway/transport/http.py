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
from gateway.codecs import rest
from gateway.errors import ErrorKind, GatewayError
from gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.metrics import exposition, make_registry
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


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=rest.dumps(document), status=status, content_type=_JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as error:
        return _error(STATUS_BY_KIND.get(error.kind, DEFAULT_STATUS), error.message)
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


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    access_log.record(
        "http", request.remote, f"{request.method} {request.path}", response.status, started
    )
    return response


def create_app(service: InferenceService) -> web.Application:
    config = service.config
    middlewares: list[Any] = [error_middleware]
    if config.access_log:
        middlewares.insert(0, access_log_middleware)
    app = web.Application(client_max_size=config.max_request_bytes, middlewares=middlewares)
    routes = _Routes(service)
    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    app.router.add_get("/v2/health/live", routes.live)
    app.router.add_get("/v2/health/ready", routes.ready)
    app.router.add_get("/v2", routes.server_metadata)
    app.router.add_get("/v2/models/stats", routes.statistics)
    app.router.add_post("/v2/repository/index", routes.repository_index)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/v2/predictions/{request_id}", routes.prediction)
    for prefix in (model, versioned):
        app.router.add_get(prefix, routes.model_metadata)
        app.router.add_get(prefix + "/ready", routes.model_ready)
        app.router.add_get(prefix + "/config", routes.model_config)
        app.router.add_get(prefix + "/stats", routes.statistics)
        app.router.add_post(prefix + "/infer", routes.infer)
    return app


class _Routes:
    def __init__(self, service: InferenceService) -> None:
        self._service = service
        self._metrics = make_registry(
            lambda: ((v.name, v.version, v.stats) for v in service.loaded_versions()),
            service.journal_stats,
        )

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        header_length = request.headers.get(rest.HEADER_LENGTH)
        body, json_length = await self._service.infer(
            request.match_info["model"],
            request.match_info.get("version"),
            lambda: rest.decode_infer_request(body, header_length),
            rest.encode_infer_response,
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

    async def repository_index(self, request: web.Request) -> web.Response:
        body = await request.read()
        ready_only = False
        if body.strip():
            options = rest.decode_object(body)
            ready_only = options.get("ready", False) is True
        return _json(self._service.repository_index(ready_only))

    async def prediction(self, request: web.Request) -> web.Response:
        return _json(await self._service.prediction(request.match_info["request_id"]))

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=exposition(self._metrics), headers={"Content-Type": METRICS_CONTENT_TYPE}
        )
