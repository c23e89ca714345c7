"""The templates repository: a head row per template and one immutable row per version."""

from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.subjects import template_event_subject
from agent_orchestrator.contracts.templates import Template, TemplateEvent
from agent_orchestrator.domain.errors import Conflict, NotFound
from agent_orchestrator.storage.atomic import (
    ATOMIC_WRITES,
    AtomicWrite,
    IdempotencyRecord,
    OutboxMessage,
)
from agent_orchestrator.storage.postgres import Database, translate_errors

SELECT_TEMPLATE = """
    SELECT t.template_id, t.project_id, v.name, v.description, v.agent_type, v.version,
           t.latest_version,
           v.config_schema, v.default_configuration, v.prompt_template, v.changelog,
           t.created_at, v.created_at AS version_created_at, t.deleted_at
    FROM templates t JOIN template_versions v ON v.template_id = t.template_id
"""


def _template(row: asyncpg.Record) -> Template:
    return Template.model_validate(dict(row))


def _outbox(event: TemplateEvent) -> list[OutboxMessage]:
    subject = template_event_subject(str(event.template_id), event.type)
    return [OutboxMessage.of(event.event_id, subject, event)]


def _version_row(template: Template) -> dict[str, tuple[Any, str]]:
    return {
        "template_id": (template.template_id, "uuid"),
        "version": (template.version, "int"),
        "name": (template.name, "text"),
        "description": (template.description, "text"),
        "agent_type": (template.agent_type, "text"),
        "config_schema": (template.config_schema, "jsonb"),
        "default_configuration": (template.default_configuration, "jsonb"),
        "prompt_template": (template.prompt_template, "text"),
        "changelog": (template.changelog, "text"),
        "created_at": (template.version_created_at, "timestamptz"),
    }


def _name_taken(template: Template) -> Conflict:
    return Conflict(
        f"a live template named {template.name!r} already exists for agent type "
        f"{template.agent_type!r}",
        details={"name": template.name, "agent_type": template.agent_type},
    )


class TemplateRepository:
    """Reads and writes of templates in PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def get(self, template_id: UUID, version: int | None = None) -> Template:
        """The latest version, or the given one; NotFound otherwise."""
        row = await self._db.pool.fetchrow(
            SELECT_TEMPLATE
            + " WHERE t.template_id = $1 AND v.version = coalesce($2, t.latest_version)",
            template_id,
            version,
        )
        if row is None:
            what = f"template {template_id}" + (f" version {version}" if version else "")
            raise NotFound(f"{what} does not exist", details={"template_id": str(template_id)})
        return _template(row)

    @translate_errors
    async def page(
        self,
        agent_type: str | None,
        *,
        limit: int,
        before: UUID | None,
        project_id: str | None = None,
    ) -> list[Template]:
        """Latest versions of live templates, newest first (with ``project_id``: that
        project's and the global ones)."""
        rows = await self._db.pool.fetch(
            SELECT_TEMPLATE
            + """ WHERE v.version = t.latest_version AND t.deleted_at IS NULL
                    AND ($1::text IS NULL OR t.agent_type = $1)
                    AND ($2::uuid IS NULL OR t.template_id < $2)
                    AND ($4::text IS NULL OR t.project_id IS NULL OR t.project_id = $4)
                  ORDER BY t.template_id DESC LIMIT $3""",
            agent_type,
            before,
            limit,
            project_id,
        )
        return [_template(row) for row in rows]

    @translate_errors
    async def owner(self, template_id: UUID) -> tuple[bool, str | None]:
        """(whether the template exists, its project: None for a global one)."""
        row = await self._db.pool.fetchrow(
            "SELECT project_id FROM templates WHERE template_id = $1", template_id
        )
        return (False, None) if row is None else (True, row["project_id"])

    @translate_errors
    async def versions(self, template_id: UUID) -> list[Template]:
        """Every version, oldest first; NotFound for an unknown template."""
        rows = await self._db.pool.fetch(
            SELECT_TEMPLATE + " WHERE t.template_id = $1 ORDER BY v.version", template_id
        )
        if not rows:
            raise NotFound(f"template {template_id} does not exist")
        return [_template(row) for row in rows]

    @translate_errors
    async def insert(
        self, template: Template, event: TemplateEvent, idempotency: IdempotencyRecord | None
    ) -> None:
        """Store version 1 of a new template; Conflict when the name is taken."""
        write = AtomicWrite(
            """INSERT INTO templates (template_id, agent_type, name, latest_version, created_at,
                                    project_id)
               VALUES ($1, $2, $3, 1, $4, $5) RETURNING template_id""",
            [
                template.template_id,
                template.agent_type,
                template.name,
                template.created_at,
                template.project_id,
            ],
        )
        write.with_row("template_versions", _version_row(template)).with_outbox(_outbox(event))
        try:
            await self._db.group_commit.submit(ATOMIC_WRITES, write.with_idempotency(idempotency))
        except asyncpg.UniqueViolationError as exc:
            raise _name_taken(template) from exc

    @translate_errors
    async def add_version(
        self,
        template_id: UUID,
        decide: Callable[[Template], Template | None],
        event: Callable[[Template], TemplateEvent],
        idempotency: Callable[[Template], IdempotencyRecord | None],
    ) -> Template:
        """Lock the template, decide the next version from the latest, store it.

        Updates of one template queue on its row lock, so versions stay gap-free and unique.
        """
        async with self._db.pool.acquire() as conn, conn.transaction():
            # Lock the head row alone: a join would be re-checked against the old version
            # row once the lock is granted, and find nothing.
            await conn.execute(
                "SELECT 1 FROM templates WHERE template_id = $1 FOR UPDATE", template_id
            )
            row = await conn.fetchrow(
                SELECT_TEMPLATE + " WHERE t.template_id = $1 AND v.version = t.latest_version",
                template_id,
            )
            if row is None:
                raise NotFound(f"template {template_id} does not exist")
            new = decide(_template(row))
            if new is None:
                return _template(row)
            write = AtomicWrite(
                """UPDATE templates SET latest_version = $2, name = $3, agent_type = $4
                   WHERE template_id = $1 RETURNING template_id""",
                [template_id, new.version, new.name, new.agent_type],
            )
            write.with_row("template_versions", _version_row(new))
            write.with_outbox(_outbox(event(new))).with_idempotency(idempotency(new))
            try:
                await write.execute(conn)
            except asyncpg.UniqueViolationError as exc:
                raise _name_taken(new) from exc
            return new

    @translate_errors
    async def delete(
        self, template: Template, event: TemplateEvent, idempotency: IdempotencyRecord | None
    ) -> None:
        """Mark a live template deleted (a no-op when it already is)."""
        write = AtomicWrite(
            """UPDATE templates SET deleted_at = $2
               WHERE template_id = $1 AND deleted_at IS NULL RETURNING template_id""",
            [template.template_id, event.occurred_at],
        )
        write.with_outbox(_outbox(event)).with_idempotency(idempotency)
        await self._db.group_commit.submit(ATOMIC_WRITES, write)
