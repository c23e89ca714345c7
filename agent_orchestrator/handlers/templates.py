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
from agent_orchestrator.handlers.commands import CommandContext, CommandServer
from agent_orchestrator.storage.templates import TemplateRepository


def register_template_commands(server: CommandServer, templates: TemplateRepository) -> None:
    """Serve the template subjects."""

    @server.serve(
        subjects.TEMPLATE_CREATE,
        CreateTemplate,
        Template,
        mutating=True,
        description="Create a template (version 1); its schema and defaults are validated.",
    )
    async def create_template(body: CreateTemplate, ctx: CommandContext) -> Template:
        template = rules.create_template(body, now=ctx.now)
        event = rules.template_event(template, TemplateEventKind.CREATED, ctx.now)
        await templates.insert(template, event, ctx.idempotency_for(template))
        return template

    @server.serve(
        subjects.TEMPLATE_GET,
        GetTemplate,
        Template,
        mutating=False,
        description="Read a template's latest version, or a given version.",
    )
    async def get_template(body: GetTemplate, ctx: CommandContext) -> Template:
        return await templates.get(body.template_id, body.version)

    @server.serve(
        subjects.TEMPLATE_LIST,
        ListTemplates,
        TemplatePage,
        mutating=False,
        description="List live templates (latest versions) newest first; filter by agent_type.",
    )
    async def list_templates(body: ListTemplates, ctx: CommandContext) -> TemplatePage:
        before = decode_cursor(body.cursor, "before", UUID) if body.cursor else None
        fetched = await templates.page(body.agent_type, limit=body.limit + 1, before=before)
        items, next_cursor = split_page(fetched, body.limit, "before", lambda t: str(t.template_id))
        return TemplatePage(items=items, next_cursor=next_cursor)

    @server.serve(
        subjects.TEMPLATE_UPDATE,
        UpdateTemplate,
        Template,
        mutating=True,
        description="Create the next immutable version; an update that changes nothing "
        "creates none.",
    )
    async def update_template(body: UpdateTemplate, ctx: CommandContext) -> Template:
        return await templates.add_version(
            body.template_id,
            lambda latest: rules.update_template(latest, body, now=ctx.now),
            lambda new: rules.template_event(new, TemplateEventKind.UPDATED, ctx.now),
            ctx.idempotency_for,
        )

    @server.serve(
        subjects.TEMPLATE_VERSIONS,
        ListTemplateVersions,
        TemplateVersions,
        mutating=False,
        description="Every version of a template, oldest first.",
    )
    async def template_versions(
        body: ListTemplateVersions, ctx: CommandContext
    ) -> TemplateVersions:
        return TemplateVersions(items=await templates.versions(body.template_id))

    @server.serve(
        subjects.TEMPLATE_DELETE,
        DeleteTemplate,
        TemplateDeleted,
        mutating=True,
        description="Retire a template: no new agents from it; existing agents keep working.",
    )
    async def delete_template(body: DeleteTemplate, ctx: CommandContext) -> TemplateDeleted:
        template = await templates.get(body.template_id)
        reply = TemplateDeleted(template_id=body.template_id, deleted=True)
        event = rules.template_event(template, TemplateEventKind.DELETED, ctx.now)
        await templates.delete(template, event, ctx.idempotency_for(reply))
        return reply
