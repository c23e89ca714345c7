"""The agent side of messaging: receive an agent's messages, acknowledge them, answer them.

    async with Inbox(nc, agent_id) as inbox:
        async for message in inbox:
            print(message.content)
            await message.reply({"ok": True})
            await message.ack()

An :class:`Inbox` pulls from the agent's durable consumer ``inbox-<agent_id>``, which the
service creates at initialization and only lets deliver while the agent is ACTIVE. ``ack()``
records DELIVERED through ``communication.delivered`` and then acknowledges the JetStream
message, so the log and the stream agree; a message that is not acknowledged within the ack
wait (the inbox extends it while it holds the message) is delivered again, up to the service's
maximum, after which it is FAILED. Delivery is at least once: a handler that crashes after its
work but before ``ack()`` sees the message again, so make handlers idempotent, e.g. by
``communication_id``.
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
from pydantic import JsonValue

from agent_orchestrator.client.errors import QueueClosed, RequestFailed, ServiceUnavailable
from agent_orchestrator.client.pull_queue import PullQueue
from agent_orchestrator.client.requests import OrchestratorClient
from agent_orchestrator.contracts.communications import Communication, CommunicationStatus
from agent_orchestrator.contracts.subjects import MESSAGES_STREAM, inbox_consumer

log = logging.getLogger(__name__)

#: How long ``ack`` keeps trying to record a delivery while the service is unavailable.
ACK_RETRY_S = 30.0


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

        While the service is unavailable (restarting, its database down) the record is
        retried for up to ``ACK_RETRY_S``, the message held meanwhile; after that it is given
        back, to be delivered again, and ServiceUnavailable is raised. Raises RequestFailed
        (``conflict``) when the message had already ended FAILED or EXPIRED before this ack;
        it is removed from the inbox all the same.
        """
        if self.settled:
            return self.communication
        client = self._inbox.client
        deadline = time.monotonic() + ACK_RETRY_S
        pause = 0.1
        while True:
            try:
                self.communication = await client.mark_delivered(
                    self.communication_id, ack_follows=True
                )
                break
            except ServiceUnavailable:
                if time.monotonic() + pause > deadline:
                    await self._settle(ack=False, delay=pause)
                    raise
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)
            except RequestFailed:
                await self._settle(ack=True)
                raise
        await self._settle(ack=True)
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
        api_prefix: str | None = None,
    ) -> None:
        """``batch``: messages fetched at a time; ``poll_s``: how long one fetch waits;
        ``api_prefix``: the JetStream API's (see :class:`PullQueue`)."""
        self.agent_id = UUID(str(agent_id))
        self.client = client or OrchestratorClient(nc)
        self.queue = PullQueue(
            nc,
            MESSAGES_STREAM,
            inbox_consumer(str(self.agent_id)),
            batch=batch,
            poll_s=poll_s,
            api_prefix=api_prefix,
        )
        self._ready: list[Msg] = []
        self._stopped = False

    def stop(self) -> None:
        """Make ``run``, iteration and ``next`` return (within the poll time): stopping by a
        flag, as a cancelled request can be lost in a reply arriving at the same moment."""
        self._stopped = True

    async def open(self, *, timeout: float = 30.0) -> "Inbox":
        """Bind to the agent's inbox, waiting up to ``timeout`` for the agent to be
        initialized (TimeoutError if it is not)."""
        await self.queue.open(timeout=timeout)
        return self

    async def close(self) -> None:
        """Stop receiving; messages not acknowledged are delivered again later."""
        await self.queue.close()

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
        terminated."""
        try:
            async with asyncio.timeout(timeout):
                while not self._stopped:
                    while self._ready:
                        message = await self._accept(self._ready.pop(0))
                        if message is not None:
                            return message
                    self._ready.extend(await self.queue.fetch())
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
        """Hand every message to ``handler``, acknowledging it when the handler returns
        (unless it acked or nak'ed itself) and giving it back when the handler raises.
        Returns when the agent is terminated, or the inbox is stopped."""
        async for message in self:
            try:
                await handler(message)
            except Exception:
                log.exception("handler failed on %s", message.communication_id)
                if not message.settled:
                    await message.nak(delay=min(30.0, float(message.deliveries)))
                continue
            if not message.settled:
                try:
                    await message.ack()
                except RequestFailed as exc:
                    log.warning("ack of %s refused: %s", message.communication_id, exc)

    async def _accept(self, msg: Msg) -> InboxMessage | None:
        """The message to hand out, or None for one that must not reach the handler."""
        communication = Communication.model_validate_json(msg.data)
        message = InboxMessage(self, msg, communication)
        expires_at = communication.expires_at
        if expires_at is not None and expires_at <= datetime.now(UTC):
            await message._settle(ack=True)  # the service marks it EXPIRED
            return None
        if message.deliveries > 1:
            # Delivered before: skip it if the log says it was delivered (or ended) since.
            try:
                current = await self.client.get_communication(message.communication_id)
            except RequestFailed:
                return message
            if current.status is not CommunicationStatus.SENT:
                await message._settle(ack=True)
                return None
        return message
