"""The A2A operations of one agent, as NATS requests to the service.

The a2a-sdk's JSON-RPC and HTTP+JSON dispatchers parse requests, frame replies and SSE, and
map A2A errors; this :class:`RequestHandler` answers each operation with the service's
commands: SendMessage → ``agent.execute`` (or ``task.provide_input`` for a task waiting for
input), GetTask → ``task.get``, ListTasks → ``task.list``, CancelTask → ``task.cancel``, and
the streams from AGENT_EVENTS. It keeps nothing between calls.
"""

import uuid
from collections.abc import AsyncGenerator
from typing import Any
from uuid import UUID

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers.request_handler import RequestHandler
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    InternalError,
    InvalidParamsError,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskNotCancelableError,
    TaskNotFoundError,
    TaskPushNotificationConfig,
    UnsupportedOperationError,
)
from a2a.types import Task as A2ATask
from a2a.utils.constants import MAX_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import ExtendedAgentCardNotConfiguredError
from google.protobuf.json_format import MessageToDict
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.a2a.calls import ServiceCalls, ServiceError, a2a_error
from agent_orchestrator.bridge.a2a.convert import (
    ENDED,
    STATES,
    STATUSES,
    a2a_task,
    answer_input,
    message_input,
    plain,
)
from agent_orchestrator.bridge.a2a.push import a2a_config, config_body
from agent_orchestrator.bridge.a2a.task_events import TaskWatch, follow, wait_until_settled
from agent_orchestrator.bridge.nats_client import connection
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.push import PushConfig, PushConfigs
from agent_orchestrator.contracts.tasks import Task, TaskStatus

AGENT_KEY = "agent_id"
CALLS_KEY = "calls"
REQUEST_KEY = "http_request"
BLOCKING_WAIT_S = 600.0
"""Longest a blocking SendMessage waits for its task to end or ask (then: the task as it is);
it stops waiting sooner when its caller disconnects."""
DEFAULT_PAGE_SIZE = 50


def _agent(ctx: ServerCallContext) -> UUID:
    agent_id = ctx.state[AGENT_KEY]
    assert isinstance(agent_id, UUID)
    return agent_id


def _calls(ctx: ServerCallContext) -> ServiceCalls:
    calls = ctx.state[CALLS_KEY]
    assert isinstance(calls, ServiceCalls)
    return calls


async def _watch(ctx: ServerCallContext) -> TaskWatch:
    calls = _calls(ctx)
    try:
        nc = connection(calls.state)
    except ProblemError as exc:
        raise InternalError(exc.detail) from exc
    return await TaskWatch.open(nc, _agent(ctx))


async def _own_task(ctx: ServerCallContext, task_id: str) -> Task:
    """The task, if it is this agent's (TaskNotFound otherwise)."""
    task = await _calls(ctx).task(task_id)
    if task.agent_id != _agent(ctx):
        raise TaskNotFoundError(f"agent {_agent(ctx)} has no task {task_id}")
    return task


def _push_error(exc: ServiceError) -> Exception:
    details = exc.details if isinstance(exc.details, dict) else {}
    if exc.code == ErrorCode.NOT_FOUND and "config_id" in details:
        return InvalidParamsError(exc.message)
    return a2a_error(exc, task=True)


async def _push_call(ctx: ServerCallContext, subject: str, body: dict[str, Any]) -> Any:
    """One task.push_config request about a task of this agent."""
    await _own_task(ctx, body["task_id"])
    try:
        return await _calls(ctx).request(subject, body)
    except ServiceError as exc:
        raise _push_error(exc) from exc


async def _set_push_config(
    ctx: ServerCallContext, task_id: str, config: TaskPushNotificationConfig
) -> TaskPushNotificationConfig:
    try:
        data = await _calls(ctx).request(subjects.TASK_PUSH_SET, config_body(task_id, config))
    except ServiceError as exc:
        raise _push_error(exc) from exc
    return a2a_config(PushConfig.model_validate(data))


def _parameters(params: SendMessageRequest) -> dict[str, Any]:
    meta = plain(MessageToDict(params.metadata)) if params.HasField("metadata") else {}
    given = meta.get("parameters") if isinstance(meta, dict) else None
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise InvalidParamsError("metadata.parameters must be an object")
    return given


