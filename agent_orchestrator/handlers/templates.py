"""template.create / get / list / update / versions / delete."""

from uuid import UUID

from agent_orchestrator.contracts import subjects
from agent_orchestrator.contracts.templates import (
    CreateTemplate,
    DeleteTemplate,
    GetTemplate,
    ListTemplates,
    ListTemplateVersions,
    Template,
    TemplateDeleted,
    TemplateEventKind,
    TemplatePage,
    TemplateVersions,
    UpdateTemplate,
)
from agent_orchestrator.domain import templates as rules
from agent_orchestrator.domain.cursor import decode_cursor, split_page
from agent_orchestrator.handlers.commands import CommandContext, command
from agent_orchestrator.storage.templates import TemplateRepository


class TemplateCommands:
    """template.create / get / list / update / versions / delete."""

    def __init__(self, *, templates: TemplateRepository) -> None:
        self._templates = templates

    @command(
        subjects.TEMPLATE_CREATE,
        CreateTemplate,
        Template,
        mutating=True,
        description="Create a template (version 1); its schema and defaults are validated.",
    )
    async def create_template(self, body: CreateTemplate, ctx: CommandContext) -> Template:
        template = rules.create_template(body, now=ctx.now)
        event = rules.template_event(template, TemplateEventKind.CREATED, ctx.now)
        await self._templates.insert(template, event, ctx.idempotency_for(template))
        return template

    @command(
        subjects.TEMPLATE_GET,
        GetTemplate,
        Template,
        mutating=False,
        description="Read a template's latest version, or a given version.",
    )
    async def get_template(self, body: GetTemplate, ctx: CommandContext) -> Template:
        return await self._templates.get(body.template_id, body.version)

    @command(
        subjects.TEMPLATE_LIST,
        ListTemplates,
        TemplatePage,
        mutating=False,
        description="List live templates (latest versions) newest first; filter by agent_type.",
    )
    async def list_templates(self, body: ListTemplates, ctx: CommandContext) -> TemplatePage:
        before = decode_cursor(body.cursor, "before", UUID) if body.cursor else None
        fetched = await self._templates.page(
            body.agent_type, limit=body.limit + 1, before=before, project_id=body.project_id
        )
        items, next_cursor = split_page(fetched, body.limit, "before", lambda t: str(t.template_id))
        return TemplatePage(items=items, next_cursor=next_cursor)

    @command(
        subjects.TEMPLATE_UPDATE,
        UpdateTemplate,
        Template,
        mutating=True,
        description="Create the next immutable version; an update that changes nothing "
        "creates none.",
    )
    async def update_template(self, body: UpdateTemplate, ctx: CommandContext) -> Template:
        return await self._templates.add_version(
            body.template_id,
            lambda latest: rules.update_template(latest, body, now=ctx.now),
            lambda new: rules.template_event(new, TemplateEventKind.UPDATED, ctx.now),
            ctx.idempotency_for,
        )

    @command(
        subjects.TEMPLATE_VERSIONS,
        ListTemplateVersions,
        TemplateVersions,
        mutating=False,
        description="Every version of a template, oldest first.",
    )
    async def template_versions(
        self, body: ListTemplateVersions, ctx: CommandContext
    ) -> TemplateVersions:
        return TemplateVersions(items=await self._templates.versions(body.template_id))

    @command(
        subjects.TEMPLATE_DELETE,
        DeleteTemplate,
        TemplateDeleted,
        mutating=True,
        description="Retire a template: no new agents from it; existing agents keep working.",
    )
    async def delete_template(self, body: DeleteTemplate, ctx: CommandContext) -> TemplateDeleted:
        template = await self._templates.get(body.template_id)
        reply = TemplateDeleted(template_id=body.template_id, deleted=True)
        event = rules.template_event(template, TemplateEventKind.DELETED, ctx.now)
        await self._templates.delete(template, event, ctx.idempotency_for(reply))
        return reply
