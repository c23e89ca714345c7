"""Rules of asking for input: a running task's questions, their answers and their deadlines,
and how many tasks an agent runs at once.

    RUNNING --request_input--> INPUT_REQUIRED --provide_input--------> RUNNING
                                              --deadline, `default`--> RUNNING
                                              --deadline, `fail`-----> FAILED
                                              --deadline, `cancel`---> CANCELLED

Every question of a task has a number, ``input_seq`` (1, 2, ...): the pending one is the
task's ``input_request``, the answered ones are ``input_answers`` in order, so answer n is the
answer to question n whichever attempt asked it. A worker that names the question it asks
(``input_seq``) can ask again without asking twice: a question pending or answered changes
nothing, and the reply carries its answer once there is one. That is how a worker that runs the
task again after a crash replays its questions (see :mod:`agent_orchestrator.domain.tasks` for
what a worker's silence and death do while a question waits).

An answer names the question it answers, or answers the pending one: a second answer to a
question is a ``conflict``, and so is an answer while nothing is asked. A question that nobody
answers by its deadline gets its ``on_timeout`` once: the sweep decides from the task it read
and writes only on that revision, so with any number of service instances one of them applies
it and the others find a task that is no longer overdue.
"""

from datetime import datetime, timedelta
from typing import Any

from pydantic import JsonValue

from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.tasks import (
    MAX_INPUT_REQUESTS,
    InputAnswer,
    InputRequest,
    InputSource,
    OnBusy,
    OnInputTimeout,
    ProvideInput,
    RequestInput,
    Task,
    TaskPolicy,
    TaskStatus,
)
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import CapacityReached, Conflict
from agent_orchestrator.domain.json_schema import check_schema, check_value
from agent_orchestrator.domain.tasks import (
    FINAL,
    TaskChange,
    TaskDefaults,
    check_active,
    deadline,
    task_event,
    time_out,
    waited_s,
)

S = TaskStatus
TIMEOUT_ACTOR = "timeout"
"""``answered_by`` of a default answer, and the actor of a cancel by timeout."""


def request_input(
    task: Task, request: RequestInput, agent: AgentRef, defaults: TaskDefaults, now: datetime
) -> TaskChange | None:
    """RUNNING -> INPUT_REQUIRED with the worker's question; its deadline becomes the task's.

    None when ``request.input_seq`` names a question already pending or answered (the task
    holds its answer then). Conflict unless the attempt is the running one, for a second
    question while one is pending, for a number out of turn, and past MAX_INPUT_REQUESTS.
    ValidationFailed for an input_schema that is not valid 2020-12 or a default_input that does
    not match it."""
    check_active(task, request.attempt)
    answered = len(task.input_answers)
    pending = task.input_request
    seq = request.input_seq
    if seq is not None and seq <= answered:
        return None
    if pending is not None:
        if seq == pending.input_seq:
            return None
        raise Conflict(
            f"task {task.task_id} already waits for the answer to question {pending.input_seq}",
            details={"status": task.status, "input_seq": pending.input_seq},
        )
    if seq is not None and seq != answered + 1:
        raise Conflict(
            f"task {task.task_id} has {answered} answered questions; the next one is "
            f"{answered + 1}, not {seq}",
            details={"status": task.status, "input_seq": answered + 1},
        )
    if answered >= MAX_INPUT_REQUESTS:
        raise Conflict(
            f"task {task.task_id} asked {answered} questions, the most one task may ask",
            details={"status": task.status, "max_input_requests": MAX_INPUT_REQUESTS},
        )
    if request.input_schema is not None:
        check_schema(request.input_schema, field="input_schema", strict=True)
        if request.on_timeout is OnInputTimeout.DEFAULT:
            check_value(
                request.input_schema,
                request.default_input,
                field="default_input",
                against="input_schema",
            )
    timeout_s = request.timeout_s or defaults.input_timeout_s
    question = InputRequest(
        input_seq=answered + 1,
        attempt=task.attempts,
        prompt=request.prompt,
        input_schema=request.input_schema,
        timeout_s=timeout_s,
        on_timeout=request.on_timeout,
        default_input=request.default_input,
        asked_at=now,
        deadline_at=now + timedelta(seconds=timeout_s),
    )
    asking = task.model_copy(
        update={
            "status": S.INPUT_REQUIRED,
            "input_request": question,
            "deadline_at": question.deadline_at,
            "updated_at": now,
        }
    )
    event = task_event(
        EventKind.TASK_INPUT_REQUIRED,
        asking,
        agent,
        now,
        input_seq=question.input_seq,
        prompt=question.prompt,
        input_schema=question.input_schema,
        on_timeout=question.on_timeout,
        deadline_at=question.deadline_at.isoformat(),
    )
    return TaskChange(asking, event)


