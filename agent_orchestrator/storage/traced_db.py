"""A connection class whose queries are child spans of the traced request that runs them.

Given to the pool only when tracing is on (``Database(traced=True)``), so untraced services
run plain asyncpg connections. Spans follow the OpenTelemetry database conventions: named by
the statement's first keyword (``SELECT``, ``INSERT``, ``BEGIN`` …), with the statement text
(parameters are not recorded).
"""

from typing import Any

import asyncpg
from opentelemetry.util.types import AttributeValue

from agent_orchestrator.observability.tracing import child_span

MAX_STATEMENT_CHARS = 2000


def _attributes(query: str) -> tuple[str, dict[str, AttributeValue]]:
    words = query.split(None, 1)
    operation = words[0].upper() if words else "QUERY"
    return operation, {
        "db.system.name": "postgresql",
        "db.operation.name": operation,
        "db.query.text": query[:MAX_STATEMENT_CHARS],
    }


class TracedConnection(asyncpg.Connection):
    """An asyncpg connection that spans ``execute``, ``executemany`` and the ``fetch*`` calls."""

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> str:
        """``Connection.execute`` in a span."""
        name, attributes = _attributes(query)
        with child_span(name, attributes):
            return await super().execute(query, *args, **kwargs)

    async def executemany(self, command: str, args: Any, **kwargs: Any) -> None:
        """``Connection.executemany`` in a span."""
        name, attributes = _attributes(command)
        with child_span(name, attributes):
            await super().executemany(command, args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        """``Connection.fetch`` in a span."""
        name, attributes = _attributes(query)
        with child_span(name, attributes):
            return await super().fetch(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        """``Connection.fetchval`` in a span."""
        name, attributes = _attributes(query)
        with child_span(name, attributes):
            return await super().fetchval(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        """``Connection.fetchrow`` in a span."""
        name, attributes = _attributes(query)
        with child_span(name, attributes):
            return await super().fetchrow(query, *args, **kwargs)
