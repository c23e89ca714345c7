"""Checkpoints: snapshots of an agent's state that it can be restored to."""

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import Field, model_validator

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_ID,
    JsonBool,
    JsonDatetime,
    JsonInt,
    JsonObject,
    Reply,
    Request,
    Timestamp,
    examples,
)


class CheckpointStorage(StrEnum):
    """Where the snapshot's bytes live."""

    KV = "kv"
    OBJECT_STORE = "object_store"


class CreateCheckpoint(Request):
    """Snapshot the agent's current state."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "label": "before tool call", "recoverable": True},
    )

    agent_id: UUID
    label: str | None = Field(default=None, max_length=200)
    recoverable: JsonBool = Field(
        default=True, description="Whether a restore without checkpoint_id may pick it."
    )


class Checkpoint(Reply):
    """A stored snapshot (its state is returned by agent.checkpoint.restore)."""

    checkpoint_id: UUID = Field(description="UUIDv7.")
    agent_id: UUID
    label: str | None = None
    recoverable: bool
    state_revision: int = Field(description="Revision of the state that was copied.")
    agent_status: AgentStatus
    agent_version: int
    size_bytes: int
    storage: CheckpointStorage
    scheduled: bool = Field(default=False, description="Taken by a schedule (keep_last applies).")
    created_at: Timestamp


class ListCheckpoints(Request):
    """An agent's checkpoints, newest first."""

    agent_id: UUID


class CheckpointList(Reply):
    """Reply to agent.checkpoint.list."""

    items: list[Checkpoint]


class RestoreCheckpoint(Request):
    """Make a checkpoint's state the agent's current state (a new revision)."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "checkpoint_id": EXAMPLE_ID},
    )

    agent_id: UUID
    checkpoint_id: UUID | None = Field(
        default=None, description="Default: the latest recoverable checkpoint."
    )


class RestoredState(Reply):
    """Reply to agent.checkpoint.restore."""

    agent_id: UUID
    state: JsonObject
    revision: int = Field(description="The new state revision; restoring again can undo it.")
    restored_from: UUID


class DeleteCheckpoints(Request):
    """Delete one checkpoint, or all of the agent's."""

    agent_id: UUID
    checkpoint_id: UUID | None = None


class CheckpointsDeleted(Reply):
    """Reply to agent.checkpoint.delete."""

    agent_id: UUID
    deleted: int = Field(description="How many checkpoints were deleted.")


class ScheduleCheckpoints(Request):
    """Take checkpoints every ``interval_s`` seconds, or once ``at`` a time; 0 cancels."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "interval_s": 60, "keep_last": 5},
    )

    agent_id: UUID
    interval_s: JsonInt | None = Field(
        default=None, ge=0, le=366 * 24 * 3600, description="Period in seconds; 0 cancels."
    )
    at: JsonDatetime | None = Field(default=None, description="One checkpoint at this time.")
    keep_last: JsonInt | None = Field(
        default=None, ge=1, le=1000, description="Keep only this many scheduled checkpoints."
    )
    label: str | None = Field(default=None, max_length=200)
    recoverable: JsonBool = True

    @model_validator(mode="after")
    def _one_timing(self) -> "ScheduleCheckpoints":
        if (self.interval_s is None) == (self.at is None):
            raise ValueError("give exactly one of interval_s and at")
        return self


class Schedule(Reply):
    """An agent's checkpoint schedule, as the server runs it."""

    agent_id: UUID
    active: bool = Field(description="False once cancelled.")
    interval_s: int | None = None
    at: datetime | None = None
    keep_last: int | None = None
    label: str | None = None
    recoverable: bool = True
