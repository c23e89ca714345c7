"""``TaskRun.ask`` against a fake service that applies the real rules of asking (no servers):
replayed questions return at once, a question out of turn is the program's error, a cancel ends
the wait, heartbeats pause while a question waits, and an unreachable service is waited out.
tests/integration/test_task_ask.py runs the SDK against the real service."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from agent_orchestrator.client import OrchestratorClient, TaskRun
from agent_orchestrator.client.errors import RequestFailed, ServiceUnavailable
from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.errors import ErrorCode
from agent_orchestrator.contracts.tasks import (
    ExecuteTask,
    ProvideInput,
    RequestInput,
    Task,
    TaskStatus,
)
from agent_orchestrator.domain import task_input
from agent_orchestrator.domain import tasks as rules
from agent_orchestrator.domain.agents import AgentRef
from agent_orchestrator.domain.errors import OrchestratorError

AGENT = AgentRef(uuid.uuid4(), "p", AgentStatus.ACTIVE, 1)
# A 1.5 s heartbeat window: a waiting ask asks again every 0.5 s.
DEFAULTS = rules.TaskDefaults(timeout_s=600, max_attempts=2, heartbeat_s=1.5)


class FakeService:
    """The worker's client for asking: the task in memory, changed by the domain's rules."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.asked: list[RequestInput] = []
        self.progress_reports = 0
        self.unavailable = 0  # how many next requests find no service

    async def request_input(self, request: RequestInput) -> Task:
        self.asked.append(request)
        if self.unavailable:
            self.unavailable -= 1
            raise ServiceUnavailable(ErrorCode.UNAVAILABLE, "no service")
        try:
            change = task_input.request_input(
                self.task, request, AGENT, DEFAULTS, datetime.now(UTC)
            )
        except OrchestratorError as exc:
            raise RequestFailed(exc.code, str(exc), exc.details) from exc
        if change is not None:
            self.task = change.task
        return self.task

    async def report_progress(self, *_: Any) -> Task:
        self.progress_reports += 1
        return self.task

    def answer(self, value: Any) -> None:
        body = ProvideInput(task_id=self.task.task_id, input=value)
        now = datetime.now(UTC)
        self.task = task_input.provide_input(self.task, body, AGENT, DEFAULTS, now, actor="a").task

    def cancel(self) -> None:
        change = rules.cancel(self.task, "no", AGENT, datetime.now(UTC), actor="a")
        assert change is not None
        self.task = change.task


def started() -> FakeService:
    now = datetime.now(UTC)
    queued = rules.queue(ExecuteTask(agent_id=AGENT.agent_id), AGENT, DEFAULTS, now).task
    change = rules.start(queued, 1, AGENT, DEFAULTS, now)
    assert change is not None
    return FakeService(change.task)


def run_of(service: FakeService) -> TaskRun:
    return TaskRun(cast(OrchestratorClient, service), AGENT.agent_id, service.task)


async def test_the_answer_reaches_the_waiting_handler_and_heartbeats_pause_meanwhile() -> None:
    service = started()
    run = run_of(service)
    asking = asyncio.create_task(run.ask("go?", schema={"enum": ["yes", "no"]}))
    await asyncio.sleep(0.1)
    assert service.task.status is TaskStatus.INPUT_REQUIRED
    assert await run.keep_alive()
    assert service.progress_reports == 0  # no beats while a question waits
    service.answer("yes")
    assert await asyncio.wait_for(asking, 2) == "yes"
    assert run.task.status is TaskStatus.RUNNING
    assert service.progress_reports == 1  # one at once, in the window the answer opened
    assert await run.keep_alive()
    assert service.progress_reports == 2  # and the beats are back


async def test_a_replayed_task_gets_its_recorded_answers_at_once_then_asks_the_next() -> None:
    service = started()
    first = run_of(service)
    asking = asyncio.create_task(first.ask("one?"))
    await asyncio.sleep(0.05)
    service.answer(1)
    assert await asyncio.wait_for(asking, 2) == 1
    # the worker dies; the next attempt runs the program from the start
    service.task = service.task.model_copy(update={"attempts": 2})
    again = run_of(service)
    begun = time.monotonic()
    reports = service.progress_reports
    assert await again.ask("one?") == 1
    assert time.monotonic() - begun < 0.2
    assert service.progress_reports == reports  # a replayed answer needs no extra beat
    second = asyncio.create_task(again.ask("two?"))
    await asyncio.sleep(0.05)
    assert service.task.input_request is not None
    assert service.task.input_request.input_seq == 2
    service.answer(2)
    assert await asyncio.wait_for(second, 2) == 2
    assert [r.input_seq for r in service.asked if r.prompt == "one?"] == [1, 1, 1]


async def test_a_question_out_of_turn_is_the_programs_error_not_a_lost_attempt() -> None:
    service = started()
    run = run_of(service)
    run._asked = 1  # as if the program skipped its first question
    with pytest.raises(RequestFailed) as out_of_turn:
        await run.ask("two?")
    assert out_of_turn.value.code is ErrorCode.CONFLICT
    assert not run.cancelled


async def test_a_cancel_while_waiting_cancels_the_ask() -> None:
    service = started()
    run = run_of(service)
    asking = asyncio.create_task(run.ask("go?"))
    await asyncio.sleep(0.1)
    service.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asking, 2)
    assert run.cancelled
    assert isinstance(run.taken_by, RequestFailed)
    assert run.taken_by.details["status"] == TaskStatus.CANCELLED


async def test_an_unreachable_service_is_waited_out() -> None:
    service = started()
    service.unavailable = 2
    run = run_of(service)
    asking = asyncio.create_task(run.ask("go?"))
    await asyncio.sleep(1.2)
    assert service.task.status is TaskStatus.INPUT_REQUIRED
    service.answer("late but fine")
    assert await asyncio.wait_for(asking, 2) == "late but fine"


def test_on_timeout_default_is_implied_by_a_default() -> None:
    service = started()
    run = run_of(service)

    async def ask() -> None:
        asking = asyncio.create_task(run.ask("go?", default="no", timeout_s=60))
        await asyncio.sleep(0.05)
        asking.cancel()

    asyncio.run(ask())
    request = service.asked[0]
    assert (request.on_timeout, request.default_input, request.timeout_s) == ("default", "no", 60)
    assert service.task.input_request is not None
    assert service.task.input_request.deadline_at > datetime.now(UTC) + timedelta(seconds=50)
