"""Base classes and shared field types of the wire contract."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

JsonObject = dict[str, Any]

MAX_VERSION = 2**31 - 1
"""Versions are PostgreSQL integers; anything larger is refused as invalid input."""
MAX_REVISION = 2**63 - 1
"""KV revisions are stream sequences (unsigned 64-bit; nats-py sends signed)."""


EXAMPLE_AGENT_ID = "0193b4e2-7c1a-7d3e-9f00-1a2b3c4d5e6f"
EXAMPLE_OTHER_AGENT_ID = "0193b4e2-8d2b-7a41-8e11-2b3c4d5e6f70"
EXAMPLE_ID = "0193b4e3-0a1b-7c2d-8e3f-405162738495"
EXAMPLE_TIME = "2026-11-25T09:30:00Z"


def examples(*items: dict[str, Any]) -> ConfigDict:
    """A model config documenting ``items`` as examples (in OpenAPI and AsyncAPI)."""
    return ConfigDict(json_schema_extra={"examples": list(items)})


class Request(BaseModel):
    """A command body: unknown fields are rejected, as the contract says."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)


class Reply(BaseModel):
    """A reply or event body."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, serialize_by_alias=True)


def _refuse(error_type: str, message: str, *refused: type) -> BeforeValidator:
    """Refuse values of the ``refused`` types, which pydantic's lax mode would convert."""

    def check(value: Any) -> Any:
        if isinstance(value, refused):
            raise PydanticCustomError(error_type, message)
        return value

    return BeforeValidator(check)


# A request body's scalars are what its JSON Schema says, as in OpenAPI and AsyncAPI: pydantic's
# lax mode would also read `true` or "5" as an integer, 0 or "no" as a boolean, and a number as
# a datetime. (Query parameters arrive as text: those fields keep the plain types.) Strict
# integers also refuse 5.0; a validator function instead would hide their bounds from the
# JSON Schema.
JsonInt = Annotated[int, Strict()]
JsonBool = Annotated[bool, Strict()]
JsonDatetime = Annotated[
    datetime,
    _refuse("datetime_type", "Input should be a valid datetime string", bool, int, float),
]


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
    JsonInt | None,
    Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Fail with `conflict` unless the agent is at this version.",
    ),
]
QueryExpectedVersion = Annotated[
    int | None,
    Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Fail with `conflict` unless the agent is at this version.",
    ),
]
"""ExpectedVersion where it is also a query parameter (DELETE /api/agents/{agent_id})."""
Timestamp = Annotated[datetime, Field(description="RFC 3339, UTC.")]
