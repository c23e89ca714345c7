"""Rules for tasks: who may get one, how a worker's reports move it, and how it ends.

    QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED | TIMED_OUT
       ^       |  ^  \
       |       |  |   request_input       (an input timeout: on_timeout `fail` -> FAILED,
       |       |  |    v                   `cancel` -> CANCELLED, `default` -> RUNNING)
       |       |  INPUT_REQUIRED -> FAILED | CANCELLED | SUCCEEDED (cancel, or the worker ends
       |       |  provide_input /            the attempt while its question waits)
       |       |  default at the deadline
       +-------+  a retry: the worker's fail(retry) or its silence, while attempts are left

Each decision returns the task after it with its event and, when the task goes (back) to the
queue, the assignment to publish for the next attempt. The rules of asking for input are in
:mod:`agent_orchestrator.domain.task_input`; this module has what every status shares.

While a task is INPUT_REQUIRED a person is being asked, so the worker's clocks stop: its
``deadline_at`` is the question's deadline alone (no heartbeat window, and the time waited,
``input_wait_s``, does not count against the attempt's ``timeout_s``). The worker may still
report (progress is recorded, a bare heartbeat changes nothing), and may end the attempt
(complete, fail), which withdraws the question; a cancel withdraws it too. A worker that dies
while waiting is noticed once the task is RUNNING again: the answer starts a new heartbeat
window, a dead worker misses it, and the attempt is given up like any silent one (retried
while attempts are left). The next attempt runs the program again; its questions already
answered get their recorded answers back at once (``input_answers``, by ``input_seq``), and
the first one not answered is asked anew. Recovering the agent gives up only RUNNING tasks:
an INPUT_REQUIRED one keeps waiting for its answer.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.tasks import (
    CompleteTask,
    ExecuteTask,
    FailTask,
    ReportProgress,
    Task,
    TaskAssignment,
    TaskStatus,
)
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import Conflict, InvalidTransition, NotFound, Unavailable
from agent_orchestrator.domain.ids import new_id

S = TaskStatus
FINAL = frozenset({S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT})
ACTIVE = frozenset({S.RUNNING, S.INPUT_REQUIRED})
"""A worker holds the attempt: it may report, and end it."""
DEFAULT_INPUT_TIMEOUT_S = 24 * 3600
ASSIGNMENT_NAMESPACE = uuid.UUID("3c0f8a52-6a8e-4f1e-9d57-1c2b7e0c9a41")


@dataclass(frozen=True)
class TaskDefaults:
    """Settings that shape every task."""

    timeout_s: int
    max_attempts: int
    heartbeat_s: float
    input_timeout_s: int = DEFAULT_INPUT_TIMEOUT_S


@dataclass(frozen=True)
class TaskChange:
    """A task after a decision, its event, and the assignment to publish if it is queued."""

    task: Task
    event: Event | None
    assignment: TaskAssignment | None = None


def not_found(task_id: uuid.UUID) -> NotFound:
    """The error for an unknown task id."""
    return NotFound(f"task {task_id} does not exist", details={"task_id": str(task_id)})


def assignment_id(task_id: uuid.UUID, attempt: int) -> uuid.UUID:
    """The ``Nats-Msg-Id`` of one attempt's assignment (stable, so a re-publish is dropped)."""
    return uuid.uuid5(ASSIGNMENT_NAMESPACE, f"{task_id}:{attempt}")


def task_event(kind: EventKind, task: Task, agent: AgentRef, now: datetime, **data: Any) -> Event:
    """An event about ``task`` on its agent's subject."""
    return Event(
        event_id=new_id(),
        type=kind,
        agent_id=agent.agent_id,
        project_id=agent.project_id,
        occurred_at=now,
        version=agent.version,
        data={
            "task_id": str(task.task_id),
            "status": task.status,
            "attempt": task.attempts,
            "reason": task.status_reason,
            **data,
        },
    )


def _queued(task: Task, agent: AgentRef, now: datetime, **data: Any) -> TaskChange:
    """``task`` (QUEUED) with the assignment of its next attempt."""
    assignment = TaskAssignment(
        task_id=task.task_id, agent_id=task.agent_id, attempt=task.attempts + 1
    )
    return TaskChange(
        task,
        task_event(
            EventKind.TASK_QUEUED, task, agent, now, next_attempt=assignment.attempt, **data
        ),
        assignment,
    )


