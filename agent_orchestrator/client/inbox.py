"""The agent side of messaging: receive an agent's messages, acknowledge them, answer them.

    async with Inbox(nc, agent_id) as inbox:
        async for message in inbox:
            print(message.content)
            await message.reply({"ok": True})
            await message.ack()

An :class:`Inbox` creates the agent's inbox consumer ``inbox-<agent_id>`` when it opens and
deletes it when it closes (see ``client.pull_queue``). It fetches only while the agent is
ACTIVE (it follows the agent's status events), and before a fetched batch reaches the program
it asks the service which of its messages may (``communication.handover``: none unless the
agent is ACTIVE then; the others go back to the stream, or are dropped if they ended).
``ack()`` records DELIVERED, batched with other confirmations and delivery checks in one
handover request, and then acknowledges the JetStream message, so the log and the stream
agree; a message that is not acknowledged within the ack wait (the inbox extends it while it
holds the message) is delivered again, up to the service's maximum, after which it is FAILED.
Delivery is at least once: a handler that crashes after its work but before ``ack()`` sees the
message again, so make handlers idempotent, e.g. by ``communication_id``.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from uuid import UUID

import nats.aio.client
from nats.aio.msg import Msg
from pydantic import JsonValue, ValidationError

from agent_orchestrator.client.agent_status import AgentStatusWatch
from agent_orchestrator.client.errors import QueueClosed, RequestFailed, ServiceUnavailable
from agent_orchestrator.client.handover import HandOverBatcher
from agent_orchestrator.client.pull_queue import PullQueue
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.communications import Communication, CommunicationStatus
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.subjects import MESSAGES_STREAM, inbox_consumer, inbox_subject

log = logging.getLogger(__name__)

#: How long ``ack`` keeps trying to record a delivery while the service is unavailable.
ACK_RETRY_S = 30.0
#: When a fetched message may not be handed over (the agent is not ACTIVE, the service is
#: unreachable), it goes back to the stream for this long.
GIVE_BACK_S = 1.0


class InboxMessage:
    """One received message: its :class:`Communication`, and what to do with it."""

    def __init__(self, inbox: "Inbox", msg: Msg, communication: Communication) -> None:
        self._inbox = inbox
        self._msg = msg
        self.communication = communication
        self.settled = False

    @property
    def communication_id(self) -> UUID:
        """The message's id (also its ``Nats-Msg-Id``)."""
        return self.communication.communication_id

    @property
    def from_agent_id(self) -> UUID:
        """Who sent it."""
        return self.communication.from_agent_id

    @property
    def type(self) -> str:
        """The sender's message type."""
        return self.communication.type

    @property
    def content(self) -> JsonValue:
        """The sender's JSON content."""
        return self.communication.content

    @property
    def deliveries(self) -> int:
        """How often it has been delivered, this time included."""
        return self._msg.metadata.num_delivered or 1

    async def ack(self) -> Communication:
        """Record it DELIVERED, then acknowledge it: it is never delivered again.

        The record goes in the inbox's next handover request, with other confirmations.
        While the service is unavailable (restarting, its database down) the record is
        retried for up to ``ACK_RETRY_S``, the message held meanwhile; after that it is given
        back, to be delivered again, and ServiceUnavailable is raised. Raises RequestFailed
        (``conflict``) when the message had already ended FAILED or EXPIRED before this ack;
        it is removed from the inbox all the same.
        """
        if self.settled:
            return self.communication
        deadline = time.monotonic() + ACK_RETRY_S
        pause = 0.1
        while True:
            try:
                outcome = await self._inbox.handover.confirm(self.communication_id)
                break
            except ServiceUnavailable:
                if time.monotonic() + pause > deadline:
                    await self._settle(ack=False, delay=pause)
                    raise
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
        await self._settle(ack=True)
        if outcome is None:
            return self.communication
        self.communication = self.communication.model_copy(
            update={
                "status": outcome.status,
                "updated_at": outcome.updated_at,
                "delivered_at": outcome.delivered_at,
            }
        )
        if outcome.status is not CommunicationStatus.DELIVERED:
            raise RequestFailed(
                ErrorCode.CONFLICT,
                f"communication {self.communication_id} is {outcome.status}; it can no "
                "longer be delivered",
                {"status": outcome.status},
            )
        return self.communication

    async def nak(self, delay: float | None = None) -> None:
        """Give it back, to be delivered again (after ``delay`` seconds); each delivery
        counts towards the maximum, after which it is FAILED."""
        await self._settle(ack=False, delay=delay)

    async def reply(
        self, content: JsonValue = None, *, type: str = "response", ttl_s: int | None = None
    ) -> Communication:
        """Answer the sender: a message with ``reply_to`` set to this one and the same
        ``correlation_id``."""
        return await self._inbox.client.send(
            self._inbox.agent_id,
            self.from_agent_id,
            content=content,
            type=type,
            reply_to=self.communication_id,
            correlation_id=self.communication.correlation_id,
            ttl_s=ttl_s,
        )

    async def _settle(self, *, ack: bool, delay: float | None = None) -> None:
        self.settled = True
        await self._inbox.queue.settle(self._msg, ack=ack, delay=delay)


