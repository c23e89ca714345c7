"""The routes for operators: liveness, readiness, Prometheus metrics and the service's AsyncAPI
document (fetched over NATS)."""

import nats.errors
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent_orchestrator.bridge.nats_client import BridgeState, connection, nats_request
from agent_orchestrator.bridge.problems import Problem, ProblemError
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.subjects import ASYNCAPI, SERVICE_NAME

PING_SUBJECT = f"$SRV.PING.{SERVICE_NAME}"


def add_operations_routes(app: FastAPI, state: BridgeState) -> None:
    """Add ``/asyncapi``, ``/metrics``, ``/healthz`` and ``/readyz`` (all public)."""

    @app.get(
        "/asyncapi",
        tags=["docs"],
        summary="The service's AsyncAPI document (its NATS subjects, messages and events)",
        response_class=Response,
        responses={200: {"content": {"application/yaml": {}}}},
    )
    async def asyncapi() -> Response:
        msg = await nats_request(state, ASYNCAPI, b"")
        return Response(msg.data, media_type="application/yaml")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this bridge process."""
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="NATS is connected and the service answers its ping",
        responses={503: {"model": Problem, "description": "Not ready"}},
    )
    async def readyz() -> dict[str, str]:
        nc = connection(state)
        try:
            await nc.request(PING_SUBJECT, b"", timeout=state.settings.ready_timeout_s)
        except (nats.errors.Error, TimeoutError) as exc:
            raise ProblemError(
                503, ErrorCode.UNAVAILABLE, f"{SERVICE_NAME} does not answer its ping"
            ) from exc
        return {"status": "ready"}


__all__ = ["PING_SUBJECT", "add_operations_routes"]
