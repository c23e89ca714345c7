"""The service as A2A sees it: one NATS request per call, error replies as A2A errors.

The caller's project travels as ``Project-Scope`` (as on the REST routes), so a caller
confined to a project neither sees nor touches another's agents and tasks.
"""

import json
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from a2a.types import (
    InternalError,
    InvalidParamsError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from a2a.utils.errors import A2AError
from pydantic import BaseModel, ValidationError

from agent_orchestrator.bridge.nats_client import BridgeState, nats_request
from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import Agent
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.subjects import (
    ACTOR_HEADER,
    IDEMPOTENCY_KEY_HEADER,
    PROJECT_SCOPE_HEADER,
)
from agent_orchestrator.contracts.tasks import Task, TaskPage
from agent_orchestrator.contracts.templates import Template

M = TypeVar("M", bound=BaseModel)


class ServiceError(Exception):
    """An error reply of the service."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def a2a_error(exc: ServiceError, *, task: bool = False) -> A2AError:
    """The A2A error for a service error: ``not_found`` of a task is TaskNotFound, bad input
    InvalidParams, a refused change UnsupportedOperation, the rest Internal."""
    if exc.code == ErrorCode.NOT_FOUND and task:
        return TaskNotFoundError(exc.message)
    if exc.code in (ErrorCode.VALIDATION_ERROR, ErrorCode.PAYLOAD_TOO_LARGE):
        return InvalidParamsError(exc.message, _data(exc))
    if exc.code in (ErrorCode.CONFLICT, ErrorCode.INVALID_TRANSITION):
        return UnsupportedOperationError(exc.message, _data(exc))
    return InternalError(f"{exc.code}: {exc.message}")


def _data(exc: ServiceError) -> dict[str, Any] | None:
    return exc.details if isinstance(exc.details, dict) else None


@dataclass(frozen=True)
class ServiceCalls:
    """Requests to the service on behalf of one caller (``project`` None: any project)."""

    state: BridgeState
    project: str | None
    actor: str | None = None

    async def request(self, subject: str, body: dict[str, Any], key: str | None = None) -> Any:
        """One request (``key``: its Idempotency-Key); the reply as JSON, or
        :class:`ServiceError`. A bridge that cannot reach the service raises InternalError
        (A2A has no "try again later")."""
        headers = {ACTOR_HEADER: self.actor} if self.actor else {}
        if key is not None:
            headers[IDEMPOTENCY_KEY_HEADER] = key
        if self.project is not None:
            headers[PROJECT_SCOPE_HEADER] = self.project
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            msg = await nats_request(self.state, subject, payload, headers)
        except ProblemError as exc:
            raise InternalError(exc.detail) from exc
        data = json.loads(msg.data)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            error = data["error"]
            raise ServiceError(
                str(error.get("code")), str(error.get("message", "")), error.get("details")
            )
        return data

    async def _model(
        self, model: type[M], subject: str, body: dict[str, Any], key: str | None = None
    ) -> M:
        data = await self.request(subject, body, key)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InternalError(
                f"the service's reply on {subject} is not a {model.__name__}"
            ) from exc

    async def agent(self, agent_id: UUID) -> Agent:
        """agent.get."""
        return await self._model(Agent, subjects.AGENT_GET, {"agent_id": str(agent_id)})

    async def agents(self, cursor: str | None, limit: int) -> tuple[list[Agent], str | None]:
        """agent.list: one page."""
        body: dict[str, Any] = {"limit": limit}
        if cursor:
            body["cursor"] = cursor
        data = await self.request(subjects.AGENT_LIST, body)
        return [Agent.model_validate(a) for a in data["items"]], data.get("next_cursor")

    async def template(self, template_id: UUID, version: int | None) -> Template:
        """template.get."""
        body: dict[str, Any] = {"template_id": str(template_id)}
        if version is not None:
            body["version"] = version
        return await self._model(Template, subjects.TEMPLATE_GET, body)

    async def execute(self, body: dict[str, Any]) -> Task:
        """agent.execute."""
        return await self._model(Task, subjects.AGENT_EXECUTE, body)

    async def task(self, task_id: str) -> Task:
        """task.get; TaskNotFound for an unknown (or malformed, or out of scope) id."""
        try:
            UUID(task_id)
        except ValueError as exc:
            raise TaskNotFoundError(f"no task {task_id!r}") from exc
        try:
            return await self._model(Task, subjects.TASK_GET, {"task_id": task_id})
        except ServiceError as exc:
            raise a2a_error(exc, task=True) from exc

    async def tasks(self, body: dict[str, Any]) -> TaskPage:
        """task.list."""
        return await self._model(TaskPage, subjects.TASK_LIST, body)

    async def cancel(self, task_id: str) -> Task:
        """task.cancel."""
        body = {"task_id": task_id, "reason": "canceled by an A2A client"}
        return await self._model(Task, subjects.TASK_CANCEL, body)

    async def provide_input(self, body: dict[str, Any]) -> Task:
        """task.provide_input (an answer to the pending ``input_seq`` only: a repeat is a
        conflict, never a second answer)."""
        return await self._model(Task, subjects.TASK_PROVIDE_INPUT, body)


__all__ = ["ServiceCalls", "ServiceError", "a2a_error"]
