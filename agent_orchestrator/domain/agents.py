"""Rules for making and changing agents. Each returns the new agent and what to record."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from agent_orchestrator.contracts.agent_protocol import PROTOCOL_AGENT_KEY, ref_of
from agent_orchestrator.contracts.agents import (
    Agent,
    AgentStatus,
    CreateAgent,
    Transition,
    UpdateAgent,
)
from agent_orchestrator.contracts.events import Event, EventKind
from agent_orchestrator.contracts.templates import Template
from agent_orchestrator.domain.errors import Conflict, NotFound, ValidationFailed
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.domain.lifecycle import check_mutable, check_transition, event_kind_for
from agent_orchestrator.domain.liveness import check_policies
from agent_orchestrator.domain.templates import apply_template, deep_merge, validate_configuration

UPDATABLE_FIELDS = ("name", "description", "configuration", "prompt_template", "metadata")


@dataclass(frozen=True)
class AgentRef:
    """What messages and tasks need to know of an agent (a deleted one: version 0)."""

    agent_id: UUID
    project_id: str | None
    status: AgentStatus
    version: int

    @classmethod
    def of(cls, agent: Agent) -> "AgentRef":
        """The reference of a loaded agent."""
        return cls(agent.agent_id, agent.project_id, agent.status, agent.version)


@dataclass(frozen=True)
class Change:
    """The outcome of a decision: the agent after it, and what must be stored with it."""

    agent: Agent
    transition: Transition | None = None
    events: list[Event] = field(default_factory=list)


def not_found(agent_id: UUID) -> NotFound:
    """The error for an unknown agent (also one outside the caller's project)."""
    return NotFound(f"agent {agent_id} does not exist", details={"agent_id": str(agent_id)})


def new_event(agent: Agent, kind: EventKind, data: dict[str, Any], now: datetime) -> Event:
    """An event about ``agent`` at its current version."""
    return Event(
        event_id=new_id(),
        type=kind,
        agent_id=agent.agent_id,
        project_id=agent.project_id,
        occurred_at=now,
        version=agent.version,
        data=data,
    )


STATE_EVENT_NAMESPACE = UUID("6f1d2c1e-5b7a-4c55-9c1e-7a0c6d5e4b3a")


def revision_event(event: Event, revision: int) -> Event:
    """The event of a state revision: ``event`` with the revision, and an id derived from it
    (so whoever publishes it, and however often, AGENT_EVENTS keeps it once)."""
    data = {**event.data, "revision": revision}
    event_id = uuid5(STATE_EVENT_NAMESPACE, f"{event.agent_id}:{event.type}:{revision}")
    return event.model_copy(update={"event_id": event_id, "data": data})


def create_agent(
    request: CreateAgent, *, template: Template | None = None, actor: str, now: datetime
) -> Change:
    """A new agent in CREATED at version 1, with its creation record and event.

    With a template: its type, its prompt_template unless the request has one, and its
    defaults deep-merged with the request's configuration, validated against its schema.
    """
    fields = request.model_dump()
    if template is not None:
        fields["configuration"] = apply_template(
            template, agent_type=request.type, configuration=request.configuration
        )
        fields["type"] = template.agent_type
        fields["template_version"] = template.version
        if request.prompt_template is None:
            fields["prompt_template"] = template.prompt_template
    elif request.template_version is not None:
        raise ValidationFailed(
            "template_version needs template_id", details=[{"path": "template_version"}]
        )
    elif request.type is None:
        raise ValidationFailed("type is required without a template", details=[{"path": "type"}])
    check_policies(fields["configuration"])
    agent = Agent(
        agent_id=new_id(),
        status=AgentStatus.CREATED,
        version=1,
        created_at=now,
        updated_at=now,
        **fields,
    )
    transition = Transition(
        from_status=None, to_status=AgentStatus.CREATED, actor=actor, at=now, version=1
    )
    event = new_event(agent, EventKind.CREATED, {"agent": agent.model_dump(mode="json")}, now)
    return Change(agent, transition, [event])


def check_expected_version(agent: Agent, expected_version: int | None) -> None:
    """Raise Conflict when the caller expected another version."""
    if expected_version is not None and expected_version != agent.version:
        raise Conflict(
            f"agent is at version {agent.version}, not {expected_version}",
            details={"expected_version": expected_version, "version": agent.version},
        )


def update_agent(
    agent: Agent, request: UpdateAgent, *, template: Template | None = None, now: datetime
) -> Change | None:
    """Apply the fields the request sets; None when nothing would change.

    A new configuration of an agent made from a template is merged over that template
    version's defaults and validated against its schema, as at creation.
    """
    check_mutable(agent.status)
    check_expected_version(agent, request.expected_version)
    requested = {name: getattr(request, name) for name in request.model_fields_set}
    if template is not None and requested.get("configuration") is not None:
        requested["configuration"] = deep_merge(
            template.default_configuration, requested["configuration"]
        )
        validate_configuration(
            template.config_schema, requested["configuration"], field="configuration"
        )
    changes = {
        name: requested[name]
        for name in UPDATABLE_FIELDS
        if name in requested and requested[name] != getattr(agent, name)
    }
    if "name" in changes and changes["name"] is None:
        raise ValidationFailed("name cannot be null", details=[{"path": "name"}])
    if "configuration" in changes and changes["configuration"] is None:
        changes["configuration"] = {}
    if "configuration" in changes:
        check_policies(changes["configuration"])
    if "metadata" in changes and changes["metadata"] is None:
        changes["metadata"] = {}
    if not changes:
        return None
    updated = agent.model_copy(update={**changes, "version": agent.version + 1, "updated_at": now})
    data = {"changed": sorted(changes), "agent": updated.model_dump(mode="json")}
    return Change(updated, None, [new_event(updated, EventKind.UPDATED, data, now)])


def transition_agent(
    agent: Agent,
    target: AgentStatus,
    *,
    reason: str | None,
    actor: str,
    expected_version: int | None,
    now: datetime,
) -> Change:
    """Move ``agent`` to ``target`` if the table allows it."""
    check_expected_version(agent, expected_version)
    check_transition(agent.status, target)
    moved = agent.model_copy(
        update={
            "status": target,
            "status_reason": reason,
            "version": agent.version + 1,
            "updated_at": now,
        }
    )
    transition = Transition(
        from_status=agent.status,
        to_status=target,
        reason=reason,
        actor=actor,
        at=now,
        version=moved.version,
    )
    data = transition.model_dump(mode="json", exclude={"version"})
    if target is AgentStatus.ACTIVE and (ref := ref_of(agent.metadata)) is not None:
        # The protocol adapter serves adopted agents from their `active` events alone, without
        # a request per activation.
        data[PROTOCOL_AGENT_KEY] = ref.model_dump(mode="json")
    return Change(moved, transition, [new_event(moved, event_kind_for(target), data, now)])


def delete_agent(agent: Agent, *, actor: str, expected_version: int | None, now: datetime) -> Event:
    """The event that records an agent's deletion."""
    check_expected_version(agent, expected_version)
    gone = agent.model_copy(update={"version": agent.version + 1, "updated_at": now})
    return new_event(gone, EventKind.DELETED, {"actor": actor, "last_status": agent.status}, now)
