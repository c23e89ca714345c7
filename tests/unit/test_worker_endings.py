"""How the worker SDK ends an attempt: cancelled cleanly, and never retried past its deadline.

A fake client stands in for the service here (the SDK's side only); tests/integration/
test_tasks.py runs the same paths against the real service.
"""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from agent_orchestrator.client import AgentWorker, OrchestratorClient, TaskRun
from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.tasks import Task, TaskStatus

WORKER_LOGGERS = ("agent_orchestrator.client.worker", "agent_orchestrator.client.task_run")


def running_task(deadline_in_s: float = 30.0) -> Task:
    now = datetime.now(UTC)
    return Task(
        task_id=uuid.uuid4(),
        agent_id=uuid.uuid4(),
        status=TaskStatus.RUNNING,
        progress=0,
        attempts=1,
        max_attempts=1,
        timeout_s=600,
        created_at=now,
        updated_at=now,
        started_at=now,
        deadline_at=now + timedelta(seconds=deadline_in_s),
    )


def cancelled(task: Task) -> RequestFailed:
    """The service's reply to a report on a cancelled task."""
    return RequestFailed(
        ErrorCode.CONFLICT,
        f"task {task.task_id} is CANCELLED",
        {"status": "CANCELLED", "reason": "changed my mind"},
    )


class FakeService:
    """The worker's client: records the calls, answers as told."""

    def __init__(self, task: Task, *, progress: Exception | None, end: Exception | None) -> None:
        self.task = task
        self.progress_error = progress
        self.end_error = end
        self.ends: list[str] = []

    async def report_progress(self, task_id: uuid.UUID, attempt: int, *_: Any) -> Task:
        if self.progress_error is not None:
            raise self.progress_error
        return self.task

    async def complete_task(self, task_id: uuid.UUID, attempt: int, result: Any) -> Task:
        self.ends.append("complete")
        if self.end_error is not None:
            raise self.end_error
        return self.task

    async def fail_task(self, task_id: uuid.UUID, attempt: int, error: str, **_: Any) -> Task:
        self.ends.append("fail")
        if self.end_error is not None:
            raise self.end_error
        return self.task


def worker_with(service: FakeService) -> tuple[AgentWorker, TaskRun]:
    client = cast(OrchestratorClient, service)
    worker = AgentWorker(cast(Any, None), service.task.agent_id, client=client)
    return worker, TaskRun(client, service.task.agent_id, service.task)


def worker_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in WORKER_LOGGERS]


async def test_a_cancellation_seen_by_progress_cancels_the_handler_with_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    task = running_task()
    service = FakeService(task, progress=cancelled(task), end=None)
    worker, run = worker_with(service)
    saw: list[BaseException] = []

    async def handler(run: TaskRun) -> Any:
        try:
            await run.progress(10, "working")
        except asyncio.CancelledError as exc:
            saw.append(exc)
            raise
        return "never"

    await worker._attempt(run, handler)
    assert [type(e) for e in saw] == [asyncio.CancelledError]
    assert run.cancelled
    assert service.ends == []  # nothing to report: the task is CANCELLED
    records = worker_records(caplog)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (
            logging.INFO,
            f"task {task.task_id} was cancelled (changed my mind); its handler was stopped",
        )
    ]
    assert all(r.exc_info is None for r in records)


async def test_a_handler_that_ends_after_the_cancellation_leaves_one_info_line_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The handler failed (say, its agent was terminated under it) before any report saw the
    # cancellation: the refused end is the cancellation, not an error.
    caplog.set_level(logging.DEBUG)
    task = running_task()
    service = FakeService(task, progress=None, end=cancelled(task))
    worker, run = worker_with(service)

    async def handler(run: TaskRun) -> Any:
        raise RuntimeError("the agent went away")

    await worker._attempt(run, handler)
    assert service.ends == ["fail"]
    records = worker_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO]
    assert "was cancelled" in records[0].getMessage()
    assert "was not recorded" in records[0].getMessage()
    assert records[0].exc_info is None


async def test_a_handler_failure_is_logged_with_its_traceback_once_recorded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    service = FakeService(running_task(), progress=None, end=None)
    worker, run = worker_with(service)

    async def handler(run: TaskRun) -> Any:
        raise ValueError("no good")

    await worker._attempt(run, handler)
    assert service.ends == ["fail"]
    [record] = worker_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


async def test_the_end_of_an_attempt_is_retried_only_until_its_deadline(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent_orchestrator.client.worker.RETRY_DELAY_S", 0.1)
    unavailable = ServiceUnavailable(ErrorCode.UNAVAILABLE, "no agent-orchestrator answers")
    service = FakeService(running_task(deadline_in_s=0.5), progress=None, end=unavailable)
    worker, run = worker_with(service)

    async def handler(run: TaskRun) -> Any:
        return {"words": 6}

    started = time.monotonic()
    await asyncio.wait_for(worker._attempt(run, handler), 5)
    took = time.monotonic() - started
    assert 0.4 <= took < 2.0, took
    assert 3 <= len(service.ends) <= 8, service.ends  # every 0.1 s until the deadline
    [record] = worker_records(caplog)
    assert record.levelno == logging.WARNING
    assert "before the attempt's deadline" in record.getMessage()


async def test_a_deadline_already_past_gives_one_try(monkeypatch: pytest.MonkeyPatch) -> None:
    unavailable = ServiceUnavailable(ErrorCode.UNAVAILABLE, "no answer within 5 s")
    service = FakeService(running_task(deadline_in_s=-1), progress=None, end=unavailable)
    worker, run = worker_with(service)

    async def handler(run: TaskRun) -> Any:
        return 1

    await asyncio.wait_for(worker._attempt(run, handler), 1)
    assert service.ends == ["complete"]
