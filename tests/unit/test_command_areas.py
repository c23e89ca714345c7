"""Command areas and jobs built with in-memory fakes, their handler methods called directly."""

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    ChangeStatus,
    CountAgents,
    CreateAgent,
    GetAgent,
    LifecycleCommand,
)
from agent_orchestrator.contracts.checkpoints import Schedule
from agent_orchestrator.contracts.templates import CreateTemplate, GetTemplate
from agent_orchestrator.domain.errors import Conflict, InvalidTransition, NotFound
from agent_orchestrator.handlers.agents import AgentCommands
from agent_orchestrator.handlers.checkpoint_schedules import CheckpointScheduler
from agent_orchestrator.handlers.commands import CommandContext, commands_of
from agent_orchestrator.handlers.lifecycle import LifecycleCommands
from agent_orchestrator.handlers.templates import TemplateCommands
from tests.unit.fakes import FakeAgents, FakeHeartbeats, FakeTemplates, Recorder


async def no_arming(agent: Agent) -> None:
    """Lifecycle areas' on_active hook, when a test does not look at it."""


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def ctx(subject: str = "test", actor: str = "tester") -> CommandContext:
    return CommandContext(subject, actor, NOW)


def agent_area(
    agents: FakeAgents,
    templates: FakeTemplates | None = None,
    heartbeats: FakeHeartbeats | None = None,
) -> AgentCommands:
    return AgentCommands(
        agents=agents,
        templates=templates or FakeTemplates(),
        states=Recorder(),
        checkpointer=Recorder(),
        schedules=Recorder(),
        heartbeats=heartbeats or FakeHeartbeats(),
    )


async def test_created_agent_is_stored_with_its_event_and_read_back_with_its_heartbeat() -> None:
    agents, heartbeats = FakeAgents(), FakeHeartbeats()
    area = agent_area(agents, heartbeats=heartbeats)

    created = await area.create_agent(CreateAgent(name="scout", type="llm"), ctx())

    assert created.status is AgentStatus.CREATED
    assert agents.rows[created.agent_id] == created
    assert [m.subject for m in agents.outbox] == [
        subjects.event_subject(str(created.agent_id), "created")
    ]
    heartbeats.beats[created.agent_id] = NOW
    read = await area.get_agent(GetAgent(agent_id=created.agent_id), ctx())
    assert read.last_heartbeat_at == NOW
    assert read.model_copy(update={"last_heartbeat_at": None}) == created


async def test_getting_an_unknown_agent_is_not_found() -> None:
    with pytest.raises(NotFound):
        await agent_area(FakeAgents()).get_agent(GetAgent(agent_id=uuid4()), ctx())


async def test_counts_are_by_status_and_by_template_version_only_for_one_template() -> None:
    agents = FakeAgents()
    area = agent_area(agents)
    template_id = uuid4()
    for name, version in (("scout", 1), ("Scout two", 2), ("writer", 2)):
        made = await area.create_agent(CreateAgent(name=name, type="llm"), ctx())
        agents.rows[made.agent_id] = made.model_copy(
            update={"template_id": template_id, "template_version": version}
        )
    agents.rows[made.agent_id] = agents.rows[made.agent_id].model_copy(
        update={"status": AgentStatus.PAUSED}
    )

    every = await area.count_agents(CountAgents(), ctx())
    assert (every.total, every.by_status, every.by_template_version) == (
        3,
        {AgentStatus.CREATED: 2, AgentStatus.PAUSED: 1},
        {},
    )
    by_version = await area.count_agents(CountAgents(template_id=template_id), ctx())
    assert by_version.by_template_version == {"1": 1, "2": 2}
    scouts = await area.count_agents(CountAgents(name="SCOUT"), ctx())
    assert (scouts.total, scouts.by_status) == (2, {AgentStatus.CREATED: 2})


async def created_agent(agents: FakeAgents) -> Agent:
    return await agent_area(agents).create_agent(CreateAgent(name="a", type="llm"), ctx())