def queue(
    request: ExecuteTask, agent: AgentRef, defaults: TaskDefaults, now: datetime
) -> TaskChange:
    """A new QUEUED task for an ACTIVE agent."""
    if agent.status is not AgentStatus.ACTIVE:
        raise InvalidTransition(
            f"agent {agent.agent_id} is {agent.status}; tasks go only to ACTIVE agents",
            details={"agent_id": str(agent.agent_id), "status": agent.status},
        )
    task = Task(
        task_id=new_id(),
        agent_id=agent.agent_id,
        project_id=agent.project_id,
        status=S.QUEUED,
        input=request.input,
        parameters=request.parameters,
        progress=0,
        attempts=0,
        max_attempts=request.max_attempts or defaults.max_attempts,
        timeout_s=request.timeout_s or defaults.timeout_s,
        context_id=request.context_id,
        created_at=now,
        updated_at=now,
    )
    return _queued(task, agent, now)


def attempt_ends_at(task: Task) -> datetime:
    """When the running attempt overruns its timeout_s (the time it waited for input aside)."""
    assert task.started_at is not None
    return task.started_at + timedelta(seconds=task.timeout_s + task.input_wait_s)


def deadline(task: Task, defaults: TaskDefaults, now: datetime) -> datetime:
    """When a RUNNING attempt is given up: at its timeout, or a heartbeat window after the
    worker's last report, whichever is sooner."""
    return min(attempt_ends_at(task), now + timedelta(seconds=defaults.heartbeat_s))


def waited_s(since: datetime, now: datetime) -> int:
    """Whole seconds from ``since`` to ``now``, rounded up (0 if the clocks disagree)."""
    return max(0, math.ceil((now - since).total_seconds()))


def check_active(task: Task, attempt: int | None, allowed: frozenset[TaskStatus] = ACTIVE) -> None:
    """Conflict unless ``task`` is in ``allowed`` on ``attempt`` (None: any attempt)."""
    if task.status not in allowed:
        raise Conflict(
            f"task {task.task_id} is {task.status}",
            details={"status": task.status, "reason": task.status_reason},
        )
    if attempt is not None and attempt != task.attempts:
        raise Conflict(
            f"task {task.task_id} is on attempt {task.attempts}, not {attempt}",
            details={"status": task.status, "attempt": task.attempts},
        )


def _check_running(task: Task, attempt: int | None) -> None:
    check_active(task, attempt, frozenset({S.RUNNING}))


def start(
    task: Task, attempt: int, agent: AgentRef, defaults: TaskDefaults, now: datetime
) -> TaskChange | None:
    """A worker claims ``attempt``; None when it already has (a repeat changes nothing).

    Refused with Unavailable (retry later: the worker puts the assignment back with a delay)
    while the agent is not ACTIVE, so a paused agent's program starts nothing."""
    if task.status is S.RUNNING and task.attempts == attempt:
        return None
    if task.status is S.QUEUED and agent.status is not AgentStatus.ACTIVE:
        raise Unavailable(
            f"agent {agent.agent_id} is {agent.status}; task {task.task_id} starts once it "
            "is ACTIVE",
            details={"reason": "agent_not_active", "agent_status": agent.status},
        )
    if task.status is not S.QUEUED or attempt != task.attempts + 1:
        raise Conflict(
            f"task {task.task_id} is {task.status} at attempt {task.attempts}; "
            f"attempt {attempt} cannot start",
            details={"status": task.status, "attempt": task.attempts},
        )
    running = task.model_copy(
        update={
            "status": S.RUNNING,
            "status_reason": None,
            "attempts": attempt,
            "started_at": now,
            "updated_at": now,
            "input_request": None,
            "input_wait_s": 0,
        }
    )
    running = running.model_copy(update={"deadline_at": deadline(running, defaults, now)})
    return TaskChange(running, task_event(EventKind.TASK_STARTED, running, agent, now))


def report(
    task: Task, request: ReportProgress, agent: AgentRef, defaults: TaskDefaults, now: datetime
) -> TaskChange | None:
    """Progress (or just a heartbeat): the deadline moves on; an event only for progress.

    While INPUT_REQUIRED the deadline is the question's: progress is recorded, and a bare
    heartbeat changes nothing (None)."""
    check_active(task, request.attempt)
    update: dict[str, Any] = {"updated_at": now}
    if task.status is S.RUNNING:
        update["deadline_at"] = deadline(task, defaults, now)
    elif request.progress is None and request.message is None:
        return None
    if request.progress is not None:
        update["progress"] = request.progress
    if request.message is not None:
        update["progress_message"] = request.message
    reported = task.model_copy(update=update)
    if request.progress is None and request.message is None:
        return TaskChange(reported, None)
    event = task_event(
        EventKind.TASK_PROGRESS,
        reported,
        agent,
        now,
        progress=reported.progress,
        message=reported.progress_message,
    )
    return TaskChange(reported, event)


