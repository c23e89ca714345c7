"""The push configs of tasks (table ``task_push_configs``), one statement per change."""

from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.push import PushConfig
from agent_orchestrator.storage.atomic import AtomicWrite, IdempotencyRecord
from agent_orchestrator.storage.postgres import Database, translate_errors

COLUMNS = "task_id, config_id, url, token, auth_scheme, auth_credentials, created_at"


def _config(row: asyncpg.Record) -> PushConfig:
    return PushConfig.model_validate(dict(row))


class PushConfigRepository:
    """Reads and writes of push configs."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def put(
        self, config: PushConfig, *, limit: int, idempotency: IdempotencyRecord | None
    ) -> bool:
        """Create or replace a config; False, storing nothing, if its task already has
        ``limit`` others."""
        values: list[Any] = [getattr(config, name.strip()) for name in COLUMNS.split(",")]
        write = AtomicWrite(
            f"""INSERT INTO task_push_configs ({COLUMNS})
                SELECT $1, $2, $3, $4, $5, $6, $7
                WHERE (SELECT count(*) FROM task_push_configs
                       WHERE task_id = $1 AND config_id <> $2) < $8
                ON CONFLICT (task_id, config_id) DO UPDATE SET
                    url = EXCLUDED.url, token = EXCLUDED.token,
                    auth_scheme = EXCLUDED.auth_scheme,
                    auth_credentials = EXCLUDED.auth_credentials
                RETURNING task_id""",
            [*values, limit],
        )
        write.with_idempotency(idempotency)
        return await write.execute(self._db.pool)

    @translate_errors
    async def of_task(self, task_id: UUID) -> list[PushConfig]:
        """A task's configs, oldest first."""
        rows = await self._db.pool.fetch(
            f"SELECT {COLUMNS} FROM task_push_configs WHERE task_id = $1 "
            "ORDER BY created_at, config_id",
            task_id,
        )
        return [_config(row) for row in rows]

    @translate_errors
    async def delete(
        self, task_id: UUID, config_id: str, *, idempotency: IdempotencyRecord | None
    ) -> bool:
        """Delete one config; whether there was one."""
        write = AtomicWrite(
            "DELETE FROM task_push_configs WHERE task_id = $1 AND config_id = $2 RETURNING task_id",
            [task_id, config_id],
        )
        write.with_idempotency(idempotency)
        return await write.execute(self._db.pool)
