"""JetStream topology: streams and durable consumers, declared idempotently at start-up."""

import contextlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.queues import QueueSettings
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.observability.tracing import NO_SPAN, child_span, is_traced

log = logging.getLogger(__name__)

JETSTREAM_DOWN = "JetStream is unavailable; retry shortly"


class JetStreamBound:
    """A store that binds to JetStream when the service starts, not when it is built."""

    def __init__(self) -> None:
        self._js: JetStreamContext | None = None

    def open(self, js: JetStreamContext) -> None:
        """Bind to JetStream (streams are declared by ``ensure_jetstream``)."""
        self._js = js

    @property
    def js(self) -> JetStreamContext:
        """The bound JetStream context; Unavailable before ``open``."""
        if self._js is None:
            raise Unavailable(f"{type(self).__name__} is not open")
        return self._js


def kv_span(operation: str, bucket: str, key: str) -> AbstractContextManager[Any]:
    """A span for one key-value (or object store) operation of a traced request."""
    if not is_traced():
        return NO_SPAN
    return child_span(
        f"kv.{operation} {bucket}",
        {
            "messaging.system": "nats",
            "nats.kv.bucket": bucket,
            "nats.kv.operation": operation,
            "nats.kv.key": key,
        },
    )


@contextmanager
def jetstream_calls() -> Iterator[None]:
    """Turn NATS failures inside the block into Unavailable (the caller may retry)."""
    try:
        yield
    except (NatsError, TimeoutError) as exc:
        raise Unavailable(JETSTREAM_DOWN) from exc


AGENT_END_EVENTS = (EventKind.TERMINATED, EventKind.DELETED)
"""Event kinds after which what waits for an agent is cleaned up."""