class OrchestratorRequestHandler(RequestHandler):
    """A2A for the orchestrator's agents; the agent and the caller come in the call's
    context (``state["agent_id"]``, ``state["calls"]``)."""

    async def _new_task(self, params: SendMessageRequest, ctx: ServerCallContext) -> Task:
        message, agent_id = params.message, _agent(ctx)
        body: dict[str, Any] = {
            "agent_id": str(agent_id),
            "input": message_input(message.parts),
            "parameters": _parameters(params),
            # Without a contextId a new conversation starts.
            "context_id": message.context_id or str(uuid.uuid4()),
        }
        try:
            return await _calls(ctx).execute(body)
        except ServiceError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                raise InvalidParamsError(exc.message) from exc
            if exc.code == ErrorCode.INVALID_TRANSITION:
                raise UnsupportedOperationError(
                    f"{exc.message}: only ACTIVE agents take messages"
                ) from exc
            raise a2a_error(exc) from exc

    async def _answer(self, task: Task, params: SendMessageRequest, ctx: ServerCallContext) -> Task:
        message = params.message
        if task.status in ENDED:
            raise UnsupportedOperationError(
                f"task {task.task_id} is {STATES[task.status]}: it takes no more messages"
            )
        if task.status is not TaskStatus.INPUT_REQUIRED or task.input_request is None:
            raise UnsupportedOperationError(
                f"task {task.task_id} is {task.status}: it takes a message only while "
                "INPUT_REQUIRED"
            )
        if message.context_id and task.context_id and message.context_id != task.context_id:
            raise InvalidParamsError(f"task {task.task_id} is of context {task.context_id}")
        body = {
            "task_id": str(task.task_id),
            "input": answer_input(message.parts),
            "input_seq": task.input_request.input_seq,
        }
        try:
            return await _calls(ctx).provide_input(body)
        except ServiceError as exc:
            raise a2a_error(exc, task=True) from exc

    async def _send(
        self, params: SendMessageRequest, ctx: ServerCallContext
    ) -> tuple[Task, TaskWatch]:
        """Start (or continue) the task of a message, watching its events from before."""
        if not params.HasField("message") or not params.message.parts:
            raise InvalidParamsError("a message with at least one part is required")
        watch = await _watch(ctx)
        try:
            if params.message.task_id:
                task = await _own_task(ctx, params.message.task_id)
                task = await self._answer(task, params, ctx)
            else:
                task = await self._new_task(params, ctx)
            if params.configuration.HasField("task_push_notification_config"):
                push = params.configuration.task_push_notification_config
                await _set_push_config(ctx, str(task.task_id), push)
        except BaseException:
            await watch.close()
            raise
        return task, watch

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> A2ATask | Message:
        """SendMessage: the task once it ended or asks (or at once with
        ``returnImmediately``)."""
        task, watch = await self._send(params, context)
        try:
            if not params.configuration.return_immediately:
                request = context.state.get(REQUEST_KEY)
                gone = request.is_disconnected if isinstance(request, HttpRequest) else None
                task = await wait_until_settled(watch, _calls(context), task, BLOCKING_WAIT_S, gone)
        finally:
            await watch.close()
        length = params.configuration.history_length
        return a2a_task(task, length if params.configuration.HasField("history_length") else None)

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """SendStreamingMessage: the task, then its changes until it ends or asks."""
        task, watch = await self._send(params, context)
        try:
            yield a2a_task(task)
            async for event in follow(watch, _calls(context), task, sent=task):
                yield event
        finally:
            await watch.close()

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event]:
        """SubscribeToTask: the task as it is now, then its changes (so a client whose
        stream dropped misses nothing); a task that ended is UnsupportedOperation."""
        watch = await _watch(context)
        try:
            task = await _own_task(context, params.id)
            if task.status in ENDED:
                raise UnsupportedOperationError(
                    f"task {task.task_id} is {STATES[task.status]}; there is nothing to follow"
                )
            yield a2a_task(task)
            async for event in follow(watch, _calls(context), task, sent=task):
                yield event
        finally:
            await watch.close()

    async def on_get_task(self, params: GetTaskRequest, context: ServerCallContext) -> A2ATask:
        """GetTask."""
        task = await _own_task(context, params.id)
        return a2a_task(task, params.history_length if params.HasField("history_length") else None)

    async def on_list_tasks(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """ListTasks: this agent's tasks, newest first, by state and context."""
        size = params.page_size if params.HasField("page_size") else DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_LIST_TASKS_PAGE_SIZE:
            raise InvalidParamsError(f"pageSize must be 1 to {MAX_LIST_TASKS_PAGE_SIZE}")
        if params.history_length < 0:
            raise InvalidParamsError("historyLength must not be negative")
        body: dict[str, Any] = {"agent_id": str(_agent(context)), "limit": size}
        if params.page_token:
            body["cursor"] = params.page_token
        if params.context_id:
            body["context_id"] = params.context_id
        if params.status:
            if params.status not in STATUSES:
                return ListTasksResponse(page_size=size)
            body["status"] = STATUSES[params.status]
        try:
            page = await _calls(context).tasks(body)
        except ServiceError as exc:
            raise a2a_error(exc) from exc
        items = page.items
        if params.HasField("status_timestamp_after"):
            after = (
                params.status_timestamp_after.ToDatetime(tzinfo=items[0].updated_at.tzinfo)
                if items
                else None
            )
            items = [t for t in items if after is None or t.updated_at > after]
        length = params.history_length if params.HasField("history_length") else None
        return ListTasksResponse(
            tasks=[a2a_task(t, length, artifacts=params.include_artifacts) for t in items],
            next_page_token=page.next_cursor or "",
            page_size=size,
            total_size=len(items),
        )

    async def on_cancel_task(
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> A2ATask:
        """CancelTask: TaskNotCancelable once it ended."""
        task = await _own_task(context, params.id)
        if task.status in ENDED:
            raise TaskNotCancelableError(f"task {task.task_id} is {STATES[task.status]}")
        try:
            task = await _calls(context).cancel(params.id)
        except ServiceError as exc:
            if exc.code in (ErrorCode.CONFLICT, ErrorCode.INVALID_TRANSITION):
                raise TaskNotCancelableError(exc.message) from exc
            raise a2a_error(exc, task=True) from exc
        return a2a_task(task)

    async def on_create_task_push_notification_config(
        self, params: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        """CreateTaskPushNotificationConfig: task.push_config.set (replaces one of the same
        id; the id defaults to ``default``)."""
        task = await _own_task(context, params.task_id)
        return await _set_push_config(context, str(task.task_id), params)

    async def on_get_task_push_notification_config(
        self, params: GetTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        """GetTaskPushNotificationConfig: task.push_config.get."""
        body = {"task_id": params.task_id, "config_id": params.id or "default"}
        data = await _push_call(context, subjects.TASK_PUSH_GET, body)
        return a2a_config(PushConfig.model_validate(data))

    async def on_list_task_push_notification_configs(
        self, params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext
    ) -> ListTaskPushNotificationConfigsResponse:
        """ListTaskPushNotificationConfigs: task.push_config.list (one page: a task has
        few)."""
        data = await _push_call(context, subjects.TASK_PUSH_LIST, {"task_id": params.task_id})
        items = PushConfigs.model_validate(data).items
        return ListTaskPushNotificationConfigsResponse(configs=[a2a_config(c) for c in items])

    async def on_delete_task_push_notification_config(
        self, params: DeleteTaskPushNotificationConfigRequest, context: ServerCallContext
    ) -> None:
        """DeleteTaskPushNotificationConfig: task.push_config.delete."""
        body = {"task_id": params.task_id, "config_id": params.id or "default"}
        await _push_call(context, subjects.TASK_PUSH_DELETE, body)

    async def on_get_extended_agent_card(
        self, params: GetExtendedAgentCardRequest, context: ServerCallContext
    ) -> AgentCard:
        """Not offered: the public card is the whole card."""
        raise ExtendedAgentCardNotConfiguredError


__all__ = ["AGENT_KEY", "CALLS_KEY", "REQUEST_KEY", "OrchestratorRequestHandler"]
