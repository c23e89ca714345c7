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
import uuid_utils
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
from agent_orchestrator.contracts.checkpoints import Checkpoint, CreateCheckpoint
from agent_orchestrator.contracts.communications import (
    Communication,
    CommunicationPage,
    CommunicationStatus,
    Direction,
    GetCommunication,
    ListCommunications,
    MarkDelivered,
    OutgoingMessage,
    SendMessage,
)
from agent_orchestrator.contracts.deliveries import HandOver, HandOverReply
from agent_orchestrator.contracts.errors import ErrorCode, ErrorReply
from agent_orchestrator.contracts.limits import max_payload_refusal
from agent_orchestrator.contracts.state import AgentState, GetState, StateMode, UpdateState
from agent_orchestrator.contracts.tasks import (
    CancelTask,
    CompleteTask,
    ExecuteTask,
    FailTask,
    GetTask,
    ListTasks,
    ProvideInput,
    ReportProgress,
    RequestInput,
    StartTask,
    Task,
    TaskPage,
    TaskStatus,
)

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
        self.js = nc.jetstream()
        """Publishes to AGENT_OUTGOING (no JetStream API call: a publish and its PubAck)."""

    async def request(
        self,
        subject: str,
        body: BaseModel | dict[str, Any],
        reply: type[ReplyT],
        *,
        idempotency_key: str | None = None,
    ) -> ReplyT:
        """Send one command; the reply as ``reply``, or RequestFailed.

        A body larger than the NATS server's ``max_payload`` is refused here, before sending,
        as ``payload_too_large`` (the service's own limits are checked by the service)."""
        if isinstance(body, BaseModel):
            payload = body.model_dump_json(exclude_unset=True).encode()
        else:
            payload = json.dumps(body, ensure_ascii=False).encode()
        headers = {}
        if self.actor:
            headers[subjects.ACTOR_HEADER] = self.actor
        if idempotency_key:
            headers[subjects.IDEMPOTENCY_KEY_HEADER] = idempotency_key
        try:
            msg = await self.nc.request(
                subject, payload, timeout=self.timeout, headers=headers or None
            )
        except nats.errors.MaxPayloadError as exc:
            raise RequestFailed(
                ErrorCode.PAYLOAD_TOO_LARGE,
                max_payload_refusal(f"the {subject} request", len(payload), self.nc.max_payload),
                {"size": len(payload), "limit": self.nc.max_payload, "setting": "max_payload"},
            ) from exc
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

    async def send_direct(
        self,
        from_agent_id: UUID | str,
        to_agent_id: UUID | str,
        *,
        content: JsonValue = None,
        type: str = "message",
        correlation_id: str | None = None,
        reply_to: UUID | str | None = None,
        ttl_s: int | None = None,
        communication_id: UUID | None = None,
    ) -> UUID:
        """Send without a request: publish to ``agent.outgoing.<from_agent_id>`` (stream
        AGENT_OUTGOING, ``Nats-Msg-Id`` = the communication_id made here, a UUIDv7) and wait
        for the stream's PubAck, the point from which the message is durable. Returns its
        communication_id at once. The service then records it (SENT, or FAILED with the
        reason agent.send would have given) and delivers it; ``communication.get`` shows it
        within moments (docs/data-plane.md). A retry with the same ``communication_id`` is
        one message."""
        body = OutgoingMessage(
            communication_id=communication_id or UUID(bytes=uuid_utils.uuid7().bytes),
            to_agent_id=UUID(str(to_agent_id)),
            type=type,
            content=content,
            correlation_id=correlation_id,
            reply_to=UUID(str(reply_to)) if reply_to else None,
            ttl_s=ttl_s,
        )
        subject = subjects.outgoing_subject(str(from_agent_id))
        payload = body.model_dump_json(exclude_defaults=True).encode()
        headers = {subjects.MSG_ID_HEADER: str(body.communication_id)}
        try:
            await self.js.publish(subject, payload, timeout=self.timeout, headers=headers)
        except nats.errors.MaxPayloadError as exc:
            raise RequestFailed(
                ErrorCode.PAYLOAD_TOO_LARGE,
                max_payload_refusal(f"the message on {subject}", len(payload), self.nc.max_payload),
                {"size": len(payload), "limit": self.nc.max_payload, "setting": "max_payload"},
            ) from exc
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError, TimeoutError) as exc:
            raise ServiceUnavailable(
                ErrorCode.UNAVAILABLE, f"stream {subjects.OUTGOING_STREAM} did not store it"
            ) from exc
        return body.communication_id

    async def mark_delivered(
        self, communication_id: UUID | str, *, ack_follows: bool = False
    ) -> Communication:
        """communication.delivered (idempotent); ``ack_follows`` if the caller acknowledges
        the inbox message in JetStream itself right after."""
        body = MarkDelivered(communication_id=UUID(str(communication_id)), ack_follows=ack_follows)
        return await self.request(subjects.COMMUNICATION_DELIVERED, body, Communication)

    async def hand_over(
        self,
        agent_id: UUID | str,
        *,
        offered: list[UUID] | None = None,
        delivered: list[UUID] | None = None,
    ) -> HandOverReply:
        """communication.handover: which ``offered`` inbox messages may reach the program;
        record the ``delivered`` ones DELIVERED (all in one request)."""
        body = HandOver(
            agent_id=UUID(str(agent_id)), offered=offered or [], delivered=delivered or []
        )
        return await self.request(subjects.COMMUNICATION_HANDOVER, body, HandOverReply)

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

    # State and checkpoints.

    async def get_state(self, agent_id: UUID | str) -> AgentState:
        """agent.state.get."""
        return await self.request(
            subjects.AGENT_STATE_GET, GetState(agent_id=UUID(str(agent_id))), AgentState
        )

    async def update_state(
        self,
        agent_id: UUID | str,
        state: dict[str, Any],
        *,
        mode: StateMode = StateMode.MERGE,
        expected_revision: int | None = None,
    ) -> AgentState:
        """agent.state.update: an RFC 7396 merge (default) or a replacement."""
        body = UpdateState(
            agent_id=UUID(str(agent_id)),
            state=state,
            mode=mode,
            expected_revision=expected_revision,
        )
        return await self.request(subjects.AGENT_STATE_UPDATE, body, AgentState)

    async def checkpoint(
        self, agent_id: UUID | str, *, label: str | None = None, recoverable: bool = True
    ) -> Checkpoint:
        """agent.checkpoint.create."""
        body = CreateCheckpoint(agent_id=UUID(str(agent_id)), label=label, recoverable=recoverable)
        return await self.request(subjects.AGENT_CHECKPOINT_CREATE, body, Checkpoint)

    # Tasks.

    async def execute(
        self,
        agent_id: UUID | str,
        input: JsonValue = None,
        *,
        parameters: dict[str, Any] | None = None,
        timeout_s: int | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """agent.execute: hand a task to an ACTIVE agent."""
        body = ExecuteTask(
            agent_id=UUID(str(agent_id)),
            input=input,
            parameters=parameters or {},
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )
        return await self.request(
            subjects.AGENT_EXECUTE, body, Task, idempotency_key=idempotency_key
        )

    async def get_task(self, task_id: UUID | str) -> Task:
        """task.get."""
        return await self.request(subjects.TASK_GET, GetTask(task_id=UUID(str(task_id))), Task)

    async def tasks(
        self,
        *,
        agent_id: UUID | str | None = None,
        project_id: str | None = None,
        status: TaskStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """task.list: one page, newest first (``status`` INPUT_REQUIRED: the inbox)."""
        body = ListTasks(
            agent_id=UUID(str(agent_id)) if agent_id else None,
            project_id=project_id,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return await self.request(subjects.TASK_LIST, body, TaskPage)

    async def cancel_task(self, task_id: UUID | str, reason: str | None = None) -> Task:
        """task.cancel."""
        body = CancelTask(task_id=UUID(str(task_id)), reason=reason)
        return await self.request(subjects.TASK_CANCEL, body, Task)

    async def wait_for_task(
        self, task_id: UUID | str, *statuses: TaskStatus, timeout: float = 30.0
    ) -> Task:
        """Poll task.get until the task is in one of ``statuses`` (default: any final one)."""
        wanted = set(statuses) or {
            TaskStatus.SUCCEEDED,
            TaskStatus.FAILED,
            TaskStatus.CANCELLED,
            TaskStatus.TIMED_OUT,
        }
        async with asyncio.timeout(timeout):
            while True:
                task = await self.get_task(task_id)
                if task.status in wanted:
                    return task
                await asyncio.sleep(0.05)

    async def start_task(self, task_id: UUID, attempt: int) -> Task:
        """task.start (worker): claim an attempt."""
        body = StartTask(task_id=task_id, attempt=attempt)
        return await self.request(subjects.TASK_START, body, Task)

    async def report_progress(
        self,
        task_id: UUID,
        attempt: int,
        progress: int | None = None,
        message: str | None = None,
    ) -> Task:
        """task.progress (worker); without progress or message, a heartbeat."""
        body = ReportProgress(task_id=task_id, attempt=attempt, progress=progress, message=message)
        return await self.request(subjects.TASK_PROGRESS, body, Task)

    async def complete_task(self, task_id: UUID, attempt: int, result: JsonValue) -> Task:
        """task.complete (worker)."""
        body = CompleteTask(task_id=task_id, attempt=attempt, result=result)
        return await self.request(subjects.TASK_COMPLETE, body, Task)

    async def fail_task(
        self,
        task_id: UUID,
        attempt: int,
        error: str,
        *,
        details: JsonValue = None,
        retry: bool = False,
    ) -> Task:
        """task.fail (worker)."""
        body = FailTask(task_id=task_id, attempt=attempt, error=error, details=details, retry=retry)
        return await self.request(subjects.TASK_FAIL, body, Task)

    async def request_input(self, request: RequestInput) -> Task:
        """task.request_input (worker): ask for input; the task is INPUT_REQUIRED."""
        return await self.request(subjects.TASK_REQUEST_INPUT, request, Task)

    async def provide_input(
        self,
        task_id: UUID | str,
        input: JsonValue,
        *,
        input_seq: int | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """task.provide_input: answer the question the task waits on (``input_seq``: the
        question answered; default the pending one)."""
        body = ProvideInput(task_id=UUID(str(task_id)), input=input, input_seq=input_seq)
        return await self.request(
            subjects.TASK_PROVIDE_INPUT, body, Task, idempotency_key=idempotency_key
        )