def provide_input(
    task: Task,
    request: ProvideInput,
    agent: AgentRef,
    defaults: TaskDefaults,
    now: datetime,
    *,
    actor: str,
) -> TaskChange:
    """INPUT_REQUIRED -> RUNNING with the answer recorded under its question's input_seq.

    Conflict for an ended task, a question already answered (or not asked yet), when no
    question waits, and at or past the question's deadline (its on_timeout applies then, even
    before the sweep gets to it, so an answer and a timeout never both count).
    ValidationFailed, listing every failing path, for an input that does not match the
    question's input_schema."""
    if task.status in FINAL:
        raise Conflict(
            f"task {task.task_id} already ended {task.status}",
            details={"status": task.status, "reason": task.status_reason},
        )
    seq = request.input_seq
    if seq is not None and seq <= len(task.input_answers):
        earlier = task.input_answers[seq - 1]
        raise Conflict(
            f"question {seq} of task {task.task_id} was already answered",
            details={
                "status": task.status,
                "input_seq": seq,
                "source": earlier.source,
                "answered_at": earlier.answered_at.isoformat(),
            },
        )
    pending = task.input_request
    if task.status is not S.INPUT_REQUIRED or pending is None:
        raise Conflict(
            f"task {task.task_id} is {task.status} and waits for no input",
            details={"status": task.status, "answered": len(task.input_answers)},
        )
    if seq is not None and seq != pending.input_seq:
        raise Conflict(
            f"task {task.task_id} waits for the answer to question {pending.input_seq}, not {seq}",
            details={"status": task.status, "input_seq": pending.input_seq},
        )
    if now >= pending.deadline_at:
        raise Conflict(
            f"question {pending.input_seq} of task {task.task_id} timed out at "
            f"{pending.deadline_at.isoformat()}; its on_timeout `{pending.on_timeout}` applies",
            details={
                "status": task.status,
                "input_seq": pending.input_seq,
                "deadline_at": pending.deadline_at.isoformat(),
                "on_timeout": pending.on_timeout,
            },
        )
    if pending.input_schema is not None:
        check_value(
            pending.input_schema,
            request.input,
            field="input",
            against=f"the input_schema of question {pending.input_seq}",
        )
    return _resume(task, pending, request.input, InputSource.PROVIDED, actor, agent, defaults, now)


def input_timed_out(
    task: Task, agent: AgentRef, defaults: TaskDefaults, now: datetime
) -> TaskChange | None:
    """The question's on_timeout, once it is past its deadline: FAILED, CANCELLED, or RUNNING
    with its default_input as the answer. None if the task is not waiting for input or not
    overdue (any more), so that deciding again on a newer task changes nothing."""
    pending = task.input_request
    if task.status is not S.INPUT_REQUIRED or pending is None or pending.deadline_at > now:
        return None
    if pending.on_timeout is OnInputTimeout.DEFAULT:
        answer = pending.default_input
        return _resume(
            task, pending, answer, InputSource.DEFAULT, TIMEOUT_ACTOR, agent, defaults, now
        )
    reason = f"question {pending.input_seq} was not answered within {pending.timeout_s} s"
    ended: dict[str, Any] = {
        "status": S.FAILED if pending.on_timeout is OnInputTimeout.FAIL else S.CANCELLED,
        "status_reason": reason,
        "input_request": None,
        "deadline_at": None,
        "finished_at": now,
        "updated_at": now,
        "input_wait_s": task.input_wait_s + waited_s(pending.asked_at, now),
    }
    if pending.on_timeout is OnInputTimeout.FAIL:
        ended["error"] = {"message": reason, "details": {"input_seq": pending.input_seq}}
        failed = task.model_copy(update=ended)
        return TaskChange(failed, task_event(EventKind.TASK_FAILED, failed, agent, now))
    cancelled = task.model_copy(update=ended)
    event = task_event(EventKind.TASK_CANCELLED, cancelled, agent, now, actor=TIMEOUT_ACTOR)
    return TaskChange(cancelled, event)


