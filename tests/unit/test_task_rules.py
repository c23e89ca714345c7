"""The task rules, without I/O: the task state machine, attempts, deadlines."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.contracts.tasks import (
    CompleteTask,
    ExecuteTask,
    FailTask,
    ReportProgress,
    Task,
    TaskStatus,
)
from agent_orchestrator.domain import tasks as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import Conflict, InvalidTransition

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
S = TaskStatus
DEFAULTS = rules.TaskDefaults(timeout_s=600, max_attempts=2, heartbeat_s=30)
AGENT = AgentRef(uuid.uuid4(), "p", AgentStatus.ACTIVE, 4)


def queued(**fields: object) -> Task:
    request = ExecuteTask.model_validate({"agent_id": AGENT.agent_id, "input": "x", **fields})
    return rules.queue(request, AGENT, DEFAULTS, NOW).task


def running(task: Task | None = None, at: datetime = NOW) -> Task:
    change = rules.start(task or queued(), (task or queued()).attempts + 1, AGENT, DEFAULTS, at)
    assert change is not None
    return change.task


def test_execute_queues_a_task_with_its_first_assignment_and_defaults() -> None:
    change = rules.queue(ExecuteTask(agent_id=AGENT.agent_id), AGENT, DEFAULTS, NOW)
    task = change.task
    assert (task.status, task.attempts, task.max_attempts, task.timeout_s) == (S.QUEUED, 0, 2, 600)
    assert change.assignment is not None
    assert (change.assignment.task_id, change.assignment.attempt) == (task.task_id, 1)
    assert change.event is not None
    assert (change.event.type, change.event.version) == (EventKind.TASK_QUEUED, 4)


@pytest.mark.parametrize("status", [s for s in AgentStatus if s is not AgentStatus.ACTIVE])
def test_only_an_active_agent_gets_tasks(status: AgentStatus) -> None:
    agent = AgentRef(AGENT.agent_id, "p", status, 1)
    with pytest.raises(InvalidTransition):
        rules.queue(ExecuteTask(agent_id=agent.agent_id), agent, DEFAULTS, NOW)


def test_start_claims_the_next_attempt_once() -> None:
    task = queued()
    started = running(task)
    assert (started.status, started.attempts, started.started_at) == (S.RUNNING, 1, NOW)
    assert started.deadline_at == NOW + timedelta(seconds=30)  # heartbeat window, not timeout
    assert rules.start(started, 1, AGENT, DEFAULTS, NOW) is None  # a repeat changes nothing
    with pytest.raises(Conflict):
        rules.start(task, 2, AGENT, DEFAULTS, NOW)  # an attempt that was never assigned


def test_a_cancelled_task_cannot_start() -> None:
    change = rules.cancel(queued(), "no", AGENT, NOW, actor="me")
    assert change is not None
    assert change.event is not None
    assert change.event.data["actor"] == "me"
    with pytest.raises(Conflict):
        rules.start(change.task, 1, AGENT, DEFAULTS, NOW)
    assert rules.cancel(change.task, None, AGENT, NOW, actor="me") is None


def test_reports_move_the_deadline_and_only_progress_is_an_event() -> None:
    task = running()
    later = NOW + timedelta(seconds=20)
    beat = rules.report(task, ReportProgress(task_id=task.task_id), AGENT, DEFAULTS, later)
    assert beat.event is None
    assert beat.task.deadline_at == later + timedelta(seconds=30)
    step = rules.report(
        task, ReportProgress(task_id=task.task_id, progress=40, message="m"), AGENT, DEFAULTS, later
    )
    assert step.event is not None
    assert step.event.type is EventKind.TASK_PROGRESS
    assert (step.task.progress, step.task.progress_message) == (40, "m")


def test_the_deadline_never_passes_the_timeout() -> None:
    task = running(queued(timeout_s=40))
    late = NOW + timedelta(seconds=35)
    beat = rules.report(task, ReportProgress(task_id=task.task_id), AGENT, DEFAULTS, late)
    assert beat.task.deadline_at == NOW + timedelta(seconds=40)
    overdue = rules.time_out(beat.task, AGENT, NOW + timedelta(seconds=41))
    assert overdue is not None
    assert overdue.task.status_reason == "attempt 1 ran longer than timeout_s (40 s)"


def test_a_silent_worker_is_retried_then_timed_out() -> None:
    task = running()
    assert rules.time_out(task, AGENT, NOW + timedelta(seconds=29)) is None  # not yet
    retry = rules.time_out(task, AGENT, NOW + timedelta(seconds=31))
    assert retry is not None
    assert retry.task.status is S.QUEUED
    assert retry.assignment is not None
    assert retry.assignment.attempt == 2
    second = running(retry.task, NOW + timedelta(seconds=32))
    assert second.attempts == 2
    final = rules.time_out(second, AGENT, NOW + timedelta(seconds=100))
    assert final is not None
    assert (final.task.status, final.assignment) == (S.TIMED_OUT, None)
    assert final.event is not None
    assert final.event.type is EventKind.TASK_FAILED


def test_complete_and_fail_end_an_attempt_and_repeats_change_nothing() -> None:
    task = running()
    done = rules.complete(task, CompleteTask(task_id=task.task_id, result=7), AGENT, NOW)
    assert done is not None
    assert (done.task.status, done.task.result, done.task.progress) == (S.SUCCEEDED, 7, 100)
    assert rules.complete(done.task, CompleteTask(task_id=task.task_id), AGENT, NOW) is None
    with pytest.raises(Conflict):
        rules.fail(done.task, FailTask(task_id=task.task_id, error="late"), AGENT, NOW)
    failed = rules.fail(task, FailTask(task_id=task.task_id, error="bad", details=[1]), AGENT, NOW)
    assert failed is not None
    assert failed.task.error == {"message": "bad", "details": [1]}
    with pytest.raises(Conflict):
        rules.complete(task, CompleteTask(task_id=task.task_id, attempt=2), AGENT, NOW)


def test_fail_with_retry_requeues_only_while_attempts_are_left() -> None:
    first = running()
    retry = rules.fail(first, FailTask(task_id=first.task_id, error="e", retry=True), AGENT, NOW)
    assert retry is not None
    assert (retry.task.status, retry.task.status_reason) == (S.QUEUED, "attempt 1 failed: e")
    last = running(retry.task)
    final = rules.fail(last, FailTask(task_id=last.task_id, error="e", retry=True), AGENT, NOW)
    assert final is not None
    assert final.task.status is S.FAILED


@given(st.lists(st.sampled_from(["start", "beat", "silence", "cancel", "complete"]), max_size=12))
def test_any_sequence_keeps_attempts_bounded_and_final_states_final(steps: list[str]) -> None:
    task, now = queued(max_attempts=3), NOW
    for step in steps:
        now += timedelta(seconds=10)
        before = task
        try:
            if step == "start":
                change = rules.start(task, task.attempts + 1, AGENT, DEFAULTS, now)
            elif step == "beat":
                change = rules.report(
                    task, ReportProgress(task_id=task.task_id), AGENT, DEFAULTS, now
                )
            elif step == "silence":
                change = rules.time_out(task, AGENT, now + timedelta(hours=1))
            elif step == "cancel":
                change = rules.cancel(task, None, AGENT, now, actor="t")
            else:
                change = rules.complete(task, CompleteTask(task_id=task.task_id), AGENT, now)
        except Conflict:
            assert before.status is not S.RUNNING or step == "start"
            continue
        if change is not None:
            task = change.task
        assert task.attempts <= task.max_attempts
        if before.status in rules.FINAL:
            assert task.status is before.status
        assert (task.deadline_at is not None) == (task.status is S.RUNNING)
