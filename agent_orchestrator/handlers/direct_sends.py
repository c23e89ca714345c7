"""Messages sent without a request: a batch from AGENT_OUTGOING, recorded and delivered.

A worker publishes a message to ``agent.outgoing.<from_agent_id>``; the stream's PubAck is its
durability point. The ingest loop (``handlers.message_ingest``) hands batches of them here:

1. Each is decided by agent.send's rules (``domain.communications.decide_direct``): SENT, or
   FAILED with the reason agent.send would have answered (unknown or terminated recipient,
   content too large, a bad ``reply_to``), so ``communication.get`` tells the sender.
2. The batch is recorded in one statement (the send writer; a message already in the log, from
   a batch redelivered after a crash, is left alone), the events through the outbox.
3. The SENT ones still SENT are published to ``agent.inbox.<to>`` pipelined, ``Nats-Msg-Id`` =
   communication_id, so a redelivered batch is dropped by the stream as a duplicate.
4. Only then the caller acknowledges the batch in AGENT_OUTGOING.
"""

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from pydantic import ValidationError

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationStatus,
    OutgoingMessage,
)
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import Unavailable, ValidationFailed
from agent_orchestrator.handlers.communications import MessageLimits
from agent_orchestrator.storage.agent_queues import AgentQueue
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.quotas import ProjectUsage
from agent_orchestrator.storage.send_writes import SendWrite, inbox_message

log = logging.getLogger(__name__)

BACKLOG_FULL = "the sender's backlog of undelivered messages is full"


@dataclass(frozen=True)
class Outgoing:
    """One message as it came from the stream: its sender (from the subject), its body and
    when the stream stored it."""

    sender: UUID
    body: OutgoingMessage
    at: datetime

    @property
    def parties(self) -> tuple[UUID, UUID]:
        """Sender and recipient."""
        return (self.sender, self.body.to_agent_id)


def parse(subject: str, data: bytes, at: datetime | None) -> Outgoing | None:
    """The message on ``agent.outgoing.<sender>``; None (logged) when it is not one."""
    try:
        sender = UUID(subject.rsplit(".", 1)[-1])
        body = OutgoingMessage.model_validate_json(data)
    except (ValueError, ValidationError) as exc:
        log.warning("dropped a message on %s that is not an outgoing message: %s", subject, exc)
        return None
    return Outgoing(sender, body, at or datetime.now(UTC))


