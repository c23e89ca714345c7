"""One SQL statement per change: the row write plus its history, outbox and idempotency rows.

A data-modifying CTE runs as a single statement, so the change, its events and the idempotency
record commit together or not at all, in one round trip. The companion rows are written only
when the main write touched a row, so a version guard that fails writes nothing.
"""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from agent_orchestrator.contracts.agents import Transition
from agent_orchestrator.contracts.events import Event
from agent_orchestrator.contracts.subjects import event_subject


class IdempotencyKeyTaken(Exception):
    """Another request with the same Idempotency-Key committed first."""


@dataclass(frozen=True)
class OutboxMessage:
    """A message to publish to JetStream once the transaction has committed."""

    msg_id: UUID
    subject: str
    payload: bytes

    @classmethod
    def for_event(cls, event: Event) -> "OutboxMessage":
        """The outbox row of an agent event."""
        return cls(
            event.event_id,
            event_subject(str(event.agent_id), event.type),
            event.model_dump_json().encode(),
        )


@dataclass(frozen=True)
class IdempotencyRecord:
    """An Idempotency-Key to store with the change, with the reply to give on a repeat."""

    subject: str
    key: str
    fingerprint: str
    reply: Any = None


@dataclass
class AtomicWrite:
    """Builds ``WITH changed AS (<main>) ...companions... SELECT count(*) FROM changed``."""

    main_sql: str
    args: list[Any]
    companions: list[str] = field(default_factory=list)

    def _param(self, value: Any, cast: str = "") -> str:
        self.args.append(value)
        return f"${len(self.args)}{'::' + cast if cast else ''}"

    def with_transition(self, agent_id: UUID, transition: Transition | None) -> "AtomicWrite":
        """Record a lifecycle transition."""
        if transition is not None:
            t = transition
            typed = (
                (agent_id, "uuid"),
                (t.version, "int"),
                (t.from_status, "text"),
                (t.to_status, "text"),
                (t.reason, "text"),
                (t.actor, "text"),
                (t.at, "timestamptz"),
            )
            values = ", ".join(self._param(v, cast) for v, cast in typed)
            self.companions.append(
                "INSERT INTO agent_transitions "
                "(agent_id, version, from_status, to_status, reason, actor, at) "
                f"SELECT {values} FROM changed"
            )
        return self

    def with_outbox(self, messages: list[OutboxMessage]) -> "AtomicWrite":
        """Queue messages for the relay."""
        if messages:
            ids = self._param([m.msg_id for m in messages])
            subjects = self._param([m.subject for m in messages])
            payloads = self._param([m.payload for m in messages])
            self.companions.append(
                "INSERT INTO outbox (msg_id, subject, payload) "
                f"SELECT m.i, m.s, m.p FROM unnest({ids}::uuid[], {subjects}::text[], "
                f"{payloads}::bytea[]) WITH ORDINALITY AS m(i, s, p, n) "
                "WHERE EXISTS (SELECT 1 FROM changed) ORDER BY m.n"
            )
        return self

    def with_idempotency(self, record: IdempotencyRecord | None) -> "AtomicWrite":
        """Store the Idempotency-Key and its reply."""
        if record is not None:
            typed = (
                (record.subject, "text"),
                (record.key, "text"),
                (record.fingerprint, "text"),
                (record.reply, "jsonb"),
            )
            values = ", ".join(self._param(v, cast) for v, cast in typed)
            self.companions.append(
                "INSERT INTO idempotency_keys (subject, key, fingerprint, reply) "
                f"SELECT {values} WHERE EXISTS (SELECT 1 FROM changed)"
            )
        return self

    def sql(self) -> str:
        """The whole statement."""
        parts = [f"changed AS ({self.main_sql})"]
        parts += [f"c{i} AS ({sql})" for i, sql in enumerate(self.companions)]
        return "WITH " + ",\n".join(parts) + "\nSELECT count(*) FROM changed"

    async def execute(self, conn: asyncpg.Pool | asyncpg.Connection) -> bool:
        """Run it; True when the main write touched a row.

        Raises IdempotencyKeyTaken when a request with the same key committed first.
        """
        try:
            count = await conn.fetchval(self.sql(), *self.args)
        except asyncpg.UniqueViolationError as exc:
            if exc.table_name == "idempotency_keys":
                raise IdempotencyKeyTaken from exc
            raise
        return bool(count)
