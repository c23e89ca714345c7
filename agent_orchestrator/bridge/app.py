"""The app factory: settings, the NATS connection's lifespan, routes, error handlers and
middlewares put together. Each part lives in a module of its own."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import nats.aio.client
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from opentelemetry.trace import TracerProvider

from agent_orchestrator import __version__
from agent_orchestrator.bridge.auth import API_KEY_HEADER, authentication
from agent_orchestrator.bridge.body_limit import BodyLimit
from agent_orchestrator.bridge.endpoints import add_routes
from agent_orchestrator.bridge.error_handlers import install_error_handlers
from agent_orchestrator.bridge.events import register_event_stream
from agent_orchestrator.bridge.nats_client import BridgeState, connection
from agent_orchestrator.bridge.openapi import error_responses, problem_openapi
from agent_orchestrator.bridge.operations import add_operations_routes
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.bridge.telemetry import ObserveRequests
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
_ERROR_STATUSES = (400, 404, 409, 413, 503, 504)


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
        try:
            yield
        finally:
            if owned and state.nc is not None:
                await state.nc.close()
                state.nc = None

    app = FastAPI(
        title="agent-orchestrator HTTP bridge",
        version=__version__,
        description=(
            "Each call is one NATS request on the subject named in its description; the reply "
            "is the service's, errors are RFC 9457 problem+json. `ETag`/`If-Match` carry an "
            "agent's `version` and a state's `revision`."
        ),
        lifespan=lifespan,
    )
    app.state.bridge = state
    authenticate = authentication(state.settings)
    guarded = [Depends(authenticate)] if authenticate is not None else []
    statuses = (401, 403, *_ERROR_STATUSES) if authenticate is not None else _ERROR_STATUSES
    add_routes(app, state, guarded, error_responses(statuses))
    register_event_stream(app, lambda: connection(state), guarded)
    add_operations_routes(app, state)
    install_error_handlers(app)
    app.openapi = problem_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(BodyLimit, max_bytes=state.settings.max_body_bytes)
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