@dataclass(frozen=True)
class JetStreamLayout:
    """Sizes and policies of the service's streams."""

    replicas: int = 1
    events_max_age_s: int = 7 * 24 * 3600
    duplicate_window_s: int = 300
    init_job_ack_wait_s: float = 30.0
    #: How the consumers that workers create on AGENT_MESSAGES / AGENT_TASKS deliver
    #: (written into each stream's metadata, read by the workers).
    messages: QueueSettings = field(default_factory=QueueSettings)
    tasks: QueueSettings = field(default_factory=lambda: QueueSettings(max_deliveries=-1))

    def _event_stream(self, name: str, subject: str, description: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=float(self.events_max_age_s),
            duplicate_window=float(self.duplicate_window_s),
            num_replicas=self.replicas,
            description=description,
        )

    def streams(self) -> list[StreamConfig]:
        """Event streams (replayable history), schedules, and the jobs work queue."""
        return [
            self._event_stream(
                subjects.EVENTS_STREAM,
                subjects.EVENTS_SUBJECTS,
                "Every agent lifecycle and data event; Nats-Msg-Id = event_id.",
            ),
            self._event_stream(
                subjects.TEMPLATE_EVENTS_STREAM,
                subjects.TEMPLATE_EVENTS_SUBJECTS,
                "Template created / updated / deleted events.",
            ),
            StreamConfig(
                name=subjects.SCHEDULES_STREAM,
                subjects=list(subjects.SCHEDULES_SUBJECTS),
                # Work queue: a firing is gone once handled. No age or count limits: they
                # would silently delete the schedule messages themselves.
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                allow_msg_schedules=True,
                num_replicas=self.replicas,
                description="Checkpoint schedules (server-run) and their firings.",
            ),
            StreamConfig(
                name=subjects.MESSAGES_STREAM,
                subjects=[subjects.MESSAGES_SUBJECTS],
                # Work queue: a message acknowledged by its recipient is gone; what is left is
                # what still waits for delivery. A running worker's consumer filters its
                # agent's inbox.
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=float(self.duplicate_window_s),
                allow_msg_ttl=True,  # ttl_s of agent.send becomes the message's Nats-TTL
                metadata=self.messages.metadata(),
                num_replicas=self.replicas,
                description="Messages between agents, on agent.inbox.<agent_id>; "
                "Nats-Msg-Id = communication_id.",
            ),
            StreamConfig(
                name=subjects.OUTGOING_STREAM,
                subjects=[subjects.OUTGOING_SUBJECTS],
                # Work queue: a message is gone once the ingest recorded and delivered it.
                # The duplicate window makes a repeated publish (a retry after a lost PubAck,
                # same Nats-Msg-Id) one message.
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=float(self.duplicate_window_s),
                num_replicas=self.replicas,
                description="Messages workers send without a request, on "
                "agent.outgoing.<from_agent_id>; Nats-Msg-Id = communication_id. The service "
                "records and delivers them.",
            ),
            StreamConfig(
                name=subjects.TASKS_STREAM,
                subjects=[subjects.TASKS_SUBJECTS],
                # Work queue: an assignment is gone once the worker that took it acknowledged
                # it (right after task.start); from then on PostgreSQL tracks the task.
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=float(self.duplicate_window_s),
                metadata=self.tasks.metadata(),
                num_replicas=self.replicas,
                description="Task assignments to agents, on agent.task.<agent_id>; one message "
                "per attempt.",
            ),
            StreamConfig(
                name=subjects.DEAD_LETTERS_STREAM,
                subjects=[subjects.MESSAGE_DEAD_LETTERS_SUBJECTS],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                max_age=float(self.events_max_age_s),
                num_replicas=self.replicas,
                description="The server's max-deliveries advisories about AGENT_MESSAGES, "
                "kept until the service has marked each message FAILED.",
            ),
            StreamConfig(
                name=subjects.JOBS_STREAM,
                subjects=[subjects.JOBS_SUBJECTS],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                discard=DiscardPolicy.NEW,
                duplicate_window=float(self.duplicate_window_s),
                num_replicas=self.replicas,
                description="Durable background jobs of agent-orchestrator (work queue).",
            ),
        ]

    def consumers(self) -> list[tuple[str, ConsumerConfig]]:
        """The durable pull consumers that run background jobs."""
        return [
            (
                subjects.JOBS_STREAM,
                ConsumerConfig(
                    durable_name=subjects.INITIALIZE_JOB_CONSUMER,
                    filter_subject=subjects.initialize_job_subject("*"),
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=self.init_job_ack_wait_s,
                    max_deliver=-1,  # the handler decides when to give up, not the server
                    max_ack_pending=1000,
                    description="Finishes agent initialization.",
                ),
            ),
            (
                subjects.SCHEDULES_STREAM,
                ConsumerConfig(
                    durable_name=subjects.CHECKPOINT_SCHEDULER_CONSUMER,
                    # Firings only: acking a schedule message would delete the schedule.
                    filter_subject=subjects.scheduled_checkpoint_subject("*"),
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30.0,
                    max_deliver=-1,
                    max_ack_pending=1000,
                    description="Takes scheduled checkpoints.",
                ),
            ),
            (
                subjects.EVENTS_STREAM,
                ConsumerConfig(
                    durable_name=subjects.AGENT_CLEANUP_CONSUMER,
                    filter_subjects=[
                        subjects.event_subject("*", kind) for kind in AGENT_END_EVENTS
                    ],
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=60.0,
                    max_deliver=-1,
                    max_ack_pending=64,
                    description="Cleans up after ended agents: fails their waiting messages, "
                    "cancels their open tasks, purges their inbox and task subjects.",
                ),
            ),
            (
                subjects.DEAD_LETTERS_STREAM,
                ConsumerConfig(
                    durable_name=subjects.DEAD_LETTER_CONSUMER,
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=30.0,
                    max_deliver=-1,
                    max_ack_pending=100,
                    description="Marks messages that were never acknowledged FAILED.",
                ),
            ),
        ]


async def ensure_jetstream(js: JetStreamContext, layout: JetStreamLayout) -> None:
    """Create or update every stream and consumer; safe to run from many instances at once."""
    for config in layout.streams():
        try:
            await js.stream_info(config.name or "")
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", config.name)
        else:
            await js.update_stream(config)
    for stream, consumer in layout.consumers():
        await js.add_consumer(stream, consumer)
    for stream, name in subjects.OBSOLETE_CONSUMERS:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
