"""The composition root: builds one service instance from Settings and runs it.

The parts are built by the small functions of ``wiring``; this module only connects them.
Nothing connects at import or construction; ``start()`` connects, migrates, declares the
JetStream topology, starts the handlers and the background loops (outbox relay, sweeper,
liveness monitor, state events); ``stop()`` undoes it in reverse.
"""

import asyncio
import errno
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import asyncpg
import nats.aio.client
from nats.errors import Error as NatsError
from opentelemetry.trace import TracerProvider

from agent_orchestrator import __version__
from agent_orchestrator.asyncapi import asyncapi_yaml
from agent_orchestrator.client.protocol_adapter import ProtocolAdapter
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.handlers.commands import commands_of
from agent_orchestrator.handlers.discovery import ServiceStatsBook
from agent_orchestrator.handlers.initialization import (
    InitializationStep,
    Initializer,
    standard_steps,
)
from agent_orchestrator.handlers.liveness import LivenessMonitor, arm
from agent_orchestrator.handlers.message_ingest import MessageIngest
from agent_orchestrator.handlers.metrics import RuntimeSources
from agent_orchestrator.handlers.quotas import ProjectQuotas
from agent_orchestrator.handlers.recovery import Recovery
from agent_orchestrator.handlers.scope import ScopeGuard
from agent_orchestrator.handlers.state_events import state_event_publisher
from agent_orchestrator.settings import Settings
from agent_orchestrator.storage.jetstream import ensure_jetstream
from agent_orchestrator.storage.migrate import apply_migrations
from agent_orchestrator.storage.outbox import OutboxRelay, PublishedAhead
from agent_orchestrator.storage.quotas import ProjectUsage
from agent_orchestrator.storage.schedules import CheckpointSchedules
from agent_orchestrator.wiring import parts, routers

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0
DOCS_DATABASE_URL = "postgresql://docs@localhost/docs"


@dataclass(frozen=True)
class Loop:
    """A background loop of a running service: what runs it and what asks it to return."""

    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    stop: Callable[[], None]


