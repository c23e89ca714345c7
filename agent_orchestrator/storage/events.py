"""Events of changes that live outside PostgreSQL (KV state), queued in the same outbox."""

from agent_orchestrator.storage.atomic import AtomicWrite, IdempotencyRecord, OutboxMessage
from agent_orchestrator.storage.postgres import Database, translate_errors


class EventLog:
    """Queues outbox messages (and an Idempotency-Key) for changes made elsewhere."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @translate_errors
    async def record(
        self, messages: list[OutboxMessage], idempotency: IdempotencyRecord | None = None
    ) -> None:
        """Store the messages; a repeat of the same message id is ignored."""
        write = AtomicWrite(
            "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE msg_id = $1)",
            [messages[0].msg_id],
        )
        await write.with_outbox(messages).with_idempotency(idempotency).execute(self._db.pool)
