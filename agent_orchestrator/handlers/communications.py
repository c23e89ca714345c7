"""agent.send / communication.delivered / communication.get / agent.communications."""

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationPage,
    CommunicationStatus,
    GetCommunication,
    ListCommunications,
    MarkDelivered,
    SendMessage,
)
from agent_orchestrator.contracts.deliveries import DeliveryOutcome, HandOver, HandOverReply
from agent_orchestrator.domain import communications as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.agents import not_found as agent_not_found
from agent_orchestrator.domain.cursor import decode_cursor, split_page
from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.handlers.retry import retry_on_conflict
from agent_orchestrator.storage.agent_queues import AgentQueue
from agent_orchestrator.storage.agents import AgentRepository
from agent_orchestrator.storage.communications import CommunicationRepository
from agent_orchestrator.storage.send_writes import SendWrite

MAX_ATTEMPTS = 4
BATCH = 500


@dataclass(frozen=True)
class MessageLimits:
    """Limits that keep one agent from flooding the others."""

    max_content_bytes: int
    max_sender_backlog: int


async def expire_messages(communications: CommunicationRepository) -> int:
    """End every SENT message whose time to live has passed (a sweep)."""
    count = 0
    while due := await communications.due_to_expire(datetime.now(UTC), limit=BATCH):
        now = datetime.now(UTC)
        ended = [
            rules.end(d.message, CommunicationStatus.EXPIRED, rules.TTL_EXPIRED, now) for d in due
        ]
        events = [rules.outcome_event(m, d.recipient, now) for m, d in zip(ended, due, strict=True)]
        count += len(await communications.finish(ended, events))
        if len(due) < BATCH:
            break
    return count


