"""Base classes and shared field types of the wire contract."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

JsonObject = dict[str, Any]

MAX_VERSION = 2**31 - 1
"""Versions are PostgreSQL integers; anything larger is refused as invalid input."""
MAX_REVISION = 2**63 - 1
"""KV revisions are stream sequences (unsigned 64-bit; nats-py sends signed)."""


class Request(BaseModel):
    """A command body: unknown fields are rejected, as the contract says."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)


class Reply(BaseModel):
    """A reply or event body."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)


Limit = Annotated[
    int, Field(ge=1, le=500, description="Page size (1-500).", json_schema_extra={"default": 50})
]
Cursor = Annotated[
    str | None,
    Field(default=None, max_length=512, description="Opaque cursor from a previous page."),
]
Reason = Annotated[
    str | None, Field(default=None, max_length=2000, description="Why; kept in the history.")
]
ExpectedVersion = Annotated[
    int | None,
    Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Fail with `conflict` unless the agent is at this version.",
    ),
]
Timestamp = Annotated[datetime, Field(description="RFC 3339, UTC.")]
