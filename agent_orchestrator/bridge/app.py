"""The app factory: settings, the NATS connection's lifespan, routes, error handlers and
middlewares put together. Each part lives in a module of its own."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import nats
import nats.aio.client
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.trace import TracerProvider

from agent_orchestrator import __version__
from agent_orchestrator.bridge.a2a import PushSender, add_a2a_routes
from agent_orchestrator.bridge.auth import API_KEY_HEADER, authentication
from agent_orchestrator.bridge.body_limit import BodyLimit, RouteLimit
from agent_orchestrator.bridge.dashboard import add_dashboard_routes
from agent_orchestrator.bridge.docs import add_docs_routes
from agent_orchestrator.bridge.endpoints import add_routes
from agent_orchestrator.bridge.error_handlers import install_error_handlers
from agent_orchestrator.bridge.events import register_event_stream
from agent_orchestrator.bridge.limits import BridgeLimits, limit_dependency
from agent_orchestrator.bridge.nats_client import BridgeState, connection
from agent_orchestrator.bridge.openapi import problem_openapi
from agent_orchestrator.bridge.operations import add_operations_routes
from agent_orchestrator.bridge.routes import ROUTES
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.bridge.telemetry import ObserveRequests
from agent_orchestrator.contracts.limits import MAX_STATE_SETTING, STATE_ENVELOPE_BYTES, Limit
from agent_orchestrator.observability.tracing import get_tracer

CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "Idempotency-Key",
    "Actor",
    "Last-Event-ID",
    API_KEY_HEADER,
)
_ERROR_STATUSES = (400, 404, 409, 413, 429, 503, 504)


def body_limits(settings: BridgeSettings) -> dict[str, Any]:
    """The body limits: the request limit, and a state's on the routes that carry one."""
    request = Limit(settings.max_body_bytes, "AO_BRIDGE_MAX_BODY_BYTES")
    state = (
        Limit(settings.max_state_body_bytes, MAX_STATE_SETTING, STATE_ENVELOPE_BYTES)
        if settings.max_state_body_bytes > settings.max_body_bytes
        else request
    )
    return {
        "limit": request,
        "routes": [RouteLimit(r.method, r.path, state) for r in ROUTES if r.carries_state],
    }


def create_app(
    settings: BridgeSettings | None = None,
    nc: nats.aio.client.Client | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The bridge app. Give ``nc`` to share a connected client (it is then not closed here);
    otherwise the lifespan connects to ``settings.nats_url`` and closes on shutdown. With
    ``tracer_provider`` every request is traced into the service."""
    state = BridgeState(
        settings or BridgeSettings(),
        nc,
        tracer=get_tracer(tracer_provider) if tracer_provider is not None else None,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        owned = state.nc is None
        if owned:
            state.nc = await nats.connect(
                servers=state.settings.nats_url.split(","),
                name="agent-orchestrator-bridge",
                max_reconnect_attempts=-1,
            )
        sender = PushSender(state) if state.settings.a2a_push else None
        if sender is not None:
            sender.start()
        try:
            yield
        finally:
            if sender is not None:
                await sender.stop()
            if owned and state.nc is not None:
                await state.nc.close()
                state.nc = None

    app = FastAPI(
        title="agent-orchestrator HTTP bridge",
        version=__version__,
        description=(
            "Each call is one NATS request on the subject named in its description; the reply "
            "is the service's, errors are RFC 9457 problem+json (`errors`: every failing "
            "`{path, message}`; `details`: the error's structured details). `ETag`/`If-Match` "
            "carry an agent's `version` and a state's `revision`; a stale `If-Match` is 412. "
            "A body is JSON sent as `content-type: application/json` (else 415)."
        ),
        lifespan=lifespan,
        # Served by add_docs_routes, from the package rather than a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.bridge = state
    authenticate = authentication(state.settings)
    limits = app.state.limits = BridgeLimits(state.settings)
    # Counted after authentication, which names the caller.
    guarded = [Depends(authenticate)] if authenticate is not None else []
    guarded.append(Depends(limit_dependency(limits)))
    statuses = (401, 403, *_ERROR_STATUSES) if authenticate is not None else _ERROR_STATUSES
    add_routes(app, state, guarded, statuses)
    register_event_stream(
        app, lambda: connection(state), guarded, limits, authenticated=authenticate is not None
    )
    add_a2a_routes(app, state, guarded, statuses)
    add_operations_routes(app, state)
    add_docs_routes(app)
    add_dashboard_routes(app)
    install_error_handlers(app)
    app.openapi = problem_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, **body_limits(state.settings))
    if state.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=state.settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=[*CORS_REQUEST_HEADERS],
            expose_headers=["ETag", "Location", "Link"],
        )
    # Outermost: it sees every request, refused ones included.
    app.add_middleware(ObserveRequests, metrics=state.metrics, tracer_provider=tracer_provider)
    return app


__all__ = ["create_app"]