async def test_a_transition_is_saved_and_arms_liveness_only_on_activation() -> None:
    agents, armed, schedules = FakeAgents(), Recorder("arm"), Recorder("cancel")
    area = LifecycleCommands(agents=agents, schedules=schedules, on_active=armed.arm)
    agent = await created_agent(agents)

    initializing = await area.move_to_initializing(
        LifecycleCommand(agent_id=agent.agent_id, reason="go"), ctx()
    )
    assert (initializing.status, initializing.version) == (AgentStatus.INITIALIZING, 2)
    assert armed.calls == []  # only a move to ACTIVE arms the liveness monitor

    agents.rows[agent.agent_id] = initializing.model_copy(update={"status": AgentStatus.READY})
    active = await area.change_status(
        ChangeStatus(agent_id=agent.agent_id, status=AgentStatus.ACTIVE), ctx()
    )
    assert active.status is AgentStatus.ACTIVE
    assert armed.calls == [("arm", (active,))]

    await area.move_to_terminated(LifecycleCommand(agent_id=agent.agent_id), ctx())
    assert schedules.calls == [("cancel", (str(agent.agent_id),))]


async def test_an_illegal_transition_is_refused_and_changes_nothing() -> None:
    agents = FakeAgents()
    area = LifecycleCommands(agents=agents, schedules=Recorder("cancel"), on_active=no_arming)
    agent = await created_agent(agents)

    with pytest.raises(InvalidTransition):
        await area.move_to_paused(LifecycleCommand(agent_id=agent.agent_id), ctx())
    assert agents.rows[agent.agent_id] == agent
    assert len(agents.outbox) == 1  # only the creation event


async def test_a_transition_decides_again_after_a_lost_race_and_gives_up_with_conflict() -> None:
    agents = FakeAgents()
    area = LifecycleCommands(agents=agents, schedules=Recorder("cancel"), on_active=no_arming)
    agent = await created_agent(agents)
    command = LifecycleCommand(agent_id=agent.agent_id)

    agents.lost_races = 2
    moved = await area.move_to_initializing(command, ctx())
    assert moved.status is AgentStatus.INITIALIZING

    agents.lost_races = 1000
    with pytest.raises(Conflict, match="is being changed by others too often"):
        await area.move_to_terminated(command, ctx())


async def test_a_created_template_is_read_back_at_version_1() -> None:
    templates = FakeTemplates()
    area = TemplateCommands(templates=templates)

    created = await area.create_template(
        CreateTemplate(name="researcher", agent_type="llm", default_configuration={"m": 1}),
        ctx(),
    )

    assert created.version == 1
    assert [e.type for e in templates.events] == ["created"]
    read = await area.get_template(GetTemplate(template_id=created.template_id), ctx())
    assert read == created


def test_an_area_lists_its_marked_handlers_in_the_order_written() -> None:
    area = LifecycleCommands(agents=FakeAgents(), schedules=Recorder(), on_active=no_arming)
    assert [spec.subject for spec, _ in commands_of(area)] == [
        subjects.AGENT_STATUS,
        subjects.AGENT_INITIALIZE,
        subjects.AGENT_ACTIVATE,
        subjects.AGENT_PAUSE,
        subjects.AGENT_TERMINATE,
        subjects.AGENT_HISTORY,
    ]
    assert [handler.__name__ for _, handler in commands_of(area)][:2] == [
        "change_status",
        "move_to_initializing",
    ]


async def test_a_scheduled_firing_for_a_deleted_agent_cancels_its_schedule() -> None:
    schedules, checkpointer = Recorder("cancel"), Recorder("take")
    scheduler = CheckpointScheduler(
        agents=FakeAgents(), schedules=schedules, checkpointer=checkpointer
    )
    agent_id = uuid4()

    await scheduler.take(Schedule(agent_id=agent_id, active=True, interval_s=60, keep_last=2))

    assert schedules.calls == [("cancel", (str(agent_id),))]
    assert checkpointer.calls == []