def _ended(task: Task, status: TaskStatus, now: datetime, **update: Any) -> Task:
    return task.model_copy(
        update={
            "status": status,
            "deadline_at": None,
            "input_request": None,
            "finished_at": now,
            "updated_at": now,
            **update,
        }
    )


def _repeated(task: Task, ended: TaskStatus, attempt: int | None) -> bool:
    """Whether a worker repeats the report that already ended this attempt."""
    return task.status is ended and attempt in (None, task.attempts)


def complete(
    task: Task, request: CompleteTask, agent: AgentRef, now: datetime
) -> TaskChange | None:
    """RUNNING (or INPUT_REQUIRED: the question is withdrawn) -> SUCCEEDED with the worker's
    result; None for a repeat."""
    if _repeated(task, S.SUCCEEDED, request.attempt):
        return None
    check_active(task, request.attempt)
    done = _ended(task, S.SUCCEEDED, now, result=request.result, progress=100)
    return TaskChange(done, task_event(EventKind.TASK_SUCCEEDED, done, agent, now))


def _retry(task: Task, reason: str, agent: AgentRef, now: datetime) -> TaskChange:
    again = task.model_copy(
        update={
            "status": S.QUEUED,
            "status_reason": reason[:2000],
            "deadline_at": None,
            "input_request": None,
            "updated_at": now,
        }
    )
    return _queued(again, agent, now)


def fail(task: Task, request: FailTask, agent: AgentRef, now: datetime) -> TaskChange | None:
    """RUNNING (or INPUT_REQUIRED: the question is withdrawn) -> FAILED with the error, or
    QUEUED again when a retry is asked and allowed; None for a repeat."""
    if _repeated(task, S.FAILED, request.attempt):
        return None
    check_active(task, request.attempt)
    if request.retry and task.attempts < task.max_attempts:
        return _retry(task, f"attempt {task.attempts} failed: {request.error}", agent, now)
    error = {"message": request.error, "details": request.details}
    failed = _ended(task, S.FAILED, now, error=error, status_reason=request.error[:2000])
    return TaskChange(failed, task_event(EventKind.TASK_FAILED, failed, agent, now))


def cancel(
    task: Task, reason: str | None, agent: AgentRef, now: datetime, *, actor: str
) -> TaskChange | None:
    """QUEUED, RUNNING or INPUT_REQUIRED -> CANCELLED (a pending question is withdrawn); None
    when it already is; Conflict once it ended."""
    if task.status is S.CANCELLED:
        return None
    if task.status in FINAL:
        raise Conflict(
            f"task {task.task_id} already ended {task.status}", details={"status": task.status}
        )
    cancelled = _ended(task, S.CANCELLED, now, status_reason=reason)
    event = task_event(EventKind.TASK_CANCELLED, cancelled, agent, now, actor=actor)
    return TaskChange(cancelled, event)


def give_up(task: Task, reason: str, agent: AgentRef, now: datetime) -> TaskChange | None:
    """Abandon a RUNNING attempt: a retry while attempts are left, else TIMED_OUT. None if the
    task is not RUNNING (an INPUT_REQUIRED one keeps waiting for its answer)."""
    if task.status is not S.RUNNING:
        return None
    if task.attempts < task.max_attempts:
        return _retry(task, reason, agent, now)
    timed_out = _ended(task, S.TIMED_OUT, now, status_reason=f"{reason}; no attempts left")
    return TaskChange(timed_out, task_event(EventKind.TASK_FAILED, timed_out, agent, now))


def time_out(task: Task, agent: AgentRef, now: datetime) -> TaskChange | None:
    """A RUNNING attempt past its deadline (its worker went silent, or it overran timeout_s):
    given up. None if it is not overdue (any more).

    An INPUT_REQUIRED task's deadline is its question's: see ``task_input.due``."""
    if task.status is not S.RUNNING or task.deadline_at is None or task.deadline_at > now:
        return None
    if now >= attempt_ends_at(task):
        reason = f"attempt {task.attempts} ran longer than timeout_s ({task.timeout_s} s)"
    else:
        reason = f"attempt {task.attempts}: no report from its worker in time"
    return give_up(task, reason, agent, now)
