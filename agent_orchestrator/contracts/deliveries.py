"""communication.handover: a receiver's batched delivery check and delivery confirmations.

A worker that fetched messages from its agent's inbox asks, in one request, which of them it
may hand to the agent's program (all of those still SENT while the agent is ACTIVE, none
otherwise) and confirms those its program has finished with (they become DELIVERED). The SDK
sends one such request per fetched batch, with the confirmations gathered meanwhile.
"""

from datetime import datetime
from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_ID,
    Reply,
    Request,
    examples,
)
from agent_orchestrator.contracts.communications import CommunicationStatus

MAX_HANDOVER_IDS = 1000


class HandOver(Request):
    """Which of these inbox messages may reach the agent's program; these others did."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "offered": [EXAMPLE_ID], "delivered": []},
    )

    agent_id: UUID = Field(description="The recipient: the agent whose inbox the worker reads.")
    offered: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_HANDOVER_IDS,
        description="Messages fetched from the inbox, not yet given to the program.",
    )
    delivered: list[UUID] = Field(
        default_factory=list,
        max_length=MAX_HANDOVER_IDS,
        description="Messages the program has finished with: recorded DELIVERED; the "
        "worker acknowledges them in JetStream once the reply says so.",
    )


class DeliveryOutcome(Reply):
    """Where a confirmed message ended: DELIVERED, or FAILED / EXPIRED if that came first."""

    communication_id: UUID
    status: CommunicationStatus
    updated_at: datetime
    delivered_at: datetime | None = None


class HandOverReply(Reply):
    """The agent's status, which offered messages may be handed over, and the confirmations."""

    model_config = examples(
        {
            "agent_id": EXAMPLE_AGENT_ID,
            "status": "ACTIVE",
            "version": 4,
            "accepted": [EXAMPLE_ID],
            "ended": [],
            "confirmed": [],
        },
    )

    agent_id: UUID
    status: AgentStatus = Field(description="The agent's status now (a deleted agent: not_found).")
    version: int = Field(description="The agent's version that status belongs to.")
    accepted: list[UUID] = Field(
        description="Offered messages the program may have now (empty unless ACTIVE)."
    )
    ended: list[UUID] = Field(
        description="Offered messages that are no longer SENT (delivered, failed, expired, "
        "unknown): acknowledge them without handing them over."
    )
    confirmed: list[DeliveryOutcome] = Field(
        description="One per `delivered` id: DELIVERED, or how it ended before (unknown ids "
        "are left out)."
    )
