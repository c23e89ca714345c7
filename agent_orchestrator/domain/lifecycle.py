"""The agent lifecycle: the transition table and the rule that applies it."""

from types import MappingProxyType

from agent_orchestrator.contracts.agents import AgentStatus
from agent_orchestrator.contracts.events import EventKind
from agent_orchestrator.domain.errors import InvalidTransition

S = AgentStatus

TRANSITIONS: MappingProxyType[AgentStatus, frozenset[AgentStatus]] = MappingProxyType(
    {
        S.CREATED: frozenset({S.INITIALIZING, S.TERMINATED}),
        S.INITIALIZING: frozenset({S.READY, S.ERROR, S.TERMINATED}),
        S.READY: frozenset({S.ACTIVE, S.INITIALIZING, S.TERMINATED}),
        S.ACTIVE: frozenset({S.PAUSED, S.READY, S.ERROR, S.TERMINATED}),
        S.PAUSED: frozenset({S.ACTIVE, S.ERROR, S.TERMINATED}),
        S.ERROR: frozenset({S.INITIALIZING, S.TERMINATED}),
        S.TERMINATED: frozenset(),
    }
)
"""Allowed moves, exactly as the lifecycle table of docs/agents.md."""


def is_allowed(current: AgentStatus, target: AgentStatus) -> bool:
    """True when the table allows ``current`` -> ``target``."""
    return target in TRANSITIONS[current]


def check_transition(current: AgentStatus, target: AgentStatus) -> None:
    """Raise InvalidTransition unless the table allows ``current`` -> ``target``."""
    if is_allowed(current, target):
        return
    allowed = sorted(TRANSITIONS[current])
    if current is S.TERMINATED:
        message = "agent is TERMINATED; no further transitions are possible"
    else:
        message = f"cannot move an agent from {current} to {target}"
    raise InvalidTransition(
        message, details={"from": current, "to": target, "allowed": [str(s) for s in allowed]}
    )


def check_mutable(current: AgentStatus) -> None:
    """Raise InvalidTransition when the agent can no longer be changed."""
    if current is S.TERMINATED:
        raise InvalidTransition("agent is TERMINATED and can no longer be changed")


def event_kind_for(status: AgentStatus) -> EventKind:
    """The event kind published when an agent enters ``status``."""
    if status is S.CREATED:
        return EventKind.CREATED
    return EventKind(status.lower())
