"""The composition root: builds one service instance from Settings and runs it.

Nothing connects at import or construction; ``start()`` connects, migrates, declares the
JetStream topology, starts the handlers and the outbox relay; ``stop()`` undoes it in reverse.
"""

import asyncio
import logging
from collections.abc import Sequence
from functools import partial

import asyncpg
import nats.aio.client
from faststream.nats import NatsBroker, NatsRouter
from nats.errors import Error as NatsError
from opentelemetry.trace import TracerProvider

from agent_orchestrator import __version__
from agent_orchestrator.asyncapi import asyncapi_yaml
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.subjects import ASYNCAPI, SERVICE_NAME
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.domain.tasks import TaskDefaults
from agent_orchestrator.handlers.agent_consumers import (
    AgentConsumers,
    register_agent_consumer_keeper,
)
from agent_orchestrator.handlers.agents import AgentCommands
from agent_orchestrator.handlers.checkpoint_schedules import (
    ScheduleCommands,
    register_checkpoint_scheduler,
)
from agent_orchestrator.handlers.checkpoints import CheckpointCommands, Checkpointer
from agent_orchestrator.handlers.commands import CommandServer, CommandSpec
from agent_orchestrator.handlers.communications import (
    CommunicationCommands,
    MessageLimits,
    expire_messages,
)
from agent_orchestrator.handlers.dead_letters import register_dead_letters
from agent_orchestrator.handlers.discovery import (
    ServiceStatsBook,
    register_discovery,
    stats_middleware,
)
from agent_orchestrator.handlers.errors import build_error_middleware
from agent_orchestrator.handlers.initialization import (
    InitializationStep,
    register_initializer,
    standard_steps,
)
from agent_orchestrator.handlers.lifecycle import LifecycleCommands
from agent_orchestrator.handlers.liveness import LivenessMonitor, arm
from agent_orchestrator.handlers.metrics import RuntimeSources, ServiceMetrics
from agent_orchestrator.handlers.recovery import RecoverCommands, Recovery
from agent_orchestrator.handlers.scope import ScopeGuard
from agent_orchestrator.handlers.state import StateCommands
from agent_orchestrator.handlers.state_events import state_event_publisher
from agent_orchestrator.handlers.sweeper import Sweeper, remove_ended
from agent_orchestrator.handlers.tasks import TaskCommands, time_out_tasks
from agent_orchestrator.handlers.telemetry import tracing_middleware
from agent_orchestrator.handlers.templates import TemplateCommands
from agent_orchestrator.settings import Settings
from agent_orchestrator.storage.agent_queues import AgentQueue, QueueSettings
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.checkpoints import CheckpointBlobs, CheckpointRepository
from agent_orchestrator.storage.communications import (
    RECORD_INBOX_SEQUENCES,
    CommunicationRepository,
)
from agent_orchestrator.storage.heartbeats import Heartbeats
from agent_orchestrator.storage.idempotency import IdempotencyStore
from agent_orchestrator.storage.jetstream import JetStreamLayout, ensure_jetstream
from agent_orchestrator.storage.migrate import apply_migrations
from agent_orchestrator.storage.outbox import OutboxRelay, RelaySettings
from agent_orchestrator.storage.postgres import Database
from agent_orchestrator.storage.schedules import CheckpointSchedules
from agent_orchestrator.storage.state import StateStore
from agent_orchestrator.storage.tasks import RECORD_TASK_SEQUENCES, TaskRepository
from agent_orchestrator.storage.templates import TemplateRepository

log = logging.getLogger(__name__)

BROKER_LOGGER = "agent_orchestrator.broker"
STOP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0


