"""Tasks handed to agents: agent.execute, their tracking, and the worker side.

A task is a row in PostgreSQL and, for each attempt, a :class:`TaskAssignment` on
``agent.task.<agent_id>`` in work-queue stream AGENT_TASKS. A worker claims the attempt with
task.start, reports with task.progress (which is also its heartbeat), and ends it with
task.complete or task.fail.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, JsonValue

from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_ID,
    EXAMPLE_TIME,
    Cursor,
    JsonBool,
    JsonInt,
    JsonObject,
    Limit,
    Reason,
    Reply,
    Request,
    Timestamp,
    examples,
)

MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_ATTEMPTS = 100


class TaskStatus(StrEnum):
    """QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT (the last four final)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


Attempt = Annotated[
    JsonInt | None,
    Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS,
        description="The attempt the worker runs; a report for another attempt is a conflict.",
    ),
]


class ExecuteTask(Request):
    """Hand a task to an ACTIVE agent."""

    model_config = examples(
        {
            "agent_id": EXAMPLE_AGENT_ID,
            "input": {"text": "to be or not to be"},
            "parameters": {"seconds_per_word": 0},
            "timeout_s": 600,
            "max_attempts": 3,
        },
    )

    agent_id: UUID
    input: JsonValue = Field(default=None, description="What to work on: any JSON value.")
    parameters: JsonObject = Field(default_factory=dict, description="How to work on it.")
    timeout_s: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_TIMEOUT_S,
        description="Longest one attempt may run (default AO_TASK_TIMEOUT_S).",
    )
    max_attempts: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS,
        description="Attempts before a task whose worker went silent is TIMED_OUT "
        "(default AO_TASK_MAX_ATTEMPTS).",
    )


class Task(Reply):
    """A task and where it is."""

    model_config = examples(
        {
            "task_id": EXAMPLE_ID,
            "agent_id": EXAMPLE_AGENT_ID,
            "project_id": "acme",
            "status": "SUCCEEDED",
            "input": {"text": "to be or not to be"},
            "parameters": {},
            "result": {"words": 6},
            "progress": 100,
            "attempts": 1,
            "max_attempts": 3,
            "timeout_s": 600,
            "created_at": EXAMPLE_TIME,
            "updated_at": EXAMPLE_TIME,
            "started_at": EXAMPLE_TIME,
            "finished_at": EXAMPLE_TIME,
        },
    )

    task_id: UUID = Field(description="UUIDv7.")
    agent_id: UUID
    project_id: str | None = None
    status: TaskStatus
    status_reason: str | None = Field(default=None, description="Why it was retried or ended.")
    input: JsonValue = None
    parameters: JsonObject = Field(default_factory=dict)
    result: JsonValue = Field(default=None, description="Set when SUCCEEDED.")
    error: JsonValue = Field(default=None, description="Set when FAILED: `{message, details}`.")
    progress: int = Field(ge=0, le=100, description="Percent done, as the worker reported.")
    progress_message: str | None = None
    attempts: int = Field(description="Attempts started so far (the running one included).")
    max_attempts: int
    timeout_s: int
    deadline_at: datetime | None = Field(
        default=None,
        description="While RUNNING: when the attempt is given up unless the worker reports.",
    )
    created_at: Timestamp
    updated_at: Timestamp
    started_at: datetime | None = None
    finished_at: datetime | None = None


class TaskAssignment(Reply):
    """The message on ``agent.task.<agent_id>``: one attempt of one task."""

    task_id: UUID
    agent_id: UUID
    attempt: int = Field(description="Pass to task.start.")


class GetTask(Request):
    """Read one task."""

    task_id: UUID


class ListTasks(Request):
    """Tasks, newest first, of one agent or project, by status."""

    agent_id: UUID | None = None
    project_id: str | None = Field(default=None, min_length=1, max_length=200)
    status: TaskStatus | None = None
    limit: Limit = 50
    cursor: Cursor = None


class TaskPage(Reply):
    """One page of tasks."""

    items: list[Task]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null on the last page.")


class CancelTask(Request):
    """Cancel a QUEUED or RUNNING task; a running worker hears of it at its next report."""

    model_config = examples(
        {"task_id": EXAMPLE_ID, "reason": "no longer needed"},
    )

    task_id: UUID
    reason: Reason = None


class StartTask(Request):
    """A worker claims an attempt it received: QUEUED -> RUNNING."""

    task_id: UUID
    attempt: JsonInt = Field(ge=1, le=MAX_ATTEMPTS, description="From the TaskAssignment.")


class ReportProgress(Request):
    """Progress of a RUNNING task; without progress or message it is just a heartbeat."""

    task_id: UUID
    attempt: Attempt = None
    progress: JsonInt | None = Field(default=None, ge=0, le=100, description="Percent done.")
    message: str | None = Field(default=None, max_length=2000)


class CompleteTask(Request):
    """The worker finished: RUNNING -> SUCCEEDED with the result."""

    task_id: UUID
    attempt: Attempt = None
    result: JsonValue = None


class FailTask(Request):
    """The worker gives up: RUNNING -> FAILED, or QUEUED again if ``retry`` and attempts are
    left."""

    task_id: UUID
    attempt: Attempt = None
    error: str = Field(min_length=1, max_length=4000, description="What went wrong.")
    details: JsonValue = None
    retry: JsonBool = Field(default=False, description="Try again if attempts are left.")