class DirectSends:
    """Records and delivers batches of messages sent without a request."""

    def __init__(
        self,
        *,
        communications: CommunicationRepository,
        limits: MessageLimits,
        inbox: AgentQueue,
        usage: ProjectUsage | None = None,
        max_waiting_messages: int = 0,
    ) -> None:
        """``usage`` and ``max_waiting_messages``: the project quota of agent.send
        (``AO_PROJECT_MAX_WAITING_MESSAGES``, 0: none), applied to the sender's project."""
        self._communications = communications
        self._limits = limits
        self._inbox = inbox
        self._usage = usage
        self._max_waiting = max_waiting_messages

    async def _over_quota(self, projects: set[str]) -> dict[str, str]:
        """The projects among ``projects`` at their quota of waiting messages, with why."""
        if self._usage is None or not self._max_waiting:
            return {}
        over = {}
        for project in projects:
            held = await self._usage.count("waiting_messages", project, limit=self._max_waiting)
            if held >= self._max_waiting:
                over[project] = (
                    f"project {project!r} has {held} messages waiting for delivery, its quota "
                    "(AO_PROJECT_MAX_WAITING_MESSAGES)"
                )
        return over

    async def ingest(self, batch: list[Outgoing]) -> None:
        """Record every message of ``batch`` (SENT or FAILED) and publish the SENT ones to
        their recipients' inboxes; returns once all of it is durable. Raises Unavailable (or
        a NATS error) when that could not be done: the caller leaves the batch unacknowledged
        and it comes again."""
        if not batch:
            return
        writes = await self._decide(batch)
        outcomes = await self._write(writes)
        unstorable = [
            (w, o) for w, o in zip(writes, outcomes, strict=True) if isinstance(o, ValidationFailed)
        ]
        if unstorable:
            await self._record_unstorable(batch, unstorable)
        refused = [w for w, written in zip(writes, outcomes, strict=True) if written is False]
        recorded = await self._redecide(batch, refused) if refused else {}
        going: list[Communication] = []
        for write, written in zip(writes, outcomes, strict=True):
            message = write.messages[0]
            if isinstance(written, ValidationFailed):
                continue
            if not written:  # recorded by an earlier delivery of the batch, or FAILED now
                message = recorded.get(message.communication_id, message)
                written = message.communication_id in recorded
            if written and message.status is CommunicationStatus.SENT:
                going.append(message)
        await self._inbox.publish([inbox_message(m) for m in going])

    async def _decide(self, batch: list[Outgoing]) -> list[SendWrite]:
        wanted = list({i for m in batch for i in (m.sender, m.body.to_agent_id)})
        parties = await self._communications.parties(wanted)
        answered_ids = list({m.body.reply_to for m in batch if m.body.reply_to})
        answered = await self._communications.many(answered_ids) if answered_ids else {}
        over = await self._over_quota(
            {p.project_id for p in parties.values() if p.project_id is not None}
        )
        writes = []
        for message in batch:
            sender = parties.get(message.sender)
            if sender is None:
                log.warning(
                    "dropped message %s: its sender %s does not exist",
                    message.body.communication_id,
                    message.sender,
                )
                continue
            if sender.project_id in over:
                refused = rules.refuse(
                    message.body.as_send(message.sender),
                    message.body.communication_id,
                    sender,
                    over[sender.project_id],
                    message.at,
                )
                writes.append(self._write_of(refused, sender))
                continue
            outgoing = rules.decide_direct(
                message.body.as_send(message.sender),
                message.body.communication_id,
                sender,
                parties.get(message.body.to_agent_id),
                answered=answered.get(message.body.reply_to) if message.body.reply_to else None,
                max_content_bytes=self._limits.max_content_bytes,
                now=message.at,
            )
            writes.append(self._write_of(outgoing, sender))
        return writes

    def _write_of(self, outgoing: rules.Outgoing, sender: AgentRef) -> SendWrite:
        sent = outgoing.reply.status is CommunicationStatus.SENT
        return SendWrite.of(
            outgoing,
            sender=sender.agent_id,
            max_backlog=self._limits.max_sender_backlog,
            checked=sent,
            in_outbox=False,
        )

    async def _write(self, writes: list[SendWrite]) -> list[bool | ValidationFailed]:
        """Each write through the send writer (they share its next statement): written or
        not, or the ValidationFailed of a message PostgreSQL cannot hold. Anything else
        raises (Unavailable): the batch comes again."""
        outcomes = await asyncio.gather(
            *(self._communications.insert(w) for w in writes), return_exceptions=True
        )
        results: list[bool | ValidationFailed] = []
        for outcome in outcomes:
            if isinstance(outcome, ValidationFailed):
                results.append(outcome)
            elif isinstance(outcome, Unavailable):
                raise outcome
            elif isinstance(outcome, BaseException):
                raise Unavailable(f"recording sent messages failed: {outcome!r}") from outcome
            else:
                results.append(bool(outcome))
        return results

    async def _record_unstorable(
        self, batch: list[Outgoing], failures: list[tuple[SendWrite, ValidationFailed]]
    ) -> None:
        """Record FAILED, without their content, the messages PostgreSQL cannot hold (a NUL
        character in a string): the sender learns why, and the batch is not stuck on them."""
        bodies = {m.body.communication_id: m for m in batch}
        parties = await self._communications.parties(list({w.sender for w, _ in failures}))
        writes = []
        for write, failure in failures:
            incoming = bodies[write.messages[0].communication_id]
            sender = parties.get(write.sender)
            if sender is None:
                continue
            request = incoming.body.as_send(incoming.sender).model_copy(update={"content": None})
            outgoing = rules.refuse(
                request, incoming.body.communication_id, sender, str(failure), incoming.at
            )
            writes.append(self._write_of(outgoing, sender))
        for write, outcome in zip(writes, await self._write(writes), strict=True):
            if isinstance(outcome, ValidationFailed):
                log.warning("dropped message %s: %s", write.messages[0].communication_id, outcome)

    async def _redecide(
        self, batch: list[Outgoing], refused: list[SendWrite]
    ) -> dict[UUID, Communication]:
        """The checked writes the statement did not write: recorded already (a redelivered
        batch: as recorded), or a party ended meanwhile, or the sender's backlog is full:
        those are recorded FAILED now. Returns the first kind."""
        ids = [w.messages[0].communication_id for w in refused]
        recorded = await self._communications.many(ids)
        again = [w for w in refused if w.messages[0].communication_id not in recorded]
        if not again:
            return recorded
        bodies = {m.body.communication_id: m for m in batch}
        parties = await self._communications.parties(
            list({i for w in again for i in bodies[w.messages[0].communication_id].parties})
        )
        failed = []
        for write in again:
            message = write.messages[0]
            incoming = bodies[message.communication_id]
            sender = parties.get(message.from_agent_id)
            if sender is None:
                continue  # deleted meanwhile: nobody to tell
            reason = _ended(sender, parties.get(incoming.body.to_agent_id)) or BACKLOG_FULL
            outgoing = rules.refuse(
                incoming.body.as_send(incoming.sender),
                message.communication_id,
                sender,
                reason,
                incoming.at,
            )
            failed.append(self._write_of(outgoing, sender))
        await self._write(failed)
        return recorded


def _ended(sender: AgentRef, recipient: AgentRef | None) -> str | None:
    """Why a message between these two can no longer go out, if a party ended."""
    if sender.status is AgentStatus.TERMINATED:
        return f"sender {sender.agent_id} is TERMINATED"
    if recipient is None:
        return rules.RECIPIENT_DELETED
    if recipient.status is AgentStatus.TERMINATED:
        return rules.RECIPIENT_TERMINATED
    return None
