"""Pools, repositories, JetStream stores and queues, the broker, the sweeper, the relay."""

import logging
from dataclasses import dataclass
from functools import partial

from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.subjects import SERVICE_NAME
from agent_orchestrator.domain.tasks import TaskDefaults
from agent_orchestrator.handlers.checkpoints import Checkpointer
from agent_orchestrator.handlers.communications import MessageLimits, expire_messages
from agent_orchestrator.handlers.direct_sends import DirectSends
from agent_orchestrator.handlers.message_ingest import MessageIngest
from agent_orchestrator.handlers.sweeper import Sweeper, remove_ended
from agent_orchestrator.handlers.tasks import time_out_tasks
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
from agent_orchestrator.storage.jetstream import JetStreamLayout
from agent_orchestrator.storage.outbox import OutboxRelay, PublishedAhead, RelaySettings
from agent_orchestrator.storage.postgres import Database
from agent_orchestrator.storage.push_configs import PushConfigRepository
from agent_orchestrator.storage.quotas import ProjectUsage
from agent_orchestrator.storage.state import StateStore
from agent_orchestrator.storage.tasks import RECORD_TASK_SEQUENCES, TaskRepository
from agent_orchestrator.storage.templates import TemplateRepository
from agent_orchestrator.wiring.nats_connection import CoalescingBroker

BROKER_LOGGER = "agent_orchestrator.broker"


@dataclass(frozen=True)
class Repositories:
    """The PostgreSQL repositories, all on one connection pool."""

    agents: AgentRepository
    templates: TemplateRepository
    idempotency: IdempotencyStore
    checkpoints: CheckpointRepository
    communications: CommunicationRepository
    tasks: TaskRepository
    push_configs: PushConfigRepository

    @classmethod
    def on(cls, db: Database) -> "Repositories":
        """Every repository on ``db``."""
        return cls(
            agents=AgentRepository(db),
            templates=TemplateRepository(db),
            idempotency=IdempotencyStore(db),
            checkpoints=CheckpointRepository(db),
            communications=CommunicationRepository(db),
            tasks=TaskRepository(db),
            push_configs=PushConfigRepository(db),
        )


@dataclass(frozen=True)
class Queues:
    """The two work-queue streams of per-agent subjects: inboxes and task assignments."""

    inbox: AgentQueue
    tasks: AgentQueue

    @property
    def both(self) -> tuple[AgentQueue, AgentQueue]:
        """Inbox and task queue, in that order."""
        return (self.inbox, self.tasks)


def database(settings: Settings, *, traced: bool) -> Database:
    """The connection pool (opened by ``start``); ``traced``: a span per query."""
    return Database(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        traced=traced,
    )


def state_store(settings: Settings) -> StateStore:
    """Runtime state in KV."""
    return StateStore(
        history=settings.state_history,
        max_value_bytes=settings.max_state_bytes,
        replicas=settings.js_replicas,
    )


def checkpointer(
    settings: Settings, *, states: StateStore, checkpoints: CheckpointRepository
) -> Checkpointer:
    """Takes, restores and prunes checkpoints; large ones go to the object store."""
    blobs = CheckpointBlobs(
        inline_max_bytes=settings.checkpoint_inline_max_bytes, replicas=settings.js_replicas
    )
    return Checkpointer(
        states, checkpoints, blobs, max_checkpoint_bytes=settings.max_checkpoint_bytes
    )


