"""Our tasks as A2A tasks, and A2A messages as task input.

Statuses map QUEUED→SUBMITTED, RUNNING→WORKING, INPUT_REQUIRED→INPUT_REQUIRED,
SUCCEEDED→COMPLETED, FAILED and TIMED_OUT→FAILED, CANCELLED→CANCELED. A task's ``result``
is its one artifact (``result``); its question while INPUT_REQUIRED, its error when FAILED
and its progress message while RUNNING are the status message. A message's parts become the
task's ``input`` (see :func:`message_input`).
"""

import base64
import json
from collections.abc import Sequence
from typing import Any

from a2a.helpers.proto_helpers import get_data_parts, new_data_part, new_text_part
from a2a.types import (
    Artifact,
    Message,
    Part,
    Role,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.types import Task as A2ATask
from a2a.types import TaskStatus as A2AStatus
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import JsonValue

from agent_orchestrator.contracts.tasks import Task, TaskStatus

STATES: dict[TaskStatus, TaskState] = {
    TaskStatus.QUEUED: TaskState.TASK_STATE_SUBMITTED,
    TaskStatus.RUNNING: TaskState.TASK_STATE_WORKING,
    TaskStatus.INPUT_REQUIRED: TaskState.TASK_STATE_INPUT_REQUIRED,
    TaskStatus.SUCCEEDED: TaskState.TASK_STATE_COMPLETED,
    TaskStatus.FAILED: TaskState.TASK_STATE_FAILED,
    TaskStatus.TIMED_OUT: TaskState.TASK_STATE_FAILED,
    TaskStatus.CANCELLED: TaskState.TASK_STATE_CANCELED,
}
"""Our task statuses as A2A task states (CONTRACT.md, "Open protocols spoken")."""

STATUSES: dict[TaskState, TaskStatus] = {
    TaskState.TASK_STATE_SUBMITTED: TaskStatus.QUEUED,
    TaskState.TASK_STATE_WORKING: TaskStatus.RUNNING,
    TaskState.TASK_STATE_INPUT_REQUIRED: TaskStatus.INPUT_REQUIRED,
    TaskState.TASK_STATE_COMPLETED: TaskStatus.SUCCEEDED,
    TaskState.TASK_STATE_FAILED: TaskStatus.FAILED,
    TaskState.TASK_STATE_CANCELED: TaskStatus.CANCELLED,
}
"""An A2A state filter as ours (REJECTED and AUTH_REQUIRED never happen here)."""

RESULT_ARTIFACT = "result"
ENDED = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)
"""Statuses after which a task changes no more."""
STREAM_ENDS = ENDED | {TaskStatus.INPUT_REQUIRED}
"""Where a stream of one task's events ends: the task ended or waits for the caller."""


