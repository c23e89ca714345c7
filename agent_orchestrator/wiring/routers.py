"""The service's routers: command areas with their middlewares, the jobs, discovery."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.nats import NatsRouter
from opentelemetry.trace import TracerProvider

from agent_orchestrator.contracts.subjects import ASYNCAPI
from agent_orchestrator.handlers.agent_cleanup import AgentCleanup
from agent_orchestrator.handlers.agents import AgentCommands
from agent_orchestrator.handlers.checkpoint_schedules import (
    CheckpointScheduler,
    ScheduleCommands,
)
from agent_orchestrator.handlers.checkpoints import CheckpointCommands, Checkpointer
from agent_orchestrator.handlers.commands import CommandServer
from agent_orchestrator.handlers.communications import CommunicationCommands, MessageLimits
from agent_orchestrator.handlers.dead_letters import DeadLetters
from agent_orchestrator.handlers.discovery import (
    ServiceStatsBook,
    ignore_body,
    register_discovery,
    stats_middleware,
)
from agent_orchestrator.handlers.errors import build_error_middleware
from agent_orchestrator.handlers.identity import Identities
from agent_orchestrator.handlers.jobs import include_jobs
from agent_orchestrator.handlers.lifecycle import LifecycleCommands, OnActive
from agent_orchestrator.handlers.metrics import ServiceMetrics
from agent_orchestrator.handlers.push_configs import PushConfigCommands
from agent_orchestrator.handlers.quotas import ProjectQuotas
from agent_orchestrator.handlers.recovery import RecoverCommands, Recovery
from agent_orchestrator.handlers.scope import ScopeGuard
from agent_orchestrator.handlers.state import StateCommands
from agent_orchestrator.handlers.tasks import TaskCommands
from agent_orchestrator.handlers.telemetry import tracing_middleware
from agent_orchestrator.handlers.templates import TemplateCommands
from agent_orchestrator.settings import Settings
from agent_orchestrator.storage.heartbeats import Heartbeats
from agent_orchestrator.storage.idempotency import IdempotencyStore
from agent_orchestrator.storage.schedules import CheckpointSchedules
from agent_orchestrator.storage.state import StateStore
from agent_orchestrator.wiring.parts import Queues, Repositories, task_defaults


def command_areas(
    settings: Settings,
    *,
    repositories: Repositories,
    states: StateStore,
    checkpointer: Checkpointer,
    schedules: CheckpointSchedules,
    queues: Queues,
    heartbeats: Heartbeats,
    on_active: OnActive,
    recovery: Recovery,
) -> list[object]:
    """One object per area whose marked methods handle its command subjects."""
    r = repositories
    return [
        AgentCommands(
            agents=r.agents,
            templates=r.templates,
            states=states,
            checkpointer=checkpointer,
            schedules=schedules,
            heartbeats=heartbeats,
        ),
        TemplateCommands(templates=r.templates),
        CheckpointCommands(
            agents=r.agents,
            checkpointer=checkpointer,
            idempotency=r.idempotency,
            max_state_bytes=settings.max_state_bytes,
        ),
        ScheduleCommands(agents=r.agents, schedules=schedules),
        StateCommands(
            agents=r.agents,
            states=states,
            idempotency=r.idempotency,
            max_state_bytes=settings.max_state_bytes,
        ),
        LifecycleCommands(agents=r.agents, schedules=schedules, on_active=on_active),
        CommunicationCommands(
            agents=r.agents,
            communications=r.communications,
            limits=MessageLimits(
                max_content_bytes=settings.max_message_bytes,
                max_sender_backlog=settings.max_sender_backlog,
            ),
            inbox=queues.inbox,
        ),
        RecoverCommands(recovery=recovery),
        TaskCommands(
            agents=r.agents,
            tasks=r.tasks,
            defaults=task_defaults(settings),
            queue=queues.tasks,
        ),
        PushConfigCommands(tasks=r.tasks, configs=r.push_configs),
    ]


def metrics(settings: Settings, *, stats: ServiceStatsBook) -> ServiceMetrics | None:
    """Prometheus metrics of the command subjects, when a metrics port is set."""
    if not settings.metrics_port:
        return None
    return ServiceMetrics(stats.subjects, version=stats.version, instance_id=stats.instance_id)


def command_middlewares(
    *,
    stats: ServiceStatsBook,
    metrics: ServiceMetrics | None,
    tracer_provider: TracerProvider | None,
) -> list[Any]:
    """Outermost first: tracing (so error replies and counting happen inside its span), then
    counting, then the error replies."""
    tracing = [] if tracer_provider is None else [tracing_middleware(tracer_provider)]
    return [
        *tracing,
        stats_middleware(stats, metrics.requests if metrics else None),
        build_error_middleware(),
    ]


def command_router(
    settings: Settings,
    *,
    areas: Sequence[object],
    idempotency: IdempotencyStore,
    scope_guard: ScopeGuard,
    quotas: ProjectQuotas | None = None,
    middlewares: Sequence[Any],
) -> NatsRouter:
    """A router serving every marked handler method of ``areas``."""
    router = NatsRouter(middlewares=middlewares)
    server = CommandServer(
        router,
        idempotency,
        max_request_bytes=settings.max_request_bytes,
        max_state_bytes=settings.max_state_bytes,
        max_workers=settings.handler_max_workers,
        scope_guard=scope_guard,
        quotas=quotas,
        identities=Identities(settings.nats_service_account),
    )
    server.include(*areas)
    return router


def job_router(
    settings: Settings,
    *,
    repositories: Repositories,
    schedules: CheckpointSchedules,
    checkpointer: Checkpointer,
    queues: Queues,
) -> NatsRouter:
    """The durable background jobs served one message at a time: scheduled checkpoints, the
    cleanup after ended agents and dead letters (initialization runs in batches, beside them:
    ``handlers.initialization``)."""
    r = repositories
    jobs = NatsRouter()
    include_jobs(
        jobs,
        CheckpointScheduler(agents=r.agents, schedules=schedules, checkpointer=checkpointer),
        AgentCleanup(communications=r.communications, tasks=r.tasks, queues=queues.both),
        DeadLetters(inbox=queues.inbox, communications=r.communications),
    )
    return jobs


def discovery_router(
    *, stats: ServiceStatsBook, asyncapi: Callable[[], Awaitable[str]]
) -> NatsRouter:
    """``$SRV.PING|INFO|STATS`` and the AsyncAPI document on ``agent-orchestrator.asyncapi``."""
    discovery = NatsRouter()
    register_discovery(discovery, stats)
    # The body is not read: whatever a caller sends (deeply nested JSON, bytes), it gets the
    # document.
    discovery.subscriber(ASYNCAPI, include_in_schema=False, decoder=ignore_body)(asyncapi)
    return discovery
