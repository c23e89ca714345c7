"""The bridge's side of NATS: one shared connection and one request per REST call.

A request is traced as a client span (its context travels in the request's headers) and
timed by subject; a request without a reply becomes a problem: no responders or a connection
being re-established → 503, no answer in time → 504, a payload over the server's
``max_payload`` → 413.
"""

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import nats.aio.client
import nats.errors
from nats.aio.msg import Msg
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.settings import BridgeSettings
from agent_orchestrator.bridge.telemetry import BridgeMetrics
from agent_orchestrator.contracts.errors import ErrorCode


@dataclass
class BridgeState:
    """What every request shares: the settings, one NATS connection, metrics and the tracer
    (None: not traced)."""

    settings: BridgeSettings
    nc: nats.aio.client.Client | None = None
    metrics: BridgeMetrics = field(default_factory=BridgeMetrics)
    tracer: Tracer | None = None


def connection(state: BridgeState) -> nats.aio.client.Client:
    """The connected client, or a 503 problem while there is none."""
    if state.nc is None or not state.nc.is_connected:
        raise ProblemError(503, ErrorCode.UNAVAILABLE, "the bridge is not connected to NATS")
    return state.nc


def _client_span(state: BridgeState, subject: str) -> AbstractContextManager[Any]:
    if state.tracer is None:
        return nullcontext()
    return state.tracer.start_as_current_span(
        f"{subject} request",
        kind=SpanKind.CLIENT,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.destination.name": subject,
        },
    )


async def nats_request(
    state: BridgeState, subject: str, payload: bytes, headers: dict[str, str] | None = None
) -> Msg:
    """One NATS request (a client span when traced, its context in the request's headers);
    no responders → 503, timeout → 504."""
    with _client_span(state, subject) as span:
        try:
            if span is not None:
                headers = dict(headers or {})
                propagate.inject(headers)
            return await _request(state, subject, payload, headers)
        except ProblemError as exc:
            if span is not None:
                span.set_status(Status(StatusCode.ERROR, exc.detail))
            raise


async def _request(
    state: BridgeState, subject: str, payload: bytes, headers: dict[str, str] | None
) -> Msg:
    try:
        nc = connection(state)
    except ProblemError:
        state.metrics.nats_errors.labels(subject, "not_connected").inc()
        raise
    started = time.perf_counter()
    kind = None
    try:
        return await nc.request(
            subject, payload, timeout=state.settings.request_timeout_s, headers=headers or None
        )
    except nats.errors.NoRespondersError as exc:
        kind = "no_responders"
        raise ProblemError(
            503, ErrorCode.UNAVAILABLE, f"no service answers on {subject}; retry later"
        ) from exc
    except (nats.errors.TimeoutError, TimeoutError) as exc:
        kind = "timeout"
        raise ProblemError(
            504, ErrorCode.UNAVAILABLE, f"the service did not answer on {subject} in time"
        ) from exc
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError) as exc:
        kind = "connection_closed"
        raise ProblemError(503, ErrorCode.UNAVAILABLE, "the NATS connection is closed") from exc
    except (
        nats.errors.ConnectionReconnectingError,
        nats.errors.OutboundBufferLimitError,
        nats.errors.StaleConnectionError,
    ) as exc:
        # The connection broke (e.g. missed pings on a busy host) and is being made again.
        kind = "reconnecting"
        raise ProblemError(
            503, ErrorCode.UNAVAILABLE, "the NATS connection is being re-established; retry"
        ) from exc
    except nats.errors.MaxPayloadError as exc:
        kind = "max_payload"
        raise ProblemError(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the request is {len(payload)} bytes, more than the NATS server carries",
        ) from exc
    finally:
        if kind is None:
            state.metrics.nats_latency.labels(subject).observe(time.perf_counter() - started)
        else:
            state.metrics.nats_errors.labels(subject, kind).inc()


__all__ = ["BridgeState", "connection", "nats_request"]
