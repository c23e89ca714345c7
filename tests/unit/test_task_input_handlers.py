"""The task area's input handlers and the timeout sweep, built with in-memory fakes: questions
and answers through TaskCommands, sweeps racing on one revision, and max_concurrent_tasks in
agent.execute and task.start. tests/integration/test_task_input.py runs the same on real
servers."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from agent_orchestrator.contracts.agents import Agent, AgentStatus
from agent_orchestrator.contracts.tasks import (
    ExecuteTask,
    InputSource,
    OnInputTimeout,
    ProvideInput,
    RequestInput,
    StartTask,
    Task,
    TaskStatus,
)
from agent_orchestrator.domain.errors import CapacityReached, Conflict
from agent_orchestrator.domain.tasks import TaskDefaults
from agent_orchestrator.handlers.commands import CommandContext
from agent_orchestrator.handlers.tasks import TaskCommands, time_out_tasks
from tests.unit.fakes import FakeAgents, FakeTasks

S = TaskStatus
DEFAULTS = TaskDefaults(timeout_s=600, max_attempts=2, heartbeat_s=30, input_timeout_s=3600)


def ctx(actor: str = "tester") -> CommandContext:
    return CommandContext("test", actor, datetime.now(UTC))


def area(configuration: dict[str, Any] | None = None) -> tuple[TaskCommands, FakeTasks, Agent]:
    agents = FakeAgents()
    now = datetime.now(UTC)
    agent = Agent(
        agent_id=uuid4(),
        name="asker",
        type="t",
        project_id="p",
        configuration=configuration or {},
        status=AgentStatus.ACTIVE,
        version=4,
        created_at=now,
        updated_at=now,
    )
    agents.rows[agent.agent_id] = agent
    tasks = FakeTasks(agents)
    return TaskCommands(agents=agents, tasks=tasks, defaults=DEFAULTS), tasks, agent


async def running(commands: TaskCommands, agent: Agent) -> Task:
    queued = await commands.execute(ExecuteTask(agent_id=agent.agent_id), ctx())
    return await commands.start_task(StartTask(task_id=queued.task_id, attempt=1), ctx())


async def test_an_answer_resumes_the_task_and_a_second_one_is_a_conflict() -> None:
    commands, tasks, agent = area()
    task = await running(commands, agent)
    ask = RequestInput(task_id=task.task_id, attempt=1, input_seq=1, prompt="go?")
    asked = await commands.request_input(ask, ctx())
    assert asked.status is S.INPUT_REQUIRED
    assert await commands.request_input(ask, ctx()) == asked  # a repeat changes nothing
    answer = ProvideInput(task_id=task.task_id, input="yes")
    resumed = await commands.provide_input(answer, ctx("alice"))
    assert [(a.input, a.answered_by) for a in resumed.input_answers] == [("yes", "alice")]
    with pytest.raises(Conflict):
        await commands.provide_input(answer, ctx("bob"))
    kinds = [m.subject.rsplit(".", 1)[1] for m in tasks.outbox]
    assert kinds == [
        "task_queued",
        "task_started",
        "task_input_required",
        "task_input_provided",
    ]


async def test_sweeps_racing_on_overdue_questions_apply_each_on_timeout_once() -> None:
    commands, tasks, agent = area()
    waiting = []
    for _ in range(10):
        task = await running(commands, agent)
        ask = RequestInput(
            task_id=task.task_id,
            attempt=1,
            prompt="later?",
            timeout_s=1,
            on_timeout=OnInputTimeout.DEFAULT,
            default_input="no",
        )
        waiting.append(await commands.request_input(ask, ctx()))
    past = datetime.now(UTC) - timedelta(seconds=1)
    for task in waiting:  # past their deadline
        stored, revision = tasks.rows[task.task_id]
        assert stored.input_request is not None
        question = stored.input_request.model_copy(update={"deadline_at": past})
        late = stored.model_copy(update={"input_request": question, "deadline_at": past})
        tasks.rows[task.task_id] = (late, revision)
    before = len(tasks.outbox)

    swept = await asyncio.gather(*(time_out_tasks(tasks, DEFAULTS) for _ in range(3)))

    assert sum(swept) == 10
    assert tasks.stale_saves > 0  # they did race: the losers re-read and found nothing due
    for task in waiting:
        after, _ = tasks.rows[task.task_id]
        assert after.status is S.RUNNING
        assert [(a.input, a.source) for a in after.input_answers] == [("no", InputSource.DEFAULT)]
    assert len(tasks.outbox) - before == 10
    assert await time_out_tasks(tasks, DEFAULTS) == 0


async def test_an_agent_at_its_limit_rejects_or_makes_the_start_wait() -> None:
    commands, _, agent = area({"tasks": {"max_concurrent_tasks": 1}})
    await running(commands, agent)
    queued = await commands.execute(ExecuteTask(agent_id=agent.agent_id), ctx())
    with pytest.raises(CapacityReached):
        await commands.start_task(StartTask(task_id=queued.task_id, attempt=1), ctx())

    rejecting, _, busy_agent = area({"tasks": {"max_concurrent_tasks": 1, "on_busy": "reject"}})
    await running(rejecting, busy_agent)
    with pytest.raises(Conflict, match="on_busy `reject`"):
        await rejecting.execute(ExecuteTask(agent_id=busy_agent.agent_id), ctx())
