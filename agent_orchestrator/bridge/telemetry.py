"""Metrics and traces of the bridge: an ASGI middleware around every HTTP request, and the
counters of its NATS requests.

Prometheus series (at ``GET /metrics``): requests by route template, method and status, their
latency, requests in progress, NATS request latency by subject, and NATS requests that got no
reply by subject and kind. With a tracer provider, each HTTP request is a server span (continuing
a ``traceparent`` the caller sent) and each NATS request a client span under it whose context
travels to the service in the W3C ``traceparent`` header.
"""

import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_orchestrator.observability.tracing import get_tracer, traced_context

UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class BridgeMetrics:
    """The bridge's Prometheus registry and series."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ao_bridge_requests",
            "HTTP requests, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ao_bridge_request_duration_seconds",
            "HTTP request latency (to the end of the response), by route template and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "ao_bridge_requests_in_progress",
            "HTTP requests being answered (open event streams included).",
            registry=self.registry,
        )
        self.nats_latency = Histogram(
            "ao_bridge_nats_request_duration_seconds",
            "NATS request/reply round trips to the service, by subject.",
            ["subject"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.nats_errors = Counter(
            "ao_bridge_nats_request_errors",
            "NATS requests without a reply, by subject and kind (no_responders, timeout, "
            "connection_closed, max_payload, not_connected).",
            ["subject", "kind"],
            registry=self.registry,
        )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


class ObserveRequests:
    """Outermost ASGI middleware: counts and times every HTTP request; spans it when traced."""

    def __init__(
        self, app: ASGIApp, metrics: BridgeMetrics, tracer_provider: TracerProvider | None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer: Tracer | None = get_tracer(tracer_provider) if tracer_provider else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress.inc()
        span: Any = None
        token = None
        if self.tracer is not None:
            parent = propagate.extract(_headers(scope))
            span = self.tracer.start_span(
                method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope["path"]},
            )
            token = otel_context.attach(traced_context(self.tracer, span, parent))
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED_ROUTE
            self.metrics.in_progress.dec()
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - started)
            if span is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                if token is not None:
                    otel_context.detach(token)
                span.end()
