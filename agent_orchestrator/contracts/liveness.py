"""Agent liveness and recovery: heartbeats, the per-agent policies, and agent.recover.

A worker proves its agent alive by writing the agent's key in KV bucket ``agent_heartbeats``
with a time to live of the agent's heartbeat window; when the key expires, nats-server itself
records it (a delete marker), and the service moves the agent to ERROR (``heartbeat_lost``).

The policies live in the agent's configuration (so a template can set them), under two keys
the orchestrator reads: ``liveness`` and ``recovery``.
"""

from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    ExpectedVersion,
    JsonBool,
    Reason,
    Reply,
    Request,
    Timestamp,
    examples,
)

LIVENESS_KEY = "liveness"
RECOVERY_KEY = "recovery"
HEARTBEAT_LOST = "heartbeat_lost"
RECOVERY_EXHAUSTED = "recovery_exhausted"


class Policy(BaseModel):
    """A policy read from an agent's configuration; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class LivenessPolicy(Policy):
    """``configuration.liveness``: how long an ACTIVE agent may go without a heartbeat."""

    heartbeat_window_s: int = Field(
        default=15,
        ge=1,
        le=24 * 3600,
        description="An ACTIVE agent whose heartbeats stop for this long goes to ERROR "
        "(heartbeat_lost). The worker SDK beats every third of it.",
    )
    require_heartbeat: bool = Field(
        default=False,
        description="Also flag an ACTIVE agent whose worker never sent a heartbeat after it "
        "was activated (by default only agents that had a worker are).",
    )
    activation_grace_s: int | None = Field(
        default=None,
        ge=1,
        le=24 * 3600,
        description="How long an agent that is activated (or recovered) has to get a worker "
        "beating before it is flagged; default twice the heartbeat window.",
    )

    @property
    def grace_s(self) -> int:
        """The activation grace in effect."""
        return self.activation_grace_s or 2 * self.heartbeat_window_s

    @classmethod
    def of(cls, configuration: dict[str, Any]) -> "LivenessPolicy":
        """The policy of an agent's configuration (defaults when it sets none)."""
        return cls.model_validate(configuration.get(LIVENESS_KEY) or {})


class RecoveryTarget(StrEnum):
    """Where a recovery ends."""

    READY = "READY"
    ACTIVE = "ACTIVE"


class RecoveryPolicy(Policy):
    """``configuration.recovery``: whether a lost agent is recovered without a caller."""

    automatic: bool = Field(default=False, description="Recover by itself after heartbeat_lost.")
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Automatic recoveries allowed within window_s; one more loss then ends in "
        "ERROR with reason recovery_exhausted.",
    )
    window_s: int = Field(default=600, ge=1, le=30 * 24 * 3600)
    target: RecoveryTarget = RecoveryTarget.ACTIVE
    restore: bool = Field(
        default=True, description="Restore the latest recoverable checkpoint on the way."
    )

    @classmethod
    def of(cls, configuration: dict[str, Any]) -> "RecoveryPolicy":
        """The policy of an agent's configuration (defaults when it sets none)."""
        return cls.model_validate(configuration.get(RECOVERY_KEY) or {})


class Heartbeat(Reply):
    """The value of an agent's key in ``agent_heartbeats``."""

    by: str = Field(description="`worker`, or `orchestrator` for the grace beat of activation.")
    worker: str | None = Field(default=None, description="Which worker process beat.")
    at: Timestamp


class RecoverAgent(Request):
    """Bring an ERROR agent back: INITIALIZING, restore a checkpoint, requeue its RUNNING
    tasks, then READY or ACTIVE."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "target": "READY", "reason": "after the outage"},
    )

    agent_id: UUID
    checkpoint_id: UUID | None = Field(
        default=None, description="Restore this one (default: the latest recoverable)."
    )
    restore: JsonBool = Field(default=True, description="False: keep the current state.")
    target: RecoveryTarget = RecoveryTarget.ACTIVE
    reason: Reason = None
    expected_version: ExpectedVersion = None


class RecoveryPlan(Reply):
    """What a recovery does once the agent is initialized again (carried by its job)."""

    checkpoint_id: UUID | None = None
    restore: bool = True
    target: RecoveryTarget = RecoveryTarget.ACTIVE
    actor: str
