"""Rules for messages between agents: who may send, what a send creates, how a message ends."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationStatus,
    Recipient,
    SendMessage,
)
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.limits import MAX_MESSAGE_SETTING, Limit
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from agent_orchestrator.domain.ids import new_id

Status = CommunicationStatus

RECIPIENT_TERMINATED = "recipient terminated"
RECIPIENT_DELETED = "recipient deleted"
TTL_EXPIRED = "ttl expired"


@dataclass(frozen=True)
class Outgoing:
    """What one agent.send stores and publishes, and what it answers."""

    messages: list[Communication]
    events: list[Event]
    reply: Communication


def not_found(communication_id: UUID) -> NotFound:
    """The error for an unknown communication id."""
    return NotFound(
        f"communication {communication_id} does not exist",
        details={"communication_id": str(communication_id)},
    )


def check_content_size(content: Any, max_bytes: int) -> None:
    """Refuse content whose JSON form is over ``max_bytes``."""
    size = len(json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode())
    if size > max_bytes:
        limit = Limit(max_bytes, MAX_MESSAGE_SETTING)
        raise PayloadTooLarge(limit.refusal("message content", size), details=limit.details(size))


def check_party(party: AgentRef, role: str) -> None:
    """A TERMINATED agent can neither send nor receive."""
    if party.status is AgentStatus.TERMINATED:
        raise InvalidTransition(
            f"{role} {party.agent_id} is TERMINATED; it can no longer {_verb(role)} messages",
            details={role: str(party.agent_id), "status": party.status},
        )


def _verb(role: str) -> str:
    return "send" if role == "sender" else "receive"


def message_event(
    kind: EventKind,
    message: Communication,
    about: AgentRef,
    now: datetime,
) -> Event:
    """An event about ``message`` on the subject of agent ``about`` (sender or recipient)."""
    return Event(
        event_id=new_id(),
        type=kind,
        agent_id=about.agent_id,
        project_id=about.project_id,
        occurred_at=now,
        version=about.version,
        data={
            "communication_id": str(message.communication_id),
            "broadcast_id": str(message.broadcast_id) if message.broadcast_id else None,
            "from_agent_id": str(message.from_agent_id),
            "to_agent_id": str(message.to_agent_id),
            "type": message.type,
            "correlation_id": message.correlation_id,
            "reply_to": str(message.reply_to) if message.reply_to else None,
            "status": message.status,
            "reason": message.status_reason,
        },
    )


def compose(
    request: SendMessage,
    sender: AgentRef,
    recipients: Sequence[AgentRef],
    *,
    answered: Communication | None,
    now: datetime,
    communication_id: UUID | None = None,
) -> Outgoing:
    """The messages (one per recipient) and their ``message_sent`` events; a message to one
    agent gets ``communication_id`` when given (the sender made it).

    ``answered`` is the communication named by ``reply_to``: it must have been sent to the
    sender (another project's is ``not_found``, like an unknown id), and its correlation_id
    carries over unless the request sets one.
    """
    check_party(sender, "sender")
    for recipient in recipients:
        check_party(recipient, "recipient")
    correlation_id = request.correlation_id
    if answered is not None:
        if answered.to_agent_id != sender.agent_id and answered.project_id != sender.project_id:
            # Another project's message is answered exactly as an unknown id: its existence
            # is not the sender's to learn.
            raise not_found(answered.communication_id)
        if answered.to_agent_id != sender.agent_id:
            raise ValidationFailed(
                f"reply_to {answered.communication_id} was not sent to {sender.agent_id}",
                details=[{"path": "reply_to", "message": "not a message to the sender"}],
            )
        correlation_id = correlation_id or answered.correlation_id
    broadcast_id = new_id() if request.broadcast else None
    first = Communication(
        communication_id=broadcast_id or new_id(),
        broadcast_id=broadcast_id,
        from_agent_id=sender.agent_id,
        to_agent_id=None,
        project_id=sender.project_id,
        type=request.type,
        content=request.content,
        correlation_id=correlation_id,
        reply_to=request.reply_to,
        ttl_s=request.ttl_s,
        expires_at=now + timedelta(seconds=request.ttl_s) if request.ttl_s else None,
        status=Status.SENT,
        created_at=now,
        updated_at=now,
    )
    given = communication_id if broadcast_id is None else None
    messages = [
        first.model_copy(update={"communication_id": given or new_id(), "to_agent_id": r.agent_id})
        for r in recipients
    ]
    events = [message_event(EventKind.MESSAGE_SENT, m, sender, now) for m in messages]
    if broadcast_id is None:
        return Outgoing(messages, events, messages[0])
    summary = first.model_copy(update={"recipients": [_recipient(m) for m in messages]})
    return Outgoing(messages, events, summary)


def refuse(
    request: SendMessage, communication_id: UUID, sender: AgentRef, reason: str, now: datetime
) -> Outgoing:
    """A message that was sent without a request but may not go out: recorded FAILED with the
    reason, its ``message_failed`` event on the sender (it is never delivered)."""
    assert request.to_agent_id is not None
    message = Communication(
        communication_id=communication_id,
        from_agent_id=sender.agent_id,
        to_agent_id=request.to_agent_id,
        project_id=sender.project_id,
        type=request.type,
        content=request.content,
        correlation_id=request.correlation_id,
        reply_to=request.reply_to,
        ttl_s=request.ttl_s,
        status=Status.FAILED,
        status_reason=reason[:2000],
        created_at=now,
        updated_at=now,
    )
    event = message_event(EventKind.MESSAGE_FAILED, message, sender, now)
    return Outgoing([message], [event], message)


def decide_direct(
    request: SendMessage,
    communication_id: UUID,
    sender: AgentRef,
    recipient: AgentRef | None,
    *,
    answered: Communication | None,
    max_content_bytes: int,
    now: datetime,
) -> Outgoing:
    """A message sent without a request, decided by agent.send's rules: SENT, or FAILED with
    the reason agent.send would have answered. A worker's message stays in its project: a
    recipient of another project is refused as unknown."""
    assert request.to_agent_id is not None
    try:
        check_content_size(request.content, max_content_bytes)
        if recipient is None or recipient.project_id != sender.project_id:
            raise NotFound(f"agent {request.to_agent_id} does not exist")
        if request.reply_to is not None and answered is None:
            raise not_found(request.reply_to)
        return compose(
            request,
            sender,
            [recipient],
            answered=answered,
            now=now,
            communication_id=communication_id,
        )
    except (NotFound, InvalidTransition, PayloadTooLarge, ValidationFailed) as exc:
        return refuse(request, communication_id, sender, str(exc), now)


def _recipient(copy: Communication) -> Recipient:
    assert copy.to_agent_id is not None
    return Recipient(
        to_agent_id=copy.to_agent_id, communication_id=copy.communication_id, status=copy.status
    )


def summary_status(statuses: Sequence[CommunicationStatus]) -> CommunicationStatus:
    """A broadcast's status from its copies' (see Communication.status)."""
    if not statuses or Status.SENT in statuses:
        return Status.SENT
    if all(s is Status.DELIVERED for s in statuses):
        return Status.DELIVERED
    return Status.FAILED if Status.FAILED in statuses else Status.EXPIRED


def broadcast_summary(copies: Sequence[Communication]) -> Communication:
    """A broadcast as one communication, rebuilt from its copies."""
    first = copies[0]
    assert first.broadcast_id is not None
    return first.model_copy(
        update={
            "communication_id": first.broadcast_id,
            "to_agent_id": None,
            "status": summary_status([c.status for c in copies]),
            "status_reason": None,
            "delivered_at": None,
            "updated_at": max(c.updated_at for c in copies),
            "recipients": [_recipient(c) for c in copies],
        }
    )


def deliver(message: Communication, now: datetime) -> Communication | None:
    """The message marked DELIVERED; None when it already is (a repeat changes nothing)."""
    if message.status is Status.DELIVERED:
        return None
    if message.status is not Status.SENT:
        raise Conflict(
            f"communication {message.communication_id} is {message.status}"
            f" ({message.status_reason}); it can no longer be delivered",
            details={"status": message.status, "reason": message.status_reason},
        )
    return message.model_copy(
        update={"status": Status.DELIVERED, "delivered_at": now, "updated_at": now}
    )


def end(
    message: Communication, status: CommunicationStatus, reason: str, now: datetime
) -> Communication:
    """A SENT message that will never be delivered: FAILED or EXPIRED, with the reason."""
    assert status in (Status.FAILED, Status.EXPIRED)
    return message.model_copy(
        update={"status": status, "status_reason": reason[:2000], "updated_at": now}
    )


def outcome_event(message: Communication, recipient: AgentRef, now: datetime) -> Event:
    """``message_delivered`` or ``message_failed`` (also for EXPIRED) on the recipient."""
    kind = EventKind.MESSAGE_DELIVERED
    if message.status is not Status.DELIVERED:
        kind = EventKind.MESSAGE_FAILED
    return message_event(kind, message, recipient, now)