def due(task: Task, agent: AgentRef, defaults: TaskDefaults, now: datetime) -> TaskChange | None:
    """What the timeout sweep does to a task it found past ``deadline_at``: a RUNNING attempt
    is given up (``tasks.time_out``), a question gets its on_timeout. None if not overdue."""
    if task.status is S.INPUT_REQUIRED:
        return input_timed_out(task, agent, defaults, now)
    return time_out(task, agent, now)


def _resume(
    task: Task,
    pending: InputRequest,
    answer: JsonValue,
    source: InputSource,
    actor: str,
    agent: AgentRef,
    defaults: TaskDefaults,
    now: datetime,
) -> TaskChange:
    """RUNNING again with ``answer`` to ``pending``; the worker has a heartbeat window to
    report, and the attempt's timeout is moved on by the time it waited."""
    recorded = InputAnswer(
        input_seq=pending.input_seq,
        attempt=pending.attempt,
        prompt=pending.prompt,
        input=answer,
        source=source,
        answered_by=actor,
        asked_at=pending.asked_at,
        answered_at=now,
    )
    running = task.model_copy(
        update={
            "status": S.RUNNING,
            "input_request": None,
            "input_answers": [*task.input_answers, recorded],
            "input_wait_s": task.input_wait_s + waited_s(pending.asked_at, now),
            "updated_at": now,
        }
    )
    running = running.model_copy(update={"deadline_at": deadline(running, defaults, now)})
    event = task_event(
        EventKind.TASK_INPUT_PROVIDED,
        running,
        agent,
        now,
        input_seq=recorded.input_seq,
        input=recorded.input,
        source=recorded.source,
        answered_by=recorded.answered_by,
    )
    return TaskChange(running, event)


def check_room(policy: TaskPolicy, busy: int) -> None:
    """For task.start of a QUEUED task: CapacityReached (``unavailable``, retry later) while
    the agent already has ``busy`` >= ``max_concurrent_tasks`` tasks RUNNING or
    INPUT_REQUIRED, whatever its on_busy: the worker leaves the assignment in its queue for a
    while (the SDK does so for ``unavailable``) and the task waits its turn."""
    limit = policy.max_concurrent_tasks
    if limit is not None and busy >= limit:
        raise CapacityReached(
            f"the agent runs {busy} tasks, its max_concurrent_tasks ({limit}); start this "
            "one once one of them ends",
            details={"busy": busy, "max_concurrent_tasks": limit},
        )


def admit(policy: TaskPolicy, busy: int) -> bool:
    """Whether a new task may go to the agent's workers now (True) or waits its turn, QUEUED,
    until one of its ``busy`` tasks (RUNNING or INPUT_REQUIRED) ends (False).

    Conflict, with the reason, when the agent is at its ``max_concurrent_tasks`` and its
    policy is to ``reject``."""
    limit = policy.max_concurrent_tasks
    if limit is None or busy < limit:
        return True
    if policy.on_busy is OnBusy.REJECT:
        raise Conflict(
            f"the agent runs {busy} tasks, its max_concurrent_tasks ({limit}); "
            "it rejects more (on_busy `reject`)",
            details={"busy": busy, "max_concurrent_tasks": limit, "on_busy": policy.on_busy},
        )
    return False