def queues(settings: Settings, ahead: PublishedAhead) -> Queues:
    """The inbox (messages) and the task queue (assignments) of every agent; ``ahead``
    shares with this instance's relay what handlers published themselves."""
    inbox = AgentQueue(
        subjects.MESSAGES_STREAM,
        subjects.inbox_subject,
        QueueSettings(
            ack_wait_s=settings.message_ack_wait_s,
            max_deliveries=settings.message_max_deliveries,
            inactive_threshold_s=settings.worker_inactive_s,
        ),
        ahead,
    )
    tasks = AgentQueue(
        subjects.TASKS_STREAM,
        subjects.task_subject,
        # task.start decides what is stale; redelivery only covers a worker that died
        # between receiving an assignment and starting it.
        QueueSettings(
            ack_wait_s=settings.task_ack_wait_s,
            max_deliveries=-1,
            inactive_threshold_s=settings.worker_inactive_s,
        ),
        ahead,
    )
    return Queues(inbox, tasks)


def heartbeats(settings: Settings) -> Heartbeats:
    """Workers' heartbeats in KV; a lost one leaves a marker as long as events are kept."""
    return Heartbeats(marker_ttl_s=float(settings.events_max_age_s), replicas=settings.js_replicas)


def task_defaults(settings: Settings) -> TaskDefaults:
    """What shapes every task: its timeouts, attempts and heartbeat window."""
    return TaskDefaults(
        timeout_s=settings.task_timeout_s,
        max_attempts=settings.task_max_attempts,
        heartbeat_s=settings.task_heartbeat_s,
        input_timeout_s=settings.task_input_timeout_s,
    )


def sweeper(settings: Settings, *, repositories: Repositories, queues: Queues) -> Sweeper:
    """The periodic sweeps: expired messages, overdue tasks, ended stream entries."""
    return Sweeper(
        {
            "expire messages": partial(expire_messages, repositories.communications),
            "time out tasks": partial(time_out_tasks, repositories.tasks, task_defaults(settings)),
            "remove ended messages": remove_ended(repositories.communications, queues.inbox),
            "remove ended assignments": remove_ended(repositories.tasks, queues.tasks),
        },
        interval_s=settings.sweep_s,
    )


def broker(settings: Settings) -> NatsBroker:
    """The FastStream broker (connected by ``start``)."""
    return CoalescingBroker(
        settings.nats_url.split(","),
        name=SERVICE_NAME,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        # FastStream logs every message; route it through our hierarchy, at DEBUG.
        logger=logging.getLogger(BROKER_LOGGER),
        log_level=logging.DEBUG,
    )


def jetstream_layout(settings: Settings) -> JetStreamLayout:
    """Streams and consumers as configured."""
    return JetStreamLayout(
        replicas=settings.js_replicas,
        events_max_age_s=settings.events_max_age_s,
        duplicate_window_s=settings.duplicate_window_s,
        init_job_ack_wait_s=settings.init_job_ack_wait_s,
        messages=queues(settings, PublishedAhead()).inbox.settings,
        tasks=queues(settings, PublishedAhead()).tasks.settings,
    )


def outbox_relay(settings: Settings, *, js: JetStreamContext, ahead: PublishedAhead) -> OutboxRelay:
    """The relay that publishes committed outbox rows to JetStream (one leader at a time)."""
    return OutboxRelay(
        settings.database_url,
        js,
        RelaySettings(
            sweep_s=settings.outbox_sweep_s,
            retention_s=settings.outbox_retention_s,
            idempotency_ttl_s=settings.idempotency_ttl_s,
        ),
        hooks=[RECORD_INBOX_SEQUENCES, RECORD_TASK_SEQUENCES],
        ahead=ahead,
    )


def message_ingest(
    settings: Settings,
    *,
    js: JetStreamContext,
    db: Database,
    repositories: Repositories,
    queues: Queues,
) -> MessageIngest:
    """The ingest of messages sent without a request (one leader at a time)."""
    sends = DirectSends(
        communications=repositories.communications,
        limits=MessageLimits(
            max_content_bytes=settings.max_message_bytes,
            max_sender_backlog=settings.max_sender_backlog,
        ),
        inbox=queues.inbox,
        usage=ProjectUsage(db),
        max_waiting_messages=settings.project_max_waiting_messages,
    )
    return MessageIngest(settings.database_url, js, sends)
