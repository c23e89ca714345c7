"""OpenTelemetry tracing: provider from ``OTEL_*`` variables, and spans only when it is on.

Who traces holds a tracer provider; the entry points (the bridge's HTTP middleware, the
service's consumer middleware) put their tracer into the OpenTelemetry context together with
their span (:func:`traced_context`). Code further in (PostgreSQL and KV calls) asks
:func:`child_span` for a span: it gets one when a traced request is current and a shared no-op
otherwise, so an untraced request pays one context lookup per call and no more.
"""

import importlib
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "agent_orchestrator"
_TRACER_KEY = otel_context.create_key("agent_orchestrator.tracer")
NO_SPAN: AbstractContextManager[None] = nullcontext()
"""What :func:`child_span` returns outside a traced request."""


def get_tracer(provider: TracerProvider) -> Tracer:
    """The project's tracer of ``provider``."""
    return provider.get_tracer(INSTRUMENTATION_NAME)


def traced_context(tracer: Tracer, span: Span, parent: Context | None = None) -> Context:
    """A context where ``span`` is current and :func:`child_span` uses ``tracer``."""
    ctx = trace.set_span_in_context(span, parent)
    return otel_context.set_value(_TRACER_KEY, tracer, ctx)


def is_traced() -> bool:
    """Whether a traced request is current (so that building a span's attributes pays)."""
    return otel_context.get_value(_TRACER_KEY) is not None


def child_span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.CLIENT,
) -> AbstractContextManager[Any]:
    """A span under the current traced request, or a no-op when none is being traced."""
    tracer = otel_context.get_value(_TRACER_KEY)
    if tracer is None:
        return NO_SPAN
    assert isinstance(tracer, Tracer)
    return tracer.start_as_current_span(name, kind=kind, attributes=attributes)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the current span, or None outside a trace."""
    ctx = trace.get_current_span().get_span_context()
    return trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def _exporter_names() -> list[str]:
    """Exporters asked for by ``OTEL_TRACES_EXPORTER``; an OTLP endpoint alone implies otlp."""
    given = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not given:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if any(os.environ.get(e) for e in endpoints) else []
    names = [n.strip().lower() for n in given.split(",")]
    return [n for n in names if n and n != "none"]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console, none)")
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    transport = "grpc" if protocol.strip() == "grpc" else "http"
    try:
        module = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{transport}.trace_exporter"
        )
    except ImportError as exc:
        raise ValueError(
            "OTLP export needs the exporter package: pip install 'agent-orchestrator[otlp]' "
            "(or opentelemetry-exporter-otlp-proto-grpc for OTEL_EXPORTER_OTLP_PROTOCOL=grpc)"
        ) from exc
    return module.OTLPSpanExporter()


def tracer_provider_from_env(service_name: str) -> TracerProvider | None:
    """An SDK tracer provider configured by the standard ``OTEL_*`` variables, or None.

    Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or
    an OTLP endpoint is set, and ``OTEL_SDK_DISABLED`` is not ``true``. The SDK itself reads
    the sampler (``OTEL_TRACES_SAMPLER``), the resource (``OTEL_SERVICE_NAME``,
    ``OTEL_RESOURCE_ATTRIBUTES``; ``service_name`` when neither names one), the OTLP endpoint,
    headers and timeouts, and the batch processor's limits. Propagation follows
    ``OTEL_PROPAGATORS`` (default: W3C tracecontext and baggage).
    """
    names = _exporter_names()
    if _env_true("OTEL_SDK_DISABLED") or not names:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = SdkTracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    log.info("tracing on: exporting spans to %s", ", ".join(names))
    return provider


def shutdown(provider: TracerProvider | None) -> None:
    """Flush and stop an SDK provider (no-op for None or an API-only provider)."""
    stop = getattr(provider, "shutdown", None)
    if callable(stop):
        stop()


@contextmanager
def activated(ctx: Context) -> Iterator[None]:
    """Make ``ctx`` current inside the block."""
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
