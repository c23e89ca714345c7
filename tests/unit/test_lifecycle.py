"""The transition table: docs/agents.md's exactly; nothing illegal accepted; TERMINATED final."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_orchestrator.contracts.agents import Agent, AgentStatus, CreateAgent
from agent_orchestrator.domain.agents import create_agent, transition_agent
from agent_orchestrator.domain.errors import Conflict, InvalidTransition
from agent_orchestrator.domain.lifecycle import TRANSITIONS, check_transition, event_kind_for

S = AgentStatus
NOW = datetime(2026, 1, 1, tzinfo=UTC)

CONTRACT_TABLE = {
    S.CREATED: {S.INITIALIZING, S.TERMINATED},
    S.INITIALIZING: {S.READY, S.ERROR, S.TERMINATED},
    S.READY: {S.ACTIVE, S.INITIALIZING, S.TERMINATED},
    S.ACTIVE: {S.PAUSED, S.READY, S.ERROR, S.TERMINATED},
    S.PAUSED: {S.ACTIVE, S.ERROR, S.TERMINATED},
    S.ERROR: {S.INITIALIZING, S.TERMINATED},
    S.TERMINATED: set(),
}

statuses = st.sampled_from(list(AgentStatus))


def make_agent(status: AgentStatus = S.CREATED) -> Agent:
    agent = create_agent(CreateAgent(name="a", type="t"), actor="test", now=NOW).agent
    return agent.model_copy(update={"status": status})


def test_table_is_the_contracts_table() -> None:
    assert {k: set(v) for k, v in TRANSITIONS.items()} == CONTRACT_TABLE


@given(current=statuses, target=statuses)
def test_a_transition_is_accepted_exactly_when_the_table_lists_it(
    current: AgentStatus, target: AgentStatus
) -> None:
    agent = make_agent(current)
    if target in CONTRACT_TABLE[current]:
        moved = transition_agent(
            agent, target, reason=None, actor="t", expected_version=None, now=NOW
        )
        assert moved.agent.status is target
        assert moved.agent.version == agent.version + 1
        assert moved.transition is not None
        assert moved.transition.from_status is current
        assert [e.type for e in moved.events] == [event_kind_for(target)]
    else:
        with pytest.raises(InvalidTransition):
            transition_agent(agent, target, reason=None, actor="t", expected_version=None, now=NOW)


@given(walk=st.lists(statuses, max_size=30))
def test_no_walk_ever_leaves_terminated(walk: list[AgentStatus]) -> None:
    agent = make_agent()
    for target in walk:
        try:
            agent = transition_agent(
                agent, target, reason=None, actor="t", expected_version=None, now=NOW
            ).agent
        except InvalidTransition:
            continue
    if S.TERMINATED in walk and agent.status is S.TERMINATED:
        for target in AgentStatus:
            with pytest.raises(InvalidTransition):
                check_transition(agent.status, target)


def test_a_stale_expected_version_is_a_conflict_even_for_a_legal_move() -> None:
    agent = make_agent(S.ACTIVE)
    with pytest.raises(Conflict):
        transition_agent(
            agent, S.PAUSED, reason=None, actor="t", expected_version=agent.version + 1, now=NOW
        )


def test_event_kind_is_the_lower_case_status() -> None:
    assert event_kind_for(S.PAUSED) == "paused"
    assert event_kind_for(S.ERROR) == "error"