class CommunicationCommands:
    """agent.send / communication.delivered / communication.get / agent.communications."""

    def __init__(
        self,
        *,
        agents: AgentRepository,
        communications: CommunicationRepository,
        limits: MessageLimits,
        inbox: AgentQueue,
    ) -> None:
        """``inbox``: where a committed send's messages are published at once (the outbox
        relay covers a failure)."""
        self._agents = agents
        self._communications = communications
        self._limits = limits
        self._inbox = inbox

    async def parties(self, body: SendMessage) -> tuple[AgentRef, list[AgentRef]]:
        """The sender and the recipients (for a broadcast: the project's other ACTIVE agents)."""
        wanted = [body.from_agent_id] + ([body.to_agent_id] if body.to_agent_id else [])
        found = await self._communications.parties(wanted)
        for agent_id in wanted:
            if agent_id not in found:
                raise agent_not_found(agent_id)
        sender = found[body.from_agent_id]
        if body.to_agent_id is not None:
            return sender, [found[body.to_agent_id]]
        return sender, await self._communications.active_in_project(
            sender.project_id, besides=sender.agent_id
        )

    @command(
        subjects.AGENT_SEND,
        SendMessage,
        Communication,
        mutating=True,
        description="Send a message to an agent (to_agent_id) or to every ACTIVE agent of the "
        "sender's project (broadcast). It waits on agent.inbox.<to_agent_id> until the "
        "recipient is ACTIVE and acknowledges it.",
    )
    async def send(self, body: SendMessage, ctx: CommandContext) -> Communication:
        rules.check_content_size(body.content, self._limits.max_content_bytes)
        answered = await self._communications.get(body.reply_to) if body.reply_to else None

        async def attempt() -> Communication | None:
            sender, recipients = await self.parties(body)
            outgoing = rules.compose(body, sender, recipients, answered=answered, now=ctx.now)
            if not outgoing.messages:
                return outgoing.reply  # a broadcast nobody is there to hear
            write = SendWrite.of(
                outgoing,
                sender=sender.agent_id,
                max_backlog=self._limits.max_sender_backlog,
                idempotency=ctx.idempotency_for(outgoing.reply),
            )
            if await self._communications.insert(write):
                await self._inbox.publish_committed(write.inbox)
                return outgoing.reply
            # Nothing stored: the backlog is full, or a party was terminated meanwhile (the
            # next round says which).
            await self._check_backlog(sender.agent_id, adding=len(outgoing.messages))
            return None

        return await retry_on_conflict(
            MAX_ATTEMPTS, attempt, what=f"message from agent {body.from_agent_id}"
        )

    async def _check_backlog(self, sender: UUID, *, adding: int) -> None:
        """Unavailable when ``adding`` more messages would overfill the sender's backlog."""
        limit = self._limits.max_sender_backlog
        backlog = await self._communications.backlog(sender, limit=limit)
        if backlog + adding > limit:
            raise Unavailable(
                f"agent {sender} has {backlog} undelivered messages; the limit is "
                f"{limit}. Retry once recipients have caught up.",
                details={"reason": "sender_backlog_full", "backlog": backlog, "limit": limit},
            )

    @command(
        subjects.COMMUNICATION_DELIVERED,
        MarkDelivered,
        Communication,
        mutating=True,
        description="Confirm delivery of a message (idempotent); it leaves the recipient's "
        "inbox and is not delivered again.",
    )
    async def mark_delivered(self, body: MarkDelivered, ctx: CommandContext) -> Communication:
        async def attempt() -> Communication | None:
            found = await self._communications.addressed(body.communication_id)
            delivered = rules.deliver(found.message, ctx.now)
            if delivered is None:
                return found.message
            event = rules.outcome_event(delivered, found.recipient, ctx.now)
            if await self._communications.finish(
                [delivered],
                [event],
                left_stream=body.ack_follows,
                idempotency=ctx.idempotency_for(delivered),
            ):
                return delivered
            return None  # it left SENT meanwhile (delivered, failed or expired): decide again

        return await retry_on_conflict(
            MAX_ATTEMPTS, attempt, what=f"communication {body.communication_id}"
        )

    @command(
        subjects.COMMUNICATION_HANDOVER,
        HandOver,
        HandOverReply,
        mutating=True,
        description="Worker: in one request, which fetched inbox messages may reach the "
        "agent's program (those still SENT, while the agent is ACTIVE) and which ones it has "
        "finished with (recorded DELIVERED in one statement; acknowledge them in JetStream "
        "after the reply).",
    )
    async def hand_over(self, body: HandOver, ctx: CommandContext) -> HandOverReply:
        wanted = list(dict.fromkeys([*body.offered, *body.delivered]))
        agent, found = await self._communications.recipient_with(body.agent_id, wanted)
        if agent is None:
            raise agent_not_found(body.agent_id)  # deleted: the worker stops
        confirmed = await self._confirm(body, agent, found, ctx)
        active = agent.status is AgentStatus.ACTIVE
        accepted, ended = [], []
        for communication_id in body.offered:
            message = found.get(communication_id)
            if message is None or message.status is not CommunicationStatus.SENT:
                ended.append(communication_id)
            elif active:
                accepted.append(communication_id)
        return HandOverReply(
            agent_id=body.agent_id,
            status=agent.status,
            version=agent.version,
            accepted=accepted,
            ended=ended,
            confirmed=confirmed,
        )

    async def _confirm(
        self,
        body: HandOver,
        agent: AgentRef,
        found: dict[UUID, Communication],
        ctx: CommandContext,
    ) -> list[DeliveryOutcome]:
        """Record the ``delivered`` ones DELIVERED in one statement; each one's outcome."""
        recipient = agent
        delivering = [
            delivered
            for communication_id in dict.fromkeys(body.delivered)
            if (m := found.get(communication_id)) is not None
            and m.status is CommunicationStatus.SENT
            and (delivered := rules.deliver(m, ctx.now)) is not None
        ]
        changed: set[UUID] = set()
        if delivering:
            events = [rules.outcome_event(m, recipient, ctx.now) for m in delivering]
            changed = await self._communications.finish(delivering, events, left_stream=True)
            for message in delivering:
                if message.communication_id in changed:
                    found[message.communication_id] = message
        if len(changed) < len(delivering):  # another outcome came first: read what it was
            raced = [m.communication_id for m in delivering if m.communication_id not in changed]
            found.update(await self._communications.of_recipient(body.agent_id, raced))
        return [
            DeliveryOutcome(
                communication_id=m.communication_id,
                status=m.status,
                updated_at=m.updated_at,
                delivered_at=m.delivered_at,
            )
            for communication_id in dict.fromkeys(body.delivered)
            if (m := found.get(communication_id)) is not None
        ]

    @command(
        subjects.COMMUNICATION_GET,
        GetCommunication,
        Communication,
        mutating=False,
        description="Read a message and its delivery status (or a broadcast summary, by its id).",
    )
    async def get_communication(self, body: GetCommunication, ctx: CommandContext) -> Communication:
        message = await self._communications.find(body.communication_id)
        if message is not None:
            return message
        copies = await self._communications.broadcast_copies(body.communication_id)
        if copies:
            return rules.broadcast_summary(copies)
        raise rules.not_found(body.communication_id)

    @command(
        subjects.AGENT_COMMUNICATIONS,
        ListCommunications,
        CommunicationPage,
        mutating=False,
        description="An agent's messages, newest first: sent, received or both, by status.",
    )
    async def list_communications(
        self, body: ListCommunications, ctx: CommandContext
    ) -> CommunicationPage:
        before = decode_cursor(body.cursor, "before", UUID) if body.cursor else None
        fetched = await self._communications.page(
            body.agent_id,
            direction=body.direction,
            status=body.status,
            limit=body.limit + 1,
            before=before,
        )
        if not fetched and before is None:
            await self._agents.get(body.agent_id)  # not_found for an unknown agent
        items, next_cursor = split_page(
            fetched, body.limit, "before", lambda c: str(c.communication_id)
        )
        return CommunicationPage(items=items, next_cursor=next_cursor)