class MetricsPortInUse(Unavailable):
    """The metrics port is taken by another listener."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"cannot serve metrics on {host}:{port}: address already in use")
        self.host = host
        self.port = port


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
        self.db = parts.database(settings, traced=tracer_provider is not None)
        self.repositories = repos = parts.Repositories.on(self.db)
        self.states = parts.state_store(settings)
        self.checkpointer = parts.checkpointer(
            settings, states=self.states, checkpoints=repos.checkpoints
        )
        self.schedules = CheckpointSchedules()
        self.published_ahead = PublishedAhead()
        self.queues = parts.queues(settings, self.published_ahead)
        self.heartbeats = parts.heartbeats(settings)
        on_active = partial(arm, self.heartbeats)
        self.recovery = Recovery(
            repos.agents,
            repos.tasks,
            self.checkpointer,
            on_active,
            max_state_bytes=settings.max_state_bytes,
        )
        self.monitor = LivenessMonitor(repos.agents, self.heartbeats, self.recovery)
        self.initializer = Initializer(
            agents=repos.agents,
            steps=[*standard_steps(repos.templates), *init_steps],
            max_attempts=settings.init_max_attempts,
            recovery=self.recovery,
            batch=settings.init_job_batch,
        )
        self.sweeper = parts.sweeper(settings, repositories=repos, queues=self.queues)

        areas = routers.command_areas(
            settings,
            repositories=repos,
            states=self.states,
            checkpointer=self.checkpointer,
            schedules=self.schedules,
            queues=self.queues,
            heartbeats=self.heartbeats,
            on_active=on_active,
            recovery=self.recovery,
        )
        self.commands = [spec for area in areas for spec, _ in commands_of(area)]
        self.stats = ServiceStatsBook(
            subjects=[spec.subject for spec in self.commands], version=__version__
        )
        self.metrics = routers.metrics(settings, stats=self.stats)
        self.broker = parts.broker(settings)
        self.broker.include_router(
            routers.command_router(
                settings,
                areas=areas,
                idempotency=repos.idempotency,
                scope_guard=ScopeGuard(
                    repos.agents, repos.communications, repos.tasks, repos.templates
                ),
                quotas=ProjectQuotas(
                    ProjectUsage(self.db),
                    max_agents=settings.project_max_agents,
                    max_tasks_in_flight=settings.project_max_tasks_in_flight,
                    max_waiting_messages=settings.project_max_waiting_messages,
                    max_requests_per_s=settings.project_max_requests_per_s,
                ),
                middlewares=routers.command_middlewares(
                    stats=self.stats, metrics=self.metrics, tracer_provider=tracer_provider
                ),
            )
        )
        self.broker.include_router(
            routers.job_router(
                settings,
                repositories=repos,
                schedules=self.schedules,
                checkpointer=self.checkpointer,
                queues=self.queues,
            )
        )
        self.broker.include_router(
            routers.discovery_router(stats=self.stats, asyncapi=self._serve_asyncapi)
        )
        self._asyncapi_yaml: str | None = None
        self.relay: OutboxRelay | None = None
        self.ingest: MessageIngest | None = None
        self._loops: list[Loop] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        self.metrics_url: str | None = None

    def asyncapi_yaml(self) -> str:
        """This service's AsyncAPI document (YAML), built once."""
        if self._asyncapi_yaml is None:
            self._asyncapi_yaml = asyncapi_yaml(self.broker, self.commands)
        return self._asyncapi_yaml

    async def _serve_asyncapi(self) -> str:
        """Reply to ``agent-orchestrator.asyncapi``: this service's AsyncAPI document."""
        return self.asyncapi_yaml()

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
        nc = self.broker.connection
        if warning := self.settings.payload_warning(nc.max_payload):
            log.warning(warning)
        js = nc.jetstream()
        await ensure_jetstream(js, parts.jetstream_layout(self.settings))
        await self.states.open(js)
        await self.checkpointer.blobs.open(js)
        self.schedules.open(js)
        for queue in self.queues.both:
            queue.open(js)
        await self.heartbeats.declare(nc)
        await self.broker.start()
        self._loops = self._background(nc)
        self._tasks = [asyncio.create_task(loop.run(), name=loop.name) for loop in self._loops]
        log.info(
            "agent-orchestrator %s serving on %s",
            __version__,
            re.sub(r"//[^@/]*@", "//", self.settings.nats_url),  # no credentials in the log
        )

    def _background(self, nc: nats.aio.client.Client) -> list[Loop]:
        """The loops that run beside the handlers on the connection ``nc``."""
        js = nc.jetstream()
        relay = self.relay = parts.outbox_relay(self.settings, js=js, ahead=self.published_ahead)
        # State events are published by the instance whose relay leads.
        state_events = state_event_publisher(lambda: js, lambda: relay.is_leader)
        ingest = self.ingest = parts.message_ingest(
            self.settings, js=js, db=self.db, repositories=self.repositories, queues=self.queues
        )
        loops = [
            Loop("outbox-relay", relay.run, relay.stop),
            Loop("message-ingest", ingest.run, ingest.stop),
            Loop("sweeper", self.sweeper.run, self.sweeper.stop),
            Loop("liveness-monitor", partial(self.monitor.run, nc), self.monitor.stop),
            Loop("initializer", partial(self.initializer.run, nc), self.initializer.stop),
            Loop("state-events", partial(state_events.run, nc), state_events.stop),
        ]
        if self.settings.protocol_adapter:
            adapter = ProtocolAdapter(nc)
            loops.append(Loop("protocol-adapter", adapter.run, adapter.stop))
        return loops

    async def stop(self) -> None:
        """Stop serving and close connections; in-flight requests finish first. Stopping a
        stopped service does nothing."""
        if self._stopped:
            return
        self._stopped = True
        for loop in self._loops:
            loop.stop()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in pending:
                log.warning("%s did not stop within %.0f s", task.get_name(), STOP_TIMEOUT_S)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s ended with %r", task.get_name(), task.exception())
        await self.heartbeats.close()
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
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUse(host, port) from None
            raise Unavailable(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        self.metrics_url = f"http://{host}:{port}/metrics"
        self.metrics.watch(
            RuntimeSources(
                loop=asyncio.get_running_loop(),
                pool=self._open_pool,
                connection=self._connection,
                relay=lambda: self.relay,  # None until started
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


def unconnected_service() -> Service:
    """A service with the settings of the environment, never started: what ``asyncapi.yaml``
    describes."""
    return Service(Settings(database_url=DOCS_DATABASE_URL))
