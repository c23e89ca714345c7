"""Events published to stream AGENT_EVENTS on ``agent.event.<agent_id>.<kind>``."""

from enum import StrEnum
from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import JsonObject, Reply, Timestamp


class EventKind(StrEnum):
    """The last token of an event subject and the envelope's `type`."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    INITIALIZING = "initializing"
    READY = "ready"
    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    TERMINATED = "terminated"
    STATE_UPDATED = "state_updated"
    CHECKPOINT_CREATED = "checkpoint_created"
    CHECKPOINT_RESTORED = "checkpoint_restored"
    CHECKPOINT_DELETED = "checkpoint_deleted"
    MESSAGE_SENT = "message_sent"
    MESSAGE_DELIVERED = "message_delivered"
    MESSAGE_FAILED = "message_failed"
    TASK_QUEUED = "task_queued"
    TASK_STARTED = "task_started"
    TASK_PROGRESS = "task_progress"
    TASK_INPUT_REQUIRED = "task_input_required"
    TASK_INPUT_PROVIDED = "task_input_provided"
    TASK_SUCCEEDED = "task_succeeded"
    TASK_FAILED = "task_failed"
    TASK_CANCELLED = "task_cancelled"


class Event(Reply):
    """Envelope of every event; `Nats-Msg-Id` equals `event_id`."""

    event_id: UUID = Field(description="UUIDv7; the stream deduplicates on it.")
    type: EventKind
    agent_id: UUID
    project_id: str | None = None
    occurred_at: Timestamp
    version: int = Field(description="Agent version this event produced.")
    data: JsonObject = Field(default_factory=dict)
