"""The NATS service API (``$SRV.PING|INFO|STATS``), so ``nats micro`` sees the service.

FastStream's subscribers do not answer the service API themselves. Every instance answers
for itself (no queue group) with every command subject as an endpoint, and counts requests,
error replies and processing time per subject in a middleware that wraps the error middleware.
The same measurement feeds the Prometheus metrics, when they are on.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from faststream import BaseMiddleware
from faststream.message import StreamMessage
from faststream.nats import NatsMessage, NatsResponse, NatsRouter
from nats.micro.service import (
    EndpointInfo,
    EndpointStats,
    ServiceInfo,
    ServicePing,
    ServiceStats,
)

from agent_orchestrator.contracts.subjects import (
    QUEUE_GROUP,
    SERVICE_ERROR_CODE_HEADER,
    SERVICE_ERROR_HEADER,
    SERVICE_NAME,
)
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.handlers.errors import ErrorResponse
from agent_orchestrator.handlers.metrics import RequestMetrics

log = logging.getLogger(__name__)

DESCRIPTION = "Manages AI agents: lifecycle, state, checkpoints, templates."


def endpoint_name(subject: str) -> str:
    """The endpoint's name for a subject: ``agent.create`` -> ``agent_create``.

    The micro spec allows only ``[a-zA-Z0-9_-]`` in a name, and the ``nats`` CLI (v0.5.0)
    rejects a whole INFO or STATS reply with a dot in one (``nats micro ls`` then finds
    nothing); the subject itself stays in ``subject``.
    """
    return subject.replace(".", "_")


@dataclass
class EndpointCounters:
    """Running totals of one command subject."""

    num_requests: int = 0
    num_errors: int = 0
    processing_time_ns: int = 0
    last_error: str = ""


@dataclass
class ServiceStatsBook:
    """Counters of every command subject of this instance."""

    subjects: list[str]
    version: str
    instance_id: str = field(default_factory=lambda: new_id().hex)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    counters: dict[str, EndpointCounters] = field(default_factory=dict)

    def record(self, subject: str, elapsed_ns: int, error: str | None) -> None:
        """Count one request."""
        counters = self.counters.setdefault(subject, EndpointCounters())
        counters.num_requests += 1
        counters.processing_time_ns += elapsed_ns
        if error is not None:
            counters.num_errors += 1
            counters.last_error = error

    def ping(self) -> dict[str, Any]:
        """Reply to ``$SRV.PING``."""
        return ServicePing(id=self.instance_id, name=SERVICE_NAME, version=self.version).to_dict()

    def info(self) -> dict[str, Any]:
        """Reply to ``$SRV.INFO``."""
        return ServiceInfo(
            name=SERVICE_NAME,
            id=self.instance_id,
            version=self.version,
            description=DESCRIPTION,
            endpoints=[
                EndpointInfo(name=endpoint_name(s), subject=s, queue_group=QUEUE_GROUP)
                for s in self.subjects
            ],
        ).to_dict()

    def stats(self) -> dict[str, Any]:
        """Reply to ``$SRV.STATS``."""
        endpoints = []
        for subject in self.subjects:
            c = self.counters.get(subject, EndpointCounters())
            endpoints.append(
                EndpointStats(
                    name=endpoint_name(subject),
                    subject=subject,
                    queue_group=QUEUE_GROUP,
                    num_requests=c.num_requests,
                    num_errors=c.num_errors,
                    processing_time=c.processing_time_ns,
                    average_processing_time=c.processing_time_ns // max(c.num_requests, 1),
                    last_error=c.last_error,
                )
            )
        return ServiceStats(
            name=SERVICE_NAME,
            id=self.instance_id,
            version=self.version,
            started=self.started,
            endpoints=endpoints,
        ).to_dict()


def stats_middleware(
    book: ServiceStatsBook, metrics: RequestMetrics | None = None
) -> type[BaseMiddleware]:
    """A middleware (to put outside the error middleware) that feeds ``book`` and
    ``metrics``."""

    class CountRequests(BaseMiddleware):
        async def consume_scope(
            self, call_next: Callable[[Any], Awaitable[Any]], msg: StreamMessage[Any]
        ) -> Any:
            started = time.perf_counter_ns()
            result = await call_next(msg)
            error = None
            if isinstance(result, NatsResponse) and result.headers:
                code = result.headers.get(SERVICE_ERROR_CODE_HEADER)
                if code is not None:
                    error = f"{code}:{result.headers.get(SERVICE_ERROR_HEADER, '')}"
            elapsed_ns = time.perf_counter_ns() - started
            subject = msg.raw_message.subject
            book.record(subject, elapsed_ns, error)
            code = result.code.value if isinstance(result, ErrorResponse) else None
            if metrics is not None:
                metrics.observe(subject, elapsed_ns, code)
            if log.isEnabledFor(logging.DEBUG):  # inside the request's span: JSON lines name it
                log.debug("%s answered %s in %.2f ms", subject, code or "ok", elapsed_ns / 1e6)
            return result

    return CountRequests


async def ignore_body(_: NatsMessage) -> None:
    """A decoder for subjects that read no body: any bytes get the answer (no JSON parsing,
    so no RecursionError on a deeply nested body)."""
    return None


def register_discovery(router: NatsRouter, book: ServiceStatsBook) -> None:
    """Answer PING, INFO and STATS for all services, this name, and this instance's id."""
    for verb, answer in (("PING", book.ping), ("INFO", book.info), ("STATS", book.stats)):
        for subject in (
            f"$SRV.{verb}",
            f"$SRV.{verb}.{SERVICE_NAME}",
            f"$SRV.{verb}.{SERVICE_NAME}.{book.instance_id}",
        ):

            def make(answer: Callable[[], dict[str, Any]]) -> Callable[[], Awaitable[Any]]:
                async def respond() -> Any:
                    return answer()

                return respond

            router.subscriber(subject, include_in_schema=False, decoder=ignore_body)(make(answer))
