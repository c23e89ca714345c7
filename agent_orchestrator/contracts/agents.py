"""Agents and their lifecycle: requests, replies and the Transition record."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    EXAMPLE_TIME,
    MAX_VERSION,
    Cursor,
    ExpectedVersion,
    JsonInt,
    JsonObject,
    Limit,
    QueryExpectedVersion,
    Reason,
    Reply,
    Request,
    Timestamp,
    examples,
)


class AgentStatus(StrEnum):
    """Lifecycle status of an agent."""

    CREATED = "CREATED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ERROR = "ERROR"
    TERMINATED = "TERMINATED"


Name = Annotated[str, Field(min_length=1, max_length=200, description="Display name.")]
AgentType = Annotated[
    str, Field(min_length=1, max_length=100, description="Kind of agent, e.g. `researcher`.")
]
Description = Annotated[str | None, Field(default=None, max_length=4000)]
ProjectId = Annotated[
    str | None,
    Field(default=None, min_length=1, max_length=200, description="Owning project."),
]
PromptTemplate = Annotated[str | None, Field(default=None, max_length=100_000)]
NameSearch = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only agents whose name contains this text (any case).",
    ),
]


class Agent(Reply):
    """An agent as stored by the orchestrator."""

    model_config = examples(
        {
            "agent_id": EXAMPLE_AGENT_ID,
            "name": "researcher",
            "type": "llm",
            "project_id": "acme",
            "configuration": {"model": "small"},
            "metadata": {},
            "status": "ACTIVE",
            "status_reason": None,
            "version": 4,
            "created_at": EXAMPLE_TIME,
            "updated_at": EXAMPLE_TIME,
            "last_heartbeat_at": EXAMPLE_TIME,
        },
    )

    agent_id: UUID = Field(description="UUIDv7.")
    name: str
    type: str
    description: str | None = None
    project_id: str | None = None
    template_id: UUID | None = None
    template_version: int | None = None
    configuration: JsonObject = Field(default_factory=dict)
    prompt_template: str | None = None
    metadata: JsonObject = Field(default_factory=dict)
    status: AgentStatus
    status_reason: str | None = Field(default=None, description="Reason of the last transition.")
    version: int = Field(description="Increases by one on every change.")
    created_at: Timestamp
    updated_at: Timestamp
    last_heartbeat_at: datetime | None = Field(
        default=None,
        description="When its worker last sent a heartbeat (agent.get and agent.list; null if "
        "none is alive).",
    )


class CreateAgent(Request):
    """Create an agent in status CREATED, from a template or from scratch."""

    model_config = examples(
        {
            "name": "researcher",
            "type": "llm",
            "project_id": "acme",
            "configuration": {"model": "small", "liveness": {"heartbeat_window_s": 15}},
            "metadata": {"team": "search"},
        },
    )

    name: Name
    type: Annotated[
        str | None,
        Field(
            default=None,
            min_length=1,
            max_length=100,
            description="Kind of agent; required without a template, else must match it.",
        ),
    ] = None
    description: Description = None
    project_id: ProjectId = None
    template_id: UUID | None = None
    template_version: JsonInt | None = Field(default=None, ge=1, le=MAX_VERSION)
    configuration: JsonObject = Field(default_factory=dict)
    prompt_template: PromptTemplate = None
    metadata: JsonObject = Field(default_factory=dict)


class GetAgent(Request):
    """Read one agent."""

    agent_id: UUID


class ListAgents(Request):
    """List agents, newest first, with optional filters."""

    project_id: ProjectId = None
    status: AgentStatus | None = None
    type: str | None = Field(default=None, max_length=100)
    template_id: UUID | None = None
    name: NameSearch = None
    limit: Limit = 50
    cursor: Cursor = None


class CountAgents(Request):
    """Count agents by status (and by template version, given a template), with list filters."""

    project_id: ProjectId = None
    type: str | None = Field(default=None, max_length=100)
    template_id: UUID | None = None
    name: NameSearch = None


class AgentCounts(Reply):
    """How many agents match, in all and by status (and by template version)."""

    total: int = Field(description="Agents matching the filters.")
    by_status: dict[AgentStatus, int] = Field(
        description="Agents by status; a status with none is left out."
    )
    by_template_version: dict[str, int] = Field(
        default_factory=dict,
        description="With `template_id`: agents by the template version they were made from.",
    )


class AgentPage(Reply):
    """One page of agents."""

    items: list[Agent]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null on the last page.")


class UpdateAgent(Request):
    """Change an agent's descriptive fields; fields left out stay as they are."""

    model_config = examples(
        {
            "agent_id": EXAMPLE_AGENT_ID,
            "description": "Finds and summarizes papers",
            "configuration": {"model": "large"},
            "expected_version": 3,
        },
    )

    agent_id: UUID
    name: Name | None = None
    description: Description = None
    configuration: JsonObject | None = None
    prompt_template: PromptTemplate = None
    metadata: JsonObject | None = None
    expected_version: ExpectedVersion = None


class DeleteAgent(Request):
    """Delete an agent and its history."""

    agent_id: UUID
    expected_version: QueryExpectedVersion = None


class AgentDeleted(Reply):
    """Reply to agent.delete."""

    agent_id: UUID
    deleted: bool


class ChangeStatus(Request):
    """Move an agent to any status the transition table allows."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "status": "PAUSED", "reason": "maintenance window"},
    )

    agent_id: UUID
    status: AgentStatus
    reason: Reason = None
    expected_version: ExpectedVersion = None


class LifecycleCommand(Request):
    """agent.initialize / agent.activate / agent.pause / agent.terminate."""

    model_config = examples(
        {"agent_id": EXAMPLE_AGENT_ID, "reason": "lunch break"},
    )

    agent_id: UUID
    reason: Reason = None
    expected_version: ExpectedVersion = None


class GetHistory(Request):
    """Read an agent's transitions, oldest first."""

    agent_id: UUID
    limit: Limit = 50
    cursor: Cursor = None


class Transition(Reply):
    """One recorded status change."""

    from_status: AgentStatus | None = Field(
        alias="from", description="Null for the creation record."
    )
    to_status: AgentStatus = Field(alias="to")
    reason: str | None = None
    actor: str = Field(description="Who or what caused it.")
    at: Timestamp
    version: int = Field(description="Agent version after the change.")


class TransitionPage(Reply):
    """One page of an agent's history."""

    items: list[Transition]
    next_cursor: str | None = None