def plain(value: Any) -> JsonValue:
    """A value read from a protobuf ``Value`` with whole numbers as ints again (protobuf
    keeps every number as a double)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    result: JsonValue = value
    return result


def _file(part: Part) -> dict[str, Any]:
    file: dict[str, Any] = {}
    if part.filename:
        file["name"] = part.filename
    if part.media_type:
        file["media_type"] = part.media_type
    if part.HasField("url"):
        file["url"] = part.url
    else:
        file["bytes"] = base64.b64encode(part.raw).decode()
    return file


def message_input(parts: Sequence[Part]) -> JsonValue:
    """A message's parts as a task's input: text parts only → ``{"text": <joined>}``; one
    data part that is an object → that object; otherwise ``{"text", "data", "files"}`` with
    what is there (files as ``{name, media_type, url | bytes}``)."""
    texts = [part.text for part in parts if part.HasField("text")]
    data = [plain(value) for value in get_data_parts(parts)]
    files = [_file(part) for part in parts if part.HasField("url") or part.HasField("raw")]
    if texts and not data and not files:
        return {"text": "\n".join(texts)}
    if len(data) == 1 and isinstance(data[0], dict) and not texts and not files:
        return data[0]
    combined: dict[str, JsonValue] = {}
    if texts:
        combined["text"] = "\n".join(texts)
    if data:
        combined["data"] = data
    if files:
        combined["files"] = files  # type: ignore[assignment]
    return combined


def answer_input(parts: Sequence[Part]) -> JsonValue:
    """A message's parts as the answer to a task's question: one data part → its value
    (any JSON); text only → the text; otherwise as :func:`message_input`."""
    data = [plain(value) for value in get_data_parts(parts)]
    texts = [part.text for part in parts if part.HasField("text")]
    if len(data) == 1 and len(parts) == 1:
        return data[0]
    if texts and len(texts) == len(parts):
        return "\n".join(texts)
    return message_input(parts)


def value_part(value: JsonValue) -> Part:
    """A JSON value as one part: text for a string, data for anything else."""
    if isinstance(value, str):
        return new_text_part(value)
    return new_data_part(value)


def _timestamp(task: Task) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(task.updated_at)
    return stamp


def _agent_message(task: Task, parts: list[Part], key: str, meta: JsonValue = None) -> Message:
    message = Message(
        message_id=f"{task.task_id}-{key}",
        task_id=str(task.task_id),
        context_id=task.context_id or "",
        role=Role.ROLE_AGENT,
        parts=parts,
    )
    if meta is not None:
        message.metadata.update(meta)  # type: ignore[arg-type]
    return message


def _error_text(error: JsonValue) -> str:
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return json.dumps(error)


def status_message(task: Task) -> Message | None:
    """What the status says in words: the question, the error, the progress message."""
    if task.status is TaskStatus.INPUT_REQUIRED and task.input_request is not None:
        ask = task.input_request
        meta: dict[str, JsonValue] = {"inputSeq": ask.input_seq, "inputSchema": ask.input_schema}
        return _agent_message(task, [value_part(ask.prompt)], f"ask-{ask.input_seq}", meta)
    if task.status is TaskStatus.FAILED and task.error is not None:
        return _agent_message(task, [new_text_part(_error_text(task.error))], "error")
    if task.status in (TaskStatus.TIMED_OUT, TaskStatus.CANCELLED) and task.status_reason:
        return _agent_message(task, [new_text_part(task.status_reason)], task.status.lower())
    if task.status is TaskStatus.RUNNING and task.progress_message:
        return _agent_message(task, [new_text_part(task.progress_message)], "progress")
    return None


def a2a_status(task: Task) -> A2AStatus:
    """The task's A2A status: state, timestamp and message."""
    status = A2AStatus(state=STATES[task.status], timestamp=_timestamp(task))
    message = status_message(task)
    if message is not None:
        status.message.CopyFrom(message)
    return status


def result_artifact(task: Task) -> Artifact | None:
    """The task's result as its artifact (None before it SUCCEEDED)."""
    if task.status is not TaskStatus.SUCCEEDED or task.result is None:
        return None
    return Artifact(artifact_id=RESULT_ARTIFACT, name="result", parts=[value_part(task.result)])


def history(task: Task) -> list[Message]:
    """The conversation of a task: its input, then each question and its answer."""
    context = task.context_id or ""
    first = Message(
        message_id=f"{task.task_id}-input",
        task_id=str(task.task_id),
        context_id=context,
        role=Role.ROLE_USER,
        parts=[value_part(task.input)],
    )
    messages = [first]
    for answer in task.input_answers:
        seq = answer.input_seq
        messages.append(_agent_message(task, [value_part(answer.prompt)], f"ask-{seq}"))
        messages.append(
            Message(
                message_id=f"{task.task_id}-answer-{seq}",
                task_id=str(task.task_id),
                context_id=context,
                role=Role.ROLE_USER,
                parts=[value_part(answer.input)],
            )
        )
    return messages


def metadata(task: Task) -> dict[str, Any]:
    """What A2A has no field for: our status, progress, attempts and agent."""
    return {
        "agentId": str(task.agent_id),
        "status": task.status.value,
        "progress": task.progress,
        "attempts": task.attempts,
    }


def a2a_task(task: Task, history_length: int | None = None, *, artifacts: bool = True) -> A2ATask:
    """Our task as an A2A task (``history_length`` 0: no history; None: all of it)."""
    converted = A2ATask(
        id=str(task.task_id),
        context_id=task.context_id or "",
        status=a2a_status(task),
    )
    messages = history(task)
    if history_length is not None:
        messages = messages[-history_length:] if history_length > 0 else []
    converted.history.extend(messages)
    artifact = result_artifact(task) if artifacts else None
    if artifact is not None:
        converted.artifacts.append(artifact)
    converted.metadata.update(metadata(task))
    return converted


def status_update(task: Task) -> TaskStatusUpdateEvent:
    """A TaskStatusUpdateEvent for the task as it is now."""
    event = TaskStatusUpdateEvent(
        task_id=str(task.task_id), context_id=task.context_id or "", status=a2a_status(task)
    )
    event.metadata.update(metadata(task))
    return event


def artifact_update(task: Task) -> TaskArtifactUpdateEvent | None:
    """A TaskArtifactUpdateEvent with the task's result (None before it SUCCEEDED)."""
    artifact = result_artifact(task)
    if artifact is None:
        return None
    return TaskArtifactUpdateEvent(
        task_id=str(task.task_id),
        context_id=task.context_id or "",
        artifact=artifact,
        last_chunk=True,
    )
