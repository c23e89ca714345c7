"""Durable background jobs the service hands itself through stream AGENT_JOBS."""

from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import Reply
from agent_orchestrator.contracts.liveness import RecoveryPlan


class InitializeJob(Reply):
    """Finish initializing an agent that entered INITIALIZING at ``version``."""

    job_id: UUID = Field(description="UUIDv7; also the message's Nats-Msg-Id.")
    agent_id: UUID
    version: int = Field(description="Agent version when it entered INITIALIZING.")
    recovery: RecoveryPlan | None = Field(
        default=None, description="Set when the initialization is a recovery (agent.recover)."
    )
