"""A typed client of the command subjects, on a plain nats-py connection.

Every method is one NATS request whose body and reply are the contract's models; an error
reply raises :class:`RequestFailed` (see ``client.errors``).
"""

import asyncio
import json
from typing import Any, TypeVar
from uuid import UUID

import nats.aio.client
import nats.errors
from pydantic import BaseModel, JsonValue

from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    CreateAgent,
    GetAgent,
    LifecycleCommand,
)
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationPage,
    CommunicationStatus,
    Direction,
    GetCommunication,
    ListCommunications,
    MarkDelivered,
    SendMessage,
)
from agent_orchestrator.contracts.errors import ErrorCode, ErrorReply

ReplyT = TypeVar("ReplyT", bound=BaseModel)


class OrchestratorClient:
    """Requests to agent-orchestrator over an open NATS connection."""

    def __init__(
        self, nc: nats.aio.client.Client, *, timeout: float = 5.0, actor: str | None = None
    ) -> None:
        """``actor`` is recorded as who made each change (the ``Actor`` header)."""
        self.nc = nc
        self.timeout = timeout
        self.actor = actor

    async def request(
        self,
        subject: str,
        body: BaseModel | dict[str, Any],
        reply: type[ReplyT],
        *,
        idempotency_key: str | None = None,
    ) -> ReplyT:
        """Send one command; the reply as ``reply``, or RequestFailed."""
        if isinstance(body, BaseModel):
            payload = body.model_dump_json(exclude_unset=True).encode()
        else:
            payload = json.dumps(body).encode()
        headers = {}
        if self.actor:
            headers[subjects.ACTOR_HEADER] = self.actor
        if idempotency_key:
            headers[subjects.IDEMPOTENCY_KEY_HEADER] = idempotency_key
        try:
            msg = await self.nc.request(
                subject, payload, timeout=self.timeout, headers=headers or None
            )
        except nats.errors.NoRespondersError as exc:
            raise ServiceUnavailable(
                ErrorCode.UNAVAILABLE, f"no agent-orchestrator answers on {subject}"
            ) from exc
        except (nats.errors.TimeoutError, TimeoutError) as exc:
            raise ServiceUnavailable(
                ErrorCode.UNAVAILABLE, f"no answer on {subject} within {self.timeout} s"
            ) from exc
        data = json.loads(msg.data or b"{}")
        if isinstance(data, dict) and set(data) == {"error"}:
            raise RequestFailed.from_body(ErrorReply.model_validate(data).error)
        return reply.model_validate(data)

    # Agents.

    async def create_agent(self, request: CreateAgent) -> Agent:
        """agent.create."""
        return await self.request(subjects.AGENT_CREATE, request, Agent)

    async def get_agent(self, agent_id: UUID | str) -> Agent:
        """agent.get."""
        return await self.request(subjects.AGENT_GET, GetAgent(agent_id=UUID(str(agent_id))), Agent)

    async def change(self, subject: str, agent_id: UUID | str, reason: str | None = None) -> Agent:
        """A lifecycle command: agent.initialize, .activate, .pause or .terminate."""
        body = LifecycleCommand(agent_id=UUID(str(agent_id)), reason=reason)
        return await self.request(subject, body, Agent)

    async def wait_for_status(
        self, agent_id: UUID | str, status: AgentStatus, *, timeout: float = 30.0
    ) -> Agent:
        """Poll agent.get until the agent is in ``status``; TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while True:
                agent = await self.get_agent(agent_id)
                if agent.status is status:
                    return agent
                await asyncio.sleep(0.05)

    async def start_agent(self, agent_id: UUID | str) -> Agent:
        """Initialize, wait for READY, activate: an agent ready to receive."""
        await self.change(subjects.AGENT_INITIALIZE, agent_id)
        await self.wait_for_status(agent_id, AgentStatus.READY)
        return await self.change(subjects.AGENT_ACTIVATE, agent_id)

    # Communications.

    async def send(
        self,
        from_agent_id: UUID | str,
        to_agent_id: UUID | str | None = None,
        *,
        content: JsonValue = None,
        type: str = "message",
        broadcast: bool = False,
        correlation_id: str | None = None,
        reply_to: UUID | str | None = None,
        ttl_s: int | None = None,
        idempotency_key: str | None = None,
    ) -> Communication:
        """agent.send: to one agent, or ``broadcast=True`` to every ACTIVE one of the project."""
        body = SendMessage(
            from_agent_id=UUID(str(from_agent_id)),
            to_agent_id=UUID(str(to_agent_id)) if to_agent_id else None,
            broadcast=broadcast,
            type=type,
            content=content,
            correlation_id=correlation_id,
            reply_to=UUID(str(reply_to)) if reply_to else None,
            ttl_s=ttl_s,
        )
        return await self.request(
            subjects.AGENT_SEND, body, Communication, idempotency_key=idempotency_key
        )

    async def mark_delivered(
        self, communication_id: UUID | str, *, ack_follows: bool = False
    ) -> Communication:
        """communication.delivered (idempotent); ``ack_follows`` if the caller acknowledges
        the inbox message in JetStream itself right after."""
        body = MarkDelivered(communication_id=UUID(str(communication_id)), ack_follows=ack_follows)
        return await self.request(subjects.COMMUNICATION_DELIVERED, body, Communication)

    async def get_communication(self, communication_id: UUID | str) -> Communication:
        """communication.get."""
        body = GetCommunication(communication_id=UUID(str(communication_id)))
        return await self.request(subjects.COMMUNICATION_GET, body, Communication)

    async def communications(
        self,
        agent_id: UUID | str,
        *,
        direction: Direction = Direction.BOTH,
        status: CommunicationStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> CommunicationPage:
        """agent.communications: one page, newest first."""
        body = ListCommunications(
            agent_id=UUID(str(agent_id)),
            direction=direction,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return await self.request(subjects.AGENT_COMMUNICATIONS, body, CommunicationPage)
