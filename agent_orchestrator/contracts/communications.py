"""Messages between agents: agent.send, their delivery record, and the inbox payload.

A message sent to an agent is a row in the log (PostgreSQL) and a message on its inbox subject
``agent.inbox.<agent_id>`` in stream AGENT_MESSAGES, whose body is the :class:`Communication`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from pydantic import Field, JsonValue, model_validator

from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_ID,
    EXAMPLE_OTHER_AGENT_ID,
    EXAMPLE_TIME,
    Cursor,
    JsonBool,
    JsonInt,
    Limit,
    Reply,
    Request,
    Timestamp,
    examples,
)

MAX_TTL_S = 30 * 24 * 3600


class CommunicationStatus(StrEnum):
    """Where a message is: SENT, then DELIVERED, or FAILED / EXPIRED (both final)."""

    SENT = "SENT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class Direction(StrEnum):
    """Which of an agent's communications agent.communications lists."""

    SENT = "sent"
    RECEIVED = "received"
    BOTH = "both"


MessageType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="What kind of message this is, e.g. `request`, `response`, `notice`.",
    ),
]
CorrelationId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Ties the messages of one conversation together.",
    ),
]
ReplyTo = Annotated[
    UUID | None,
    Field(
        description="The communication this one answers; it must have been sent to the "
        "sender. Its correlation_id is inherited unless one is given.",
    ),
]
TtlS = Annotated[
    JsonInt | None,
    Field(
        ge=1,
        le=MAX_TTL_S,
        description="Expire (status EXPIRED) if not delivered within this many seconds.",
    ),
]


class SendMessage(Request):
    """Send a message to one agent (`to_agent_id`) or to every ACTIVE agent of the sender's
    project (`broadcast`: each gets its own copy and delivery record)."""

    model_config = examples(
        {
            "from_agent_id": EXAMPLE_AGENT_ID,
            "to_agent_id": EXAMPLE_OTHER_AGENT_ID,
            "type": "question",
            "content": {"text": "6*7?"},
            "correlation_id": "conv-1",
            "ttl_s": 300,
        },
        {
            "from_agent_id": EXAMPLE_AGENT_ID,
            "broadcast": True,
            "type": "notice",
            "content": "tea is ready",
        },
    )

    from_agent_id: UUID
    to_agent_id: UUID | None = None
    broadcast: JsonBool = Field(
        default=False, description="Send to every ACTIVE agent of the sender's project instead."
    )
    type: MessageType = "message"
    content: JsonValue = Field(default=None, description="Any JSON value.")
    correlation_id: CorrelationId = None
    reply_to: ReplyTo = None
    ttl_s: TtlS = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if self.broadcast == (self.to_agent_id is not None):
            raise ValueError("give either to_agent_id or broadcast: true, not both or neither")
        return self


class OutgoingMessage(Request):
    """A message a worker publishes to ``agent.outgoing.<from_agent_id>`` (stream
    AGENT_OUTGOING) instead of requesting agent.send: the stream's PubAck is the durability
    point, the subject names the sender, and the service records and delivers it from the
    stream in batches. ``Nats-Msg-Id`` must be the ``communication_id``."""

    model_config = examples(
        {
            "communication_id": "019a0000-0000-7000-8000-0000000000c1",
            "to_agent_id": EXAMPLE_OTHER_AGENT_ID,
            "type": "question",
            "content": {"text": "6*7?"},
            "ttl_s": 300,
        }
    )

    communication_id: UUID = Field(
        description="A new UUIDv7 the sender makes: the message's id in the log "
        "(communication.get) and its Nats-Msg-Id."
    )
    to_agent_id: UUID
    type: MessageType = "message"
    content: JsonValue = Field(default=None, description="Any JSON value.")
    correlation_id: CorrelationId = None
    reply_to: ReplyTo = None
    ttl_s: TtlS = None

    def as_send(self, from_agent_id: UUID) -> SendMessage:
        """The same message as an agent.send request of ``from_agent_id``."""
        return SendMessage(
            from_agent_id=from_agent_id,
            to_agent_id=self.to_agent_id,
            type=self.type,
            content=self.content,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            ttl_s=self.ttl_s,
        )


class Recipient(Reply):
    """One copy of a broadcast."""

    to_agent_id: UUID
    communication_id: UUID
    status: CommunicationStatus


class Communication(Reply):
    """A message and its delivery record; also the body of the inbox message.

    A broadcast is answered with a summary: `to_agent_id` null, `broadcast_id` equal to
    `communication_id`, and `recipients` listing every copy.
    """

    model_config = examples(
        {
            "communication_id": EXAMPLE_ID,
            "from_agent_id": EXAMPLE_AGENT_ID,
            "to_agent_id": EXAMPLE_OTHER_AGENT_ID,
            "project_id": "acme",
            "type": "question",
            "content": {"text": "6*7?"},
            "correlation_id": "conv-1",
            "ttl_s": 300,
            "expires_at": EXAMPLE_TIME,
            "status": "SENT",
            "created_at": EXAMPLE_TIME,
            "updated_at": EXAMPLE_TIME,
        },
    )

    communication_id: UUID = Field(description="UUIDv7; the inbox message's Nats-Msg-Id.")
    broadcast_id: UUID | None = Field(
        default=None, description="Shared by the copies of one broadcast."
    )
    from_agent_id: UUID
    to_agent_id: UUID | None = Field(description="Null only on a broadcast summary.")
    project_id: str | None = Field(default=None, description="The sender's project.")
    type: str
    content: JsonValue = None
    correlation_id: str | None = None
    reply_to: UUID | None = None
    ttl_s: int | None = None
    expires_at: datetime | None = None
    status: CommunicationStatus = Field(
        description="On a broadcast summary: SENT while any copy is, else DELIVERED if every "
        "copy was, else FAILED if any copy failed, else EXPIRED."
    )
    status_reason: str | None = Field(default=None, description="Why it FAILED or EXPIRED.")
    created_at: Timestamp
    updated_at: Timestamp
    delivered_at: datetime | None = None
    recipients: list[Recipient] | None = Field(
        default=None, description="Only on a broadcast summary: every copy."
    )


class MarkDelivered(Request):
    """Confirm that the recipient has the message; idempotent."""

    model_config = examples({"communication_id": EXAMPLE_ID, "ack_follows": False})

    communication_id: UUID
    ack_follows: JsonBool = Field(
        default=False,
        description="Set by a receiver that holds the message from its inbox consumer and "
        "acknowledges it in JetStream right after (the SDK does); the service then leaves "
        "removing it from AGENT_MESSAGES to that ack.",
    )


class GetCommunication(Request):
    """Read one communication (or a broadcast summary, by its broadcast id)."""

    communication_id: UUID


class ListCommunications(Request):
    """An agent's communications, newest first."""

    agent_id: UUID
    direction: Direction = Direction.BOTH
    status: CommunicationStatus | None = None
    limit: Limit = 50
    cursor: Cursor = None


class CommunicationPage(Reply):
    """One page of communications."""

    items: list[Communication]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null on the last page.")