class Inbox:
    """Receives the messages of one agent (see the module docstring)."""

    def __init__(
        self,
        nc: nats.aio.client.Client,
        agent_id: UUID | str,
        *,
        client: OrchestratorClient | None = None,
        batch: int = 20,
        poll_s: float = 1.0,
        watch: AgentStatusWatch | None = None,
        api_prefix: str | None = None,
    ) -> None:
        """``batch``: messages fetched at a time; ``poll_s``: how long one fetch waits;
        ``watch``: the agent's status as its worker follows it (else the inbox follows it);
        ``api_prefix``: the JetStream API's (see :class:`PullQueue`)."""
        self.agent_id = UUID(str(agent_id))
        self.client = client or OrchestratorClient(nc)
        self.queue = PullQueue(
            nc,
            MESSAGES_STREAM,
            inbox_consumer(str(self.agent_id)),
            inbox_subject(str(self.agent_id)),
            batch=batch,
            poll_s=poll_s,
            api_prefix=api_prefix,
        )
        self.handover = HandOverBatcher(self.client, self.agent_id)
        self._own_watch = watch is None
        self.watch = watch or AgentStatusWatch(nc, self.agent_id, self.client)
        self._poll_s = poll_s
        self._ready: list[InboxMessage] = []
        self._acking: set[asyncio.Task[Any]] = set()
        self._refilling: asyncio.Task[None] | None = None
        self._stopped = False

    def stop(self) -> None:
        """Make ``run``, iteration and ``next`` return (within the poll time): stopping by a
        flag, as a cancelled request can be lost in a reply arriving at the same moment."""
        self._stopped = True

    async def open(self, *, timeout: float = 30.0) -> "Inbox":
        """Follow the agent's status and create its inbox consumer (TimeoutError if NATS and
        the service do not answer within ``timeout``)."""
        async with asyncio.timeout(timeout):
            if self._own_watch:
                await self.watch.open()
            await self.queue.open()
        return self

    async def close(self) -> None:
        """Stop receiving and remove the consumer; messages not acknowledged are delivered
        again later."""
        waiting = [*self._acking, *([self._refilling] if self._refilling else [])]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        for message in self._ready:
            await message.nak()
        self._ready.clear()
        await self.queue.close()
        if self._own_watch:
            await self.watch.close()

    async def __aenter__(self) -> "Inbox":
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def next(self, timeout: float | None = None) -> InboxMessage | None:
        """The next message, or None if none came within ``timeout`` seconds (None: wait
        as long as it takes) or the inbox was stopped. Raises QueueClosed once the agent is
        terminated or deleted."""
        try:
            async with asyncio.timeout(timeout):
                while not self._stopped:
                    if self._ready:
                        return self._ready.pop(0)
                    if self.watch.ended:
                        raise QueueClosed(f"agent {self.agent_id} has ended")
                    if not self.watch.active:
                        await self.watch.wait_active(self._poll_s)
                        continue
                    # Shielded: a timeout must not lose messages between fetch and handover.
                    if self._refilling is None or self._refilling.done():
                        self._refilling = asyncio.create_task(self._refill())
                    await asyncio.shield(self._refilling)
        except TimeoutError:
            pass
        return None

    def __aiter__(self) -> AsyncIterator[InboxMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[InboxMessage]:
        while not self._stopped:
            try:
                message = await self.next()
            except QueueClosed:
                return
            if message is not None:
                yield message

    async def run(self, handler: Callable[[InboxMessage], Awaitable[Any]]) -> None:
        """Hand every message to ``handler``, in order, acknowledging it when the handler
        returns (unless it acked or nak'ed itself; the confirmations of consecutive messages
        go out together) and giving it back when the handler raises. Returns when the agent
        is terminated, or the inbox is stopped."""
        async for message in self:
            try:
                await handler(message)
            except Exception:
                log.exception("handler failed on %s", message.communication_id)
                if not message.settled:
                    await message.nak(delay=min(30.0, float(message.deliveries)))
                continue
            if not message.settled:
                acking = asyncio.create_task(self._ack(message))
                self._acking.add(acking)
                acking.add_done_callback(self._acking.discard)
        if self._acking:
            await asyncio.gather(*self._acking, return_exceptions=True)

    async def _refill(self) -> None:
        msgs = await self.queue.fetch()
        if msgs:
            self._ready.extend(await self._hand_over(msgs))

    @staticmethod
    async def _ack(message: InboxMessage) -> None:
        try:
            await message.ack()
        except RequestFailed as exc:
            log.warning("ack of %s refused: %s", message.communication_id, exc)

    async def _hand_over(self, msgs: list[Msg]) -> list[InboxMessage]:
        """The fetched messages the service lets the program have; the others are dropped
        (ended) or given back (the agent is not ACTIVE, the service did not answer)."""
        now = datetime.now(UTC)
        offered: list[InboxMessage] = []
        for msg in msgs:
            try:
                communication = Communication.model_validate_json(msg.data)
            except ValidationError:
                log.warning("dropping a malformed inbox message: %r", msg.data[:200])
                await self.queue.settle(msg, ack=True)
                continue
            message = InboxMessage(self, msg, communication)
            expires_at = communication.expires_at
            if expires_at is not None and expires_at <= now:
                await message._settle(ack=True)  # the service marks it EXPIRED
                continue
            offered.append(message)
        if not offered:
            return []
        try:
            reply = await self.handover.offer([m.communication_id for m in offered])
        except ServiceUnavailable as exc:
            log.warning("delivery check of %s failed: %s", self.agent_id, exc.message)
            for message in offered:
                await message.nak(delay=GIVE_BACK_S)
            return []
        except RequestFailed as exc:
            if exc.code is not ErrorCode.NOT_FOUND:
                raise
            self.watch.learn(None, self.watch.version + 1)  # deleted: nothing more to take
            for message in offered:
                await message._settle(ack=True)
            return []
        self.watch.learn(reply.status, reply.version)
        accepted, ended = set(reply.accepted), set(reply.ended)
        handed: list[InboxMessage] = []
        for message in offered:
            if message.communication_id in accepted:
                handed.append(message)
            elif message.communication_id in ended:
                await message._settle(ack=True)
            else:
                await message.nak(delay=GIVE_BACK_S)
        return handed
