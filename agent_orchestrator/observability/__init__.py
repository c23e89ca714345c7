"""Tracing and structured logs shared by the service, the bridge and storage.

The lowest layer: it imports nothing of the project, so every other layer may use it.
Tracing is off unless a tracer provider is handed in (see :func:`tracer_provider_from_env`);
then nothing here creates a span and the request path stays as it was.
"""

from agent_orchestrator.observability.logs import JsonFormatter, configure_logging
from agent_orchestrator.observability.tracing import (
    child_span,
    current_trace_id,
    traced_context,
    tracer_provider_from_env,
)

__all__ = [
    "JsonFormatter",
    "child_span",
    "configure_logging",
    "current_trace_id",
    "traced_context",
    "tracer_provider_from_env",
]
