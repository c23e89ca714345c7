"""Template rules: JSON Schema checks, deep merge, versioning and applying a template."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent_orchestrator.contracts.templates import (
    CreateTemplate,
    Template,
    TemplateEvent,
    TemplateEventKind,
    UpdateTemplate,
)
from agent_orchestrator.domain.errors import Conflict, ValidationFailed
from agent_orchestrator.domain.ids import new_id
from agent_orchestrator.domain.json_schema import check_schema, check_value

VERSIONED_FIELDS = (
    "name",
    "description",
    "agent_type",
    "config_schema",
    "default_configuration",
    "prompt_template",
)


def check_config_schema(schema: Mapping[str, Any]) -> None:
    """Raise ValidationFailed, listing every problem, unless ``schema`` is valid 2020-12."""
    check_schema(schema, field="config_schema")


def validate_configuration(
    schema: Mapping[str, Any], configuration: Mapping[str, Any], *, field: str
) -> None:
    """Raise ValidationFailed, listing every failing path, unless the configuration fits."""
    check_value(schema, configuration, field=field, against="the template's config_schema")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; nested objects merge key by key; arrays and scalars are replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def template_event(template: Template, kind: TemplateEventKind, now: datetime) -> TemplateEvent:
    """The event recording a template change."""
    return TemplateEvent(
        event_id=new_id(),
        type=kind,
        template_id=template.template_id,
        occurred_at=now,
        version=template.version,
        data={"template": template.model_dump(mode="json")},
    )


def create_template(request: CreateTemplate, *, now: datetime) -> Template:
    """Version 1 of a new template, after checking its schema and defaults."""
    check_config_schema(request.config_schema)
    validate_configuration(
        request.config_schema, request.default_configuration, field="default_configuration"
    )
    return Template(
        template_id=new_id(),
        version=1,
        latest_version=1,
        created_at=now,
        version_created_at=now,
        **request.model_dump(),
    )


def update_template(latest: Template, request: UpdateTemplate, *, now: datetime) -> Template | None:
    """The next version with the fields the request sets; None when nothing would change."""
    if latest.deleted_at is not None:
        raise Conflict(f"template {latest.template_id} was deleted and cannot change")
    if request.expected_version is not None and request.expected_version != latest.version:
        raise Conflict(
            f"template is at version {latest.version}, not {request.expected_version}",
            details={"expected_version": request.expected_version, "version": latest.version},
        )
    changes = {
        name: getattr(request, name)
        for name in VERSIONED_FIELDS
        if name in request.model_fields_set and getattr(request, name) != getattr(latest, name)
    }
    for required in ("name", "agent_type", "config_schema", "default_configuration"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(f"{required} cannot be null", details=[{"path": required}])
    if not changes:
        return None
    candidate = latest.model_copy(update=changes)
    check_config_schema(candidate.config_schema)
    validate_configuration(
        candidate.config_schema, candidate.default_configuration, field="default_configuration"
    )
    version = latest.version + 1
    return candidate.model_copy(
        update={
            "version": version,
            "latest_version": version,
            "changelog": request.changelog,
            "version_created_at": now,
        }
    )


def apply_template(
    template: Template, *, agent_type: str | None, configuration: Mapping[str, Any]
) -> dict[str, Any]:
    """The configuration of an agent made from ``template``: defaults deep-merged with the
    request's configuration, validated against the schema."""
    if template.deleted_at is not None:
        raise ValidationFailed(
            f"template {template.template_id} was deleted; no new agents can be made from it",
            details=[{"path": "template_id"}],
        )
    if agent_type is not None and agent_type != template.agent_type:
        raise ValidationFailed(
            f"type {agent_type!r} does not match the template's agent_type {template.agent_type!r}",
            details=[{"path": "type"}],
        )
    merged = deep_merge(template.default_configuration, configuration)
    validate_configuration(template.config_schema, merged, field="configuration")
    return merged
