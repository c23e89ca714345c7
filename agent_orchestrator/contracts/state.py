"""Runtime state of an agent, kept in JetStream KV bucket ``agent_state``."""

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import (
    EXAMPLE_AGENT_ID,
    MAX_REVISION,
    JsonInt,
    JsonObject,
    Reply,
    Request,
    examples,
)


class StateMode(StrEnum):
    """How agent.state.update applies ``state``."""

    MERGE = "merge"
    REPLACE = "replace"


class GetState(Request):
    """Read an agent's current state."""

    agent_id: UUID


class UpdateState(Request):
    """Change an agent's state: RFC 7396 merge (default) or replace."""

    model_config = examples(
        {
            "agent_id": EXAMPLE_AGENT_ID,
            "state": {"goal": "summarize", "notes": {"draft": None}},
            "mode": "merge",
            "expected_revision": 7,
        },
    )

    agent_id: UUID
    state: JsonObject = Field(description="A merge patch (null removes a key) or the new state.")
    mode: StateMode = StateMode.MERGE
    expected_revision: JsonInt | None = Field(
        default=None,
        ge=0,
        le=MAX_REVISION,
        description="Fail with `conflict` unless the state is at this revision (0: never set).",
    )


class StateHistoryRequest(Request):
    """Earlier revisions of an agent's state, newest first."""

    agent_id: UUID
    limit: int = Field(default=10, ge=1, le=64)


class AgentState(Reply):
    """An agent's state at one revision (revision 0: never written)."""

    agent_id: UUID
    state: JsonObject
    revision: int
    updated_at: datetime | None = None


class StateRevision(Reply):
    """One revision in the state history."""

    state: JsonObject
    revision: int
    updated_at: datetime | None = None


class StateHistory(Reply):
    """Reply to agent.state.history."""

    items: list[StateRevision]
