"""Versioned agent templates: requests, replies and the template event envelope."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import Field

from agent_orchestrator.contracts.common import (
    EXAMPLE_ID,
    MAX_VERSION,
    Cursor,
    JsonInt,
    JsonObject,
    Limit,
    Reply,
    Request,
    Timestamp,
    examples,
)

TemplateName = Annotated[str, Field(min_length=1, max_length=200)]
AgentTypeName = Annotated[
    str, Field(min_length=1, max_length=100, description="Agents made from it have this type.")
]
ConfigSchema = Annotated[
    JsonObject,
    Field(description="JSON Schema (draft 2020-12) that agent configurations must satisfy."),
]
Changelog = Annotated[str | None, Field(default=None, max_length=4000)]
TemplateProject = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The project that owns the template; null: a global template, which only "
        "operators (callers without a project scope) may create, change or delete.",
    ),
]


class Template(Reply):
    """One version of a template (the latest unless a version was asked for)."""

    template_id: UUID
    name: str
    description: str | None = None
    agent_type: str
    project_id: TemplateProject = None
    version: int = Field(description="Gap-free, from 1; each version is immutable.")
    latest_version: int
    config_schema: JsonObject
    default_configuration: JsonObject
    prompt_template: str | None = None
    changelog: str | None = None
    created_at: Timestamp = Field(description="When the template was created.")
    version_created_at: Timestamp = Field(description="When this version was created.")
    deleted_at: datetime | None = Field(
        default=None, description="Set once deleted: no new agents can be made from it."
    )


class CreateTemplate(Request):
    """Create a template at version 1."""

    model_config = examples(
        {
            "name": "researcher",
            "agent_type": "llm",
            "config_schema": {
                "type": "object",
                "required": ["model"],
                "properties": {"model": {"type": "string"}},
            },
            "default_configuration": {"model": "small"},
            "prompt_template": "You are a careful researcher.",
        },
    )

    name: TemplateName
    description: Annotated[str | None, Field(default=None, max_length=4000)]
    agent_type: AgentTypeName
    config_schema: ConfigSchema = Field(default_factory=lambda: {"type": "object"})
    default_configuration: JsonObject = Field(default_factory=dict)
    prompt_template: Annotated[str | None, Field(default=None, max_length=100_000)]
    project_id: TemplateProject = None


class GetTemplate(Request):
    """Read a template: its latest version, or the given one."""

    template_id: UUID
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)


class ListTemplates(Request):
    """Live templates (latest versions), newest first."""

    agent_type: str | None = Field(default=None, max_length=100)
    project_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Only templates this project may use: its own and the global ones.",
    )
    limit: Limit = 50
    cursor: Cursor = None


class TemplatePage(Reply):
    """One page of templates."""

    items: list[Template]
    next_cursor: str | None = None


class UpdateTemplate(Request):
    """Make a new version from the latest with the fields given; no change makes none."""

    model_config = examples(
        {
            "template_id": EXAMPLE_ID,
            "default_configuration": {"model": "large"},
            "changelog": "bigger model",
            "expected_version": 1,
        },
    )

    template_id: UUID
    name: TemplateName | None = None
    description: Annotated[str | None, Field(default=None, max_length=4000)]
    agent_type: Annotated[str | None, Field(default=None, min_length=1, max_length=100)]
    config_schema: ConfigSchema | None = None
    default_configuration: JsonObject | None = None
    prompt_template: Annotated[str | None, Field(default=None, max_length=100_000)]
    changelog: Changelog = None
    expected_version: JsonInt | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Fail with `conflict` unless this is the latest version.",
    )


class ListTemplateVersions(Request):
    """Every version of a template, oldest first."""

    template_id: UUID


class TemplateVersions(Reply):
    """All versions of one template."""

    items: list[Template]


class DeleteTemplate(Request):
    """Retire a template: agents made from it keep working; no new agents."""

    template_id: UUID


class TemplateDeleted(Reply):
    """Reply to template.delete."""

    template_id: UUID
    deleted: bool


class TemplateEventKind(StrEnum):
    """Last token of ``template.event.<template_id>.<kind>``."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


class TemplateEvent(Reply):
    """Envelope of template events; `Nats-Msg-Id` equals `event_id`."""

    event_id: UUID
    type: TemplateEventKind
    template_id: UUID
    occurred_at: Timestamp
    version: int
    data: dict[str, Any] = Field(default_factory=dict)
