"""A consumer span per command, continuing the caller's trace from the request's headers.

A caller (the bridge, or anyone on plain NATS) that sends a W3C ``traceparent`` (and
``tracestate``, ``baggage``) header gets the span in its own trace; without one the span starts
a trace. While it is current, PostgreSQL and KV calls of the handler are its child spans and an
error reply carries its trace id. Installed only when tracing is on.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from agent_orchestrator.contracts.errors import STATUS_BY_CODE
from agent_orchestrator.handlers.errors import ErrorResponse
from agent_orchestrator.observability.tracing import get_tracer, traced_context


def tracing_middleware(provider: TracerProvider) -> type[BaseMiddleware]:
    """A middleware (outermost, so that the error replies see its span) tracing each command."""
    tracer = get_tracer(provider)

    class TraceCommands(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            subject = msg.raw_message.subject
            parent = propagate.extract(msg.headers or {})
            span = tracer.start_span(
                f"{subject} process",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": subject,
                    "messaging.message.body.size": len(msg.raw_message.data or b""),
                },
            )
            token = otel_context.attach(traced_context(tracer, span, parent))
            try:
                result = await call_next(msg)
                if isinstance(result, ErrorResponse):
                    span.set_attribute("error.type", result.code.value)
                    if STATUS_BY_CODE[result.code] >= 500:
                        span.set_status(Status(StatusCode.ERROR, result.code.value))
                return result
            except BaseException as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                otel_context.detach(token)
                span.end()

    return TraceCommands
