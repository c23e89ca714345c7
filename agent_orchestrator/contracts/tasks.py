"""Tasks handed to agents: agent.execute, their tracking, and the worker side.

A task is a row in PostgreSQL and, for each attempt, a :class:`TaskAssignment` on
``agent.task.<agent_id>`` in work-queue stream AGENT_TASKS. A worker claims the attempt with
task.start, reports with task.progress (which is also its heartbeat), and ends it with
task.complete or task.fail.

A running task may ask for input (task.request_input): it is INPUT_REQUIRED until somebody
answers (task.provide_input) or the question times out, then RUNNING again. Every question has
a number in its task (``input_seq``: 1, 2, ...); the pending one is the task's
``input_request`` and the answered ones are ``input_answers``, in order, so a worker that
replays the task after a crash finds the answers to the questions it already asked.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import ConfigDict, Field, JsonValue, model_validator
from pydantic.config import JsonDict

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
from agent_orchestrator.contracts.liveness import Policy

MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_ATTEMPTS = 100
MAX_INPUT_TIMEOUT_S = 30 * 24 * 3600
MAX_INPUT_REQUESTS = 1000
"""Questions one task may ask in all (its answers are part of the task)."""
MAX_CONTEXT_ID_LENGTH = 200
TASK_POLICY_KEY = "tasks"


class TaskStatus(StrEnum):
    """QUEUED -> RUNNING (<-> INPUT_REQUIRED) -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
    (the last four final)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    INPUT_REQUIRED = "INPUT_REQUIRED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"


ContextId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=MAX_CONTEXT_ID_LENGTH,
        description="Groups the tasks of one conversation (A2A `contextId`); kept as given.",
    ),
]

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
    context_id: ContextId = None


class OnInputTimeout(StrEnum):
    """What a question that nobody answered in time does to its task."""

    FAIL = "fail"
    CANCEL = "cancel"
    DEFAULT = "default"


class InputSource(StrEnum):
    """Where an answer came from."""

    PROVIDED = "provided"
    DEFAULT = "default"


EXAMPLE_PROMPT: JsonDict = {
    "question": "Send this reply to the customer?",
    "draft": "Your refund is on its way.",
    "choices": ["send", "edit", "drop"],
}
EXAMPLE_INPUT_SCHEMA: JsonDict = {
    "type": "object",
    "properties": {
        "decision": {"enum": ["send", "edit", "drop"]},
        "text": {"type": "string"},
    },
    "required": ["decision"],
    "additionalProperties": False,
}


class InputRequest(Reply):
    """The question a task waits on while INPUT_REQUIRED."""

    input_seq: int = Field(ge=1, description="Which question of the task this is: 1, 2, ...")
    attempt: int = Field(ge=1, description="The attempt that asked.")
    prompt: JsonValue = Field(description="What the worker asks, as it sent it.")
    input_schema: JsonObject | None = Field(
        default=None, description="JSON Schema (2020-12) an answer must match; null: any JSON."
    )
    timeout_s: int = Field(description="How long the question waits for an answer.")
    on_timeout: OnInputTimeout = Field(description="What happens if nobody answers in time.")
    default_input: JsonValue = Field(
        default=None, description="The answer given at the deadline when on_timeout is `default`."
    )
    asked_at: Timestamp
    deadline_at: Timestamp = Field(description="When on_timeout applies.")


