"""Agent creation, update and deletion rules."""

from datetime import UTC, datetime

import pytest

from agent_orchestrator.contracts.agents import Agent, AgentStatus, CreateAgent, UpdateAgent
from agent_orchestrator.domain.agents import (
    create_agent,
    delete_agent,
    transition_agent,
    update_agent,
)
from agent_orchestrator.domain.errors import Conflict, InvalidTransition

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_new_agent_is_created_at_version_one_with_its_record_and_event() -> None:
    change = create_agent(
        CreateAgent(name="n", type="t", configuration={"k": 1}), actor="me", now=NOW
    )
    assert change.agent.status is AgentStatus.CREATED
    assert change.agent.version == 1
    assert change.agent.configuration == {"k": 1}
    assert change.transition is not None
    assert change.transition.from_status is None
    assert change.transition.actor == "me"
    assert [e.type for e in change.events] == ["created"]
    assert change.agent.agent_id.version == 7


def test_update_changes_only_the_fields_sent_and_bumps_the_version() -> None:
    agent = create_agent(CreateAgent(name="n", type="t", description="d"), actor="a", now=NOW)
    req = UpdateAgent(agent_id=agent.agent.agent_id, metadata={"x": 1})
    change = update_agent(agent.agent, req, now=NOW)
    assert change is not None
    assert change.agent.metadata == {"x": 1}
    assert change.agent.description == "d"
    assert change.agent.version == 2
    assert change.events[0].data["changed"] == ["metadata"]


def test_an_update_that_changes_nothing_is_no_change() -> None:
    agent = create_agent(CreateAgent(name="n", type="t"), actor="a", now=NOW).agent
    assert update_agent(agent, UpdateAgent(agent_id=agent.agent_id, name="n"), now=NOW) is None


def test_a_terminated_agent_cannot_be_updated() -> None:
    agent = create_agent(CreateAgent(name="n", type="t"), actor="a", now=NOW).agent
    gone = agent.model_copy(update={"status": AgentStatus.TERMINATED})
    with pytest.raises(InvalidTransition):
        update_agent(gone, UpdateAgent(agent_id=agent.agent_id, name="x"), now=NOW)


def test_delete_checks_the_expected_version() -> None:
    agent = create_agent(CreateAgent(name="n", type="t"), actor="a", now=NOW).agent
    with pytest.raises(Conflict):
        delete_agent(agent, actor="a", expected_version=5, now=NOW)
    assert delete_agent(agent, actor="a", expected_version=1, now=NOW).type == "deleted"


def test_only_an_adopted_agents_active_event_names_its_protocol_agent() -> None:
    ref = {"agent": "coder", "owner": "acme", "session_name": "s1"}
    adopted = create_agent(
        CreateAgent(name="s1", type="agent", metadata={"protocol_agent": ref}), actor="a", now=NOW
    ).agent
    plain = create_agent(CreateAgent(name="p", type="agent"), actor="a", now=NOW).agent

    def data_on_the_way_to(agent: Agent, *path: AgentStatus) -> list[dict[str, object]]:
        found = []
        for target in path:
            change = transition_agent(
                agent, target, reason=None, actor="a", expected_version=None, now=NOW
            )
            agent = change.agent
            found.append(change.events[0].data)
        return found

    route = (AgentStatus.INITIALIZING, AgentStatus.READY, AgentStatus.ACTIVE, AgentStatus.PAUSED)
    initializing, ready, active, paused = data_on_the_way_to(adopted, *route)
    assert active["protocol_agent"] == ref
    assert all("protocol_agent" not in d for d in (initializing, ready, paused))
    assert all("protocol_agent" not in d for d in data_on_the_way_to(plain, *route))
