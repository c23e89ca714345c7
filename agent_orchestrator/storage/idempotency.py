"""Stored replies of requests that carried an Idempotency-Key.

Keys are written by each change's AtomicWrite, in the same statement as the change itself.
"""

from typing import Any

from agent_orchestrator.storage.atomic import IdempotencyRecord
from agent_orchestrator.storage.postgres import Database, translate_errors


class IdempotencyStore:
    """Looks up and expires Idempotency-Key records."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def stored_reply(
        self, subject: str, key: str, project: str = ""
    ) -> tuple[str, Any] | None:
        """(fingerprint, reply) stored for ``key`` on ``subject`` by ``project``, if any."""
        row = await self._db.pool.fetchrow(
            """SELECT fingerprint, reply FROM idempotency_keys
               WHERE project = $3 AND subject = $1 AND key = $2""",
            subject,
            key,
            project,
        )
        return None if row is None else (row["fingerprint"], row["reply"])

    @translate_errors
    async def remember(self, record: IdempotencyRecord | None) -> None:
        """Store the reply of a change made outside PostgreSQL (a KV write)."""
        if record is None:
            return
        await self._db.pool.execute(
            """INSERT INTO idempotency_keys (subject, key, fingerprint, reply, project)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            record.subject,
            record.key,
            record.fingerprint,
            record.reply,
            record.project,
        )