class InputAnswer(Reply):
    """One answered question of a task."""

    input_seq: int = Field(ge=1, description="The question this answers.")
    attempt: int = Field(ge=1, description="The attempt that asked.")
    prompt: JsonValue = Field(description="The question, as it was asked.")
    input: JsonValue = Field(description="The answer: valid against the question's input_schema.")
    source: InputSource = Field(
        description="`provided` by a caller, or the question's `default` input at its deadline."
    )
    answered_by: str = Field(description="The caller's actor; `timeout` for a default.")
    asked_at: Timestamp
    answered_at: Timestamp


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
        {
            "task_id": EXAMPLE_ID,
            "agent_id": EXAMPLE_AGENT_ID,
            "project_id": "acme",
            "status": "INPUT_REQUIRED",
            "input": {"ticket": 4711},
            "parameters": {},
            "progress": 40,
            "attempts": 1,
            "max_attempts": 3,
            "timeout_s": 600,
            "deadline_at": "2026-11-26T09:30:00Z",
            "input_request": {
                "input_seq": 1,
                "attempt": 1,
                "prompt": EXAMPLE_PROMPT,
                "input_schema": EXAMPLE_INPUT_SCHEMA,
                "timeout_s": 86400,
                "on_timeout": "fail",
                "asked_at": EXAMPLE_TIME,
                "deadline_at": "2026-11-26T09:30:00Z",
            },
            "created_at": EXAMPLE_TIME,
            "updated_at": EXAMPLE_TIME,
            "started_at": EXAMPLE_TIME,
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
    context_id: ContextId = None
    deadline_at: datetime | None = Field(
        default=None,
        description="While RUNNING: when the attempt is given up unless the worker reports. "
        "While INPUT_REQUIRED: when the question times out (its on_timeout applies).",
    )
    created_at: Timestamp
    updated_at: Timestamp
    started_at: datetime | None = None
    finished_at: datetime | None = None
    input_request: InputRequest | None = Field(
        default=None, description="While INPUT_REQUIRED: the question waiting for an answer."
    )
    input_answers: list[InputAnswer] = Field(
        default_factory=list,
        description="The questions answered so far, in order (input_seq 1, 2, ...): a worker "
        "that runs the task again finds here the answers to what it already asked.",
    )
    input_wait_s: int = Field(
        default=0,
        ge=0,
        description="Seconds the current attempt waited for input; not counted against timeout_s.",
    )


class TaskAssignment(Reply):
    """The message on ``agent.task.<agent_id>``: one attempt of one task."""

    task_id: UUID
    agent_id: UUID
    attempt: int = Field(description="Pass to task.start.")


class GetTask(Request):
    """Read one task."""

    task_id: UUID


class ListTasks(Request):
    """Tasks, newest first, of one agent or project, by status and conversation
    (``context_id``): ``status`` INPUT_REQUIRED with a ``project_id`` is that project's inbox
    of questions waiting for a person."""

    agent_id: UUID | None = None
    project_id: str | None = Field(default=None, min_length=1, max_length=200)
    status: TaskStatus | None = None
    context_id: ContextId = None
    limit: Limit = 50
    cursor: Cursor = None


class TaskPage(Reply):
    """One page of tasks."""

    items: list[Task]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null on the last page.")


class CancelTask(Request):
    """Cancel a QUEUED, RUNNING or INPUT_REQUIRED task (a pending question is withdrawn); a
    running worker hears of it at its next report."""

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


_DEFAULT_INPUT_RULE: JsonDict = {
    "if": {"properties": {"on_timeout": {"const": "default"}}, "required": ["on_timeout"]},
    "then": {"required": ["default_input"]},
    "else": {"not": {"required": ["default_input"]}},
}


class RequestInput(Request):
    """The worker asks for input: RUNNING -> INPUT_REQUIRED until an answer or the timeout."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_id": EXAMPLE_ID,
                    "attempt": 1,
                    "input_seq": 1,
                    "prompt": EXAMPLE_PROMPT,
                    "input_schema": EXAMPLE_INPUT_SCHEMA,
                    "timeout_s": 86400,
                    "on_timeout": "default",
                    "default_input": {"decision": "drop"},
                },
                {"task_id": EXAMPLE_ID, "attempt": 1, "prompt": "Which region, eu or us?"},
            ],
            **_DEFAULT_INPUT_RULE,
        }
    )

    task_id: UUID
    attempt: JsonInt = Field(ge=1, le=MAX_ATTEMPTS, description="The attempt that asks.")
    input_seq: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_INPUT_REQUESTS,
        description="Which question of the task this is (1 for the first). With it, asking "
        "again a question already pending or answered changes nothing (the reply holds the "
        "answer once there is one), so a worker that replays the task never asks twice.",
    )
    prompt: JsonValue = Field(
        description="The question, a proposed action to approve, choices: any JSON value."
    )
    input_schema: JsonObject | None = Field(
        default=None,
        description="JSON Schema (2020-12) the answer must match; default: any JSON value.",
    )
    timeout_s: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_INPUT_TIMEOUT_S,
        description="How long to wait for an answer (default AO_TASK_INPUT_TIMEOUT_S, a day).",
    )
    on_timeout: OnInputTimeout = Field(
        default=OnInputTimeout.FAIL,
        description="Without an answer in time: `fail` the task, `cancel` it, or go on with "
        "`default_input` as the answer (`default`).",
    )
    default_input: JsonValue = Field(
        default=None,
        description="The answer taken at the deadline; required with on_timeout `default` "
        "(and only then), and valid against input_schema.",
    )

    @model_validator(mode="after")
    def _default_input_iff_default(self) -> "RequestInput":
        given = "default_input" in self.model_fields_set
        if self.on_timeout is OnInputTimeout.DEFAULT and not given:
            raise ValueError("on_timeout `default` needs default_input")
        if self.on_timeout is not OnInputTimeout.DEFAULT and given:
            raise ValueError("default_input is only for on_timeout `default`")
        return self


class ProvideInput(Request):
    """Answer the question an INPUT_REQUIRED task waits on: it goes back to RUNNING.

    The input must match the question's input_schema (``validation_error`` lists every failing
    path). A second answer to a question, an answer while none is asked, and one at or after
    the question's deadline are a ``conflict``; a repeat with the same Idempotency-Key gets
    the first reply."""

    model_config = examples(
        {"task_id": EXAMPLE_ID, "input_seq": 1, "input": {"decision": "send"}},
        {"task_id": EXAMPLE_ID, "input": "eu"},
    )

    task_id: UUID
    input: JsonValue = Field(description="The answer: must match the question's input_schema.")
    input_seq: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_INPUT_REQUESTS,
        description="The question answered (the task's input_request.input_seq); default: the "
        "pending one. Set it so that a late answer never answers the next question.",
    )


class OnBusy(StrEnum):
    """What agent.execute does for an agent already running all the tasks it may."""

    QUEUE = "queue"
    REJECT = "reject"


class TaskPolicy(Policy):
    """``configuration.tasks``: how many tasks the agent runs at once, and beyond that."""

    max_concurrent_tasks: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Tasks RUNNING or INPUT_REQUIRED at once; default: no limit but the "
        "workers' own.",
    )
    on_busy: OnBusy = Field(
        default=OnBusy.QUEUE,
        description="At the limit, agent.execute queues the task to wait its turn (`queue`), "
        "or refuses it with `conflict` (`reject`).",
    )

    @classmethod
    def of(cls, configuration: dict[str, Any]) -> "TaskPolicy":
        """The policy of an agent's configuration (defaults when it sets none)."""
        return cls.model_validate(configuration.get(TASK_POLICY_KEY) or {})
