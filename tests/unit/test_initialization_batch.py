"""The initialization job prepares a fetched batch concurrently, each job with its own outcome."""

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    CreateAgent,
    LifecycleCommand,
)
from agent_orchestrator.domain.errors import InitializationFailed, Unavailable
from agent_orchestrator.handlers.agents import AgentCommands
from agent_orchestrator.handlers.initialization import InitializationStep, Initializer
from agent_orchestrator.handlers.lifecycle import LifecycleCommands
from agent_orchestrator.handlers.recovery import Recovery
from tests.unit.fakes import FakeAgents, FakeHeartbeats, FakeTasks, FakeTemplates, Recorder
from tests.unit.test_command_areas import ctx, no_arming


@dataclass
class JobMessage:
    """A fetched job message: its payload, its delivery count, and what the job did with it."""

    data: bytes
    num_delivered: int = 1
    outcome: list[Any] = field(default_factory=list)

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(num_delivered=self.num_delivered)

    async def ack(self) -> None:
        self.outcome.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.outcome.append(("nak", delay))

    async def term(self) -> None:
        self.outcome.append("term")


def initializer(
    agents: FakeAgents, steps: list[InitializationStep], max_attempts: int = 3
) -> Initializer:
    recovery = Recovery(agents, FakeTasks(agents), Recorder(), no_arming, max_state_bytes=1024)
    return Initializer(agents=agents, steps=steps, max_attempts=max_attempts, recovery=recovery)


async def initializing_agents(agents: FakeAgents, names: list[str]) -> dict[str, JobMessage]:
    """Agents named ``names`` moved to INITIALIZING; their job messages from the outbox."""
    area = AgentCommands(
        agents=agents,
        templates=FakeTemplates(),
        states=Recorder(),
        checkpointer=Recorder(),
        schedules=Recorder(),
        heartbeats=FakeHeartbeats(),
    )
    lifecycle = LifecycleCommands(agents=agents, schedules=Recorder("cancel"), on_active=no_arming)
    jobs = {}
    for name in names:
        agent = await area.create_agent(CreateAgent(name=name, type="llm"), ctx())
        await lifecycle.move_to_initializing(LifecycleCommand(agent_id=agent.agent_id), ctx())
        job = next(
            m
            for m in agents.outbox
            if m.subject == subjects.initialize_job_subject(str(agent.agent_id))
        )
        jobs[name] = JobMessage(job.payload)
    return jobs


def status_of(agents: FakeAgents, name: str) -> tuple[AgentStatus, str | None]:
    agent = next(a for a in agents.rows.values() if a.name == name)
    return agent.status, agent.status_reason


async def test_a_batch_runs_its_steps_concurrently_and_ends_each_job_on_its_own() -> None:
    agents = FakeAgents()
    jobs = await initializing_agents(agents, ["fine-1", "fine-2", "invalid", "flaky", "db-down"])
    running, most_at_once = 0, 0

    async def step(agent: Agent) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0.01)
        running -= 1
        if agent.name == "invalid":
            raise InitializationFailed("model 'x' is not available")
        if agent.name == "flaky":
            raise RuntimeError("transient glitch")
        if agent.name == "db-down":
            raise Unavailable("database down")

    await initializer(agents, [step]).initialize_batch(list(jobs.values()))

    assert most_at_once == len(jobs)  # one batch, prepared concurrently
    assert status_of(agents, "fine-1") == (AgentStatus.READY, "initialized")
    assert status_of(agents, "fine-2") == (AgentStatus.READY, "initialized")
    assert status_of(agents, "invalid") == (
        AgentStatus.ERROR,
        "initialization failed: model 'x' is not available",
    )
    assert jobs["fine-1"].outcome == jobs["invalid"].outcome == ["ack"]
    # The others stay INITIALIZING and come back later: the failure of one redelivers only it.
    assert status_of(agents, "flaky")[0] is AgentStatus.INITIALIZING
    assert jobs["flaky"].outcome == [("nak", 1.0)]
    assert status_of(agents, "db-down")[0] is AgentStatus.INITIALIZING
    assert jobs["db-down"].outcome == [("nak", 1.0)]


async def test_a_redelivered_job_ends_in_error_after_max_attempts_and_then_is_acked() -> None:
    agents = FakeAgents()
    jobs = await initializing_agents(agents, ["broken"])

    async def step(agent: Agent) -> None:
        raise RuntimeError("always broken")

    job = jobs["broken"]
    job.num_delivered = 2
    await initializer(agents, [step], max_attempts=3).initialize_batch([job])
    assert job.outcome == [("nak", 2.0)]
    job.num_delivered = 3
    await initializer(agents, [step], max_attempts=3).initialize_batch([job])
    status, reason = status_of(agents, "broken")
    assert status is AgentStatus.ERROR
    assert reason is not None
    assert reason.startswith("initialization failed after 3 attempts")
    assert job.outcome[-1] == "ack"


async def test_a_job_delivered_again_after_ready_is_acked_and_changes_nothing() -> None:
    agents = FakeAgents()
    jobs = await initializing_agents(agents, ["once"])
    calls: list[str] = []

    async def step(agent: Agent) -> None:
        calls.append(agent.name)

    init = initializer(agents, [step])
    await init.initialize_batch([jobs["once"]])
    ready = next(iter(agents.rows.values()))
    await init.initialize_batch([JobMessage(jobs["once"].data, num_delivered=2)])

    assert calls == ["once"]
    assert next(iter(agents.rows.values())) == ready
    assert ready.status is AgentStatus.READY


async def test_a_malformed_job_is_terminated_and_the_rest_of_its_batch_goes_on() -> None:
    agents = FakeAgents()
    jobs = await initializing_agents(agents, ["fine"])
    malformed = JobMessage(b'{"agent_id": "not a uuid"}')

    await initializer(agents, []).initialize_batch([malformed, jobs["fine"]])

    assert malformed.outcome == ["term"]
    assert jobs["fine"].outcome == ["ack"]
    assert status_of(agents, "fine")[0] is AgentStatus.READY