class Service:
    """One instance of agent-orchestrator: handlers on NATS plus the outbox relay."""

    def __init__(
        self,
        settings: Settings,
        *,
        init_steps: Sequence[InitializationStep] = (),
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """``init_steps`` run after the standard initialization steps (tests add failing ones;
        a deployment could add its own preparation). With ``tracer_provider`` every command
        is traced (see ``observability``); without, nothing is."""
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.db = Database(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            traced=tracer_provider is not None,
        )
        self.agents = AgentRepository(self.db)
        self.templates = TemplateRepository(self.db)
        self.idempotency = IdempotencyStore(self.db)
        self.checkpoints = CheckpointRepository(self.db)
        self.states = StateStore(
            history=settings.state_history,
            max_value_bytes=settings.max_state_bytes,
            replicas=settings.js_replicas,
        )
        self.checkpointer = Checkpointer(
            self.states,
            self.checkpoints,
            CheckpointBlobs(
                inline_max_bytes=settings.checkpoint_inline_max_bytes,
                replicas=settings.js_replicas,
            ),
            max_checkpoint_bytes=settings.max_checkpoint_bytes,
        )
        self.schedules = CheckpointSchedules()
        self.communications = CommunicationRepository(self.db)
        self.tasks = TaskRepository(self.db)
        self.inbox = AgentQueue(
            subjects.MESSAGES_STREAM,
            subjects.inbox_subject,
            subjects.inbox_consumer,
            QueueSettings(
                ack_wait_s=settings.message_ack_wait_s,
                max_deliveries=settings.message_max_deliveries,
            ),
            holds="Messages",
        )
        self.task_queue = AgentQueue(
            subjects.TASKS_STREAM,
            subjects.task_subject,
            subjects.task_consumer,
            # task.start decides what is stale; redelivery only covers a worker that died
            # between receiving an assignment and starting it.
            QueueSettings(ack_wait_s=settings.task_ack_wait_s, max_deliveries=-1),
            holds="Task assignments",
        )
        self.queues = (self.inbox, self.task_queue)
        self.heartbeats = Heartbeats(
            marker_ttl_s=float(settings.events_max_age_s), replicas=settings.js_replicas
        )
        self.consumers = AgentConsumers(
            self.agents, self.queues, on_active=partial(arm, self.heartbeats)
        )
        self.recovery = Recovery(
            self.agents,
            self.tasks,
            self.checkpointer,
            self.consumers,
            max_state_bytes=settings.max_state_bytes,
        )
        self.monitor = LivenessMonitor(self.agents, self.heartbeats, self.consumers, self.recovery)
        self.state_events = state_event_publisher(
            lambda: self.broker.connection.jetstream(),
            lambda: self.relay is not None and self.relay.is_leader,
        )
        self.sweeper = Sweeper(
            {
                "expire messages": partial(expire_messages, self.communications),
                "time out tasks": partial(time_out_tasks, self.tasks),
                "remove ended messages": remove_ended(self.communications, self.inbox),
                "remove ended assignments": remove_ended(self.tasks, self.task_queue),
            },
            interval_s=settings.sweep_s,
        )
        self.broker = NatsBroker(
            settings.nats_url.split(","),
            name=SERVICE_NAME,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            # FastStream logs every message; route it through our hierarchy, at DEBUG.
            logger=logging.getLogger(BROKER_LOGGER),
            log_level=logging.DEBUG,
        )
        self.commands: list[CommandSpec] = []
        self.broker.include_router(self._command_router())
        jobs = NatsRouter()
        steps = [*standard_steps(self.templates, self.queues), *init_steps]
        register_initializer(
            jobs,
            self.agents,
            steps,
            max_attempts=settings.init_max_attempts,
            recovery=self.recovery,
        )
        register_checkpoint_scheduler(jobs, self.agents, self.schedules, self.checkpointer)
        register_agent_consumer_keeper(jobs, self.consumers, self.communications, self.tasks)
        register_dead_letters(jobs, self.inbox, self.communications)
        self.broker.include_router(jobs)
        discovery = NatsRouter()
        register_discovery(discovery, self.stats)
        discovery.subscriber(ASYNCAPI, include_in_schema=False)(self._asyncapi)
        self.broker.include_router(discovery)
        self._asyncapi_yaml: str | None = None
        self.relay: OutboxRelay | None = None
        self._relay_task: asyncio.Task[None] | None = None
        self._sweeper_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._state_events_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.metrics_url: str | None = None

    def _command_router(self) -> NatsRouter:
        self.stats = ServiceStatsBook(subjects=[], version=__version__)
        self.metrics: ServiceMetrics | None = None
        if self.settings.metrics_port:
            self.metrics = ServiceMetrics(
                (), version=__version__, instance_id=self.stats.instance_id
            )
        # Tracing outermost, so that the error replies and the counting happen inside its span.
        tracing = [] if self.tracer_provider is None else [tracing_middleware(self.tracer_provider)]
        router = NatsRouter(
            middlewares=[
                *tracing,
                stats_middleware(self.stats, self.metrics.requests if self.metrics else None),
                build_error_middleware(),
            ]
        )
        server = CommandServer(
            router,
            self.idempotency,
            max_request_bytes=self.settings.max_request_bytes,
            max_workers=self.settings.handler_max_workers,
            scope_guard=ScopeGuard(self.agents, self.communications, self.tasks),
        )
        server.include(
            AgentCommands(
                agents=self.agents,
                templates=self.templates,
                states=self.states,
                checkpointer=self.checkpointer,
                schedules=self.schedules,
                queues=self.queues,
                heartbeats=self.heartbeats,
            ),
            TemplateCommands(templates=self.templates),
            CheckpointCommands(
                agents=self.agents,
                checkpointer=self.checkpointer,
                idempotency=self.idempotency,
                max_state_bytes=self.settings.max_state_bytes,
            ),
            ScheduleCommands(agents=self.agents, schedules=self.schedules),
            StateCommands(
                agents=self.agents,
                states=self.states,
                idempotency=self.idempotency,
                max_state_bytes=self.settings.max_state_bytes,
            ),
            LifecycleCommands(
                agents=self.agents, schedules=self.schedules, consumers=self.consumers
            ),
            CommunicationCommands(
                agents=self.agents,
                communications=self.communications,
                limits=MessageLimits(
                    max_content_bytes=self.settings.max_message_bytes,
                    max_sender_backlog=self.settings.max_sender_backlog,
                ),
            ),
            RecoverCommands(recovery=self.recovery),
            TaskCommands(
                agents=self.agents,
                tasks=self.tasks,
                defaults=TaskDefaults(
                    timeout_s=self.settings.task_timeout_s,
                    max_attempts=self.settings.task_max_attempts,
                    heartbeat_s=self.settings.task_heartbeat_s,
                ),
            ),
        )
        self.commands = server.specs
        self.stats.subjects = [spec.subject for spec in server.specs]
        if self.metrics is not None:
            self.metrics.requests.declare(self.stats.subjects)
        return router

    async def _asyncapi(self) -> str:
        """Reply to ``agent-orchestrator.asyncapi``: this service's AsyncAPI document."""
        if self._asyncapi_yaml is None:
            self._asyncapi_yaml = asyncapi_yaml(self)
        return self._asyncapi_yaml

    def layout(self) -> JetStreamLayout:
        """Streams and consumers as configured."""
        s = self.settings
        return JetStreamLayout(
            replicas=s.js_replicas,
            events_max_age_s=s.events_max_age_s,
            duplicate_window_s=s.duplicate_window_s,
            init_job_ack_wait_s=s.init_job_ack_wait_s,
            max_agent_queues=s.max_agent_queues,
        )

    async def start(self) -> None:
        """Connect, migrate, declare streams, then serve."""
        if not self.settings.database_url:
            raise Unavailable("DATABASE_URL is not set")
        self._serve_metrics()
        try:
            await self._start()
        except BaseException:
            if self.metrics is not None:
                await self.metrics.stop()
            raise

    async def _start(self) -> None:
        await self.db.open()
        async with self.db.pool.acquire() as conn:
            await apply_migrations(conn)
        try:
            await asyncio.wait_for(self.broker.connect(), timeout=CONNECT_TIMEOUT_S)
        except (OSError, NatsError, TimeoutError) as exc:
            await self.db.close()
            raise Unavailable(f"NATS is not reachable at {self.settings.nats_url}") from exc
        js = self.broker.connection.jetstream()
        await ensure_jetstream(js, self.layout())
        await self.states.open(js)
        await self.checkpointer.blobs.open(js)
        self.schedules.open(js)
        for queue in self.queues:
            queue.open(js)
        await self.heartbeats.declare(self.broker.connection)
        await self.broker.start()
        s = self.settings
        self.relay = OutboxRelay(
            s.database_url,
            self.broker.connection.jetstream(),
            RelaySettings(
                sweep_s=s.outbox_sweep_s,
                retention_s=s.outbox_retention_s,
                idempotency_ttl_s=s.idempotency_ttl_s,
            ),
            hooks=[RECORD_INBOX_SEQUENCES, RECORD_TASK_SEQUENCES],
        )
        self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self._sweeper_task = asyncio.create_task(self.sweeper.run(), name="sweeper")
        self._monitor_task = asyncio.create_task(
            self.monitor.run(self.broker.connection), name="liveness-monitor"
        )
        self._state_events_task = asyncio.create_task(
            self.state_events.run(self.broker.connection), name="state-events"
        )
        log.info("agent-orchestrator %s serving on %s", __version__, s.nats_url)

    async def stop(self) -> None:
        """Stop serving and close connections; in-flight requests finish first. Stopping a
        stopped service does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.sweeper.stop()
        self.monitor.stop()
        self.state_events.stop()
        if self.relay is not None:
            self.relay.stop()
        tasks = {
            t
            for t in (
                self._relay_task,
                self._sweeper_task,
                self._monitor_task,
                self._state_events_task,
            )
            if t is not None
        }
        for task in tasks:
            task.cancel()
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                log.warning("%s did not stop within %.0f s", task.get_name(), STOP_TIMEOUT_S)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s ended with %r", task.get_name(), task.exception())
        await self.broker.stop()
        await self.db.close()
        if self.metrics is not None:
            await self.metrics.stop()

    def _serve_metrics(self) -> None:
        """Serve Prometheus metrics on the configured port, if any (first, to fail fast)."""
        if self.metrics is None:
            return
        host, port = self.settings.metrics_host, self.settings.metrics_port
        try:
            port = self.metrics.serve(host, port)
        except OSError as exc:
            raise Unavailable(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        self.metrics_url = f"http://{host}:{port}/metrics"
        self.metrics.watch(
            RuntimeSources(
                loop=asyncio.get_running_loop(),
                pool=self._open_pool,
                connection=self._connection,
                relay=lambda: self.relay,
            )
        )

    def _open_pool(self) -> asyncpg.Pool | None:
        try:
            return self.db.pool
        except Unavailable:
            return None

    def _connection(self) -> nats.aio.client.Client | None:
        try:
            return self.broker.connection
        except Exception:  # not connected yet
            return None
