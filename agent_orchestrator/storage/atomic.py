"""One SQL statement per change: the row write plus its history, outbox and idempotency rows.

A data-modifying CTE runs as a single statement, so the change, its events and the idempotency
record commit together or not at all, in one round trip. The companion rows are written only
when the main write touched a row, so a version guard that fails writes nothing.
"""

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import BaseModel

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
        return cls.of(event.event_id, event_subject(str(event.agent_id), event.type), event)

    @classmethod
    def of(cls, msg_id: UUID, subject: str, body: BaseModel) -> "OutboxMessage":
        """The outbox row of any message with a JSON body."""
        return cls(msg_id, subject, body.model_dump_json().encode())


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

    def with_row(self, table: str, values: dict[str, tuple[Any, str]]) -> "AtomicWrite":
        """Insert one row (column -> (value, SQL type)) if the main write touched a row."""
        columns = ", ".join(values)
        params = ", ".join(self._param(value, cast) for value, cast in values.values())
        self.companions.append(
            f"INSERT INTO {table} ({columns}) SELECT {params} WHERE EXISTS (SELECT 1 FROM changed)"
        )
        return self

    def with_transition(self, agent_id: UUID, transition: Transition | None) -> "AtomicWrite":
        """Record a lifecycle transition."""
        if transition is None:
            return self
        t = transition
        return self.with_row(
            "agent_transitions",
            {
                "agent_id": (agent_id, "uuid"),
                "version": (t.version, "int"),
                "from_status": (t.from_status, "text"),
                "to_status": (t.to_status, "text"),
                "reason": (t.reason, "text"),
                "actor": (t.actor, "text"),
                "at": (t.at, "timestamptz"),
            },
        )

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
        if record is None:
            return self
        return self.with_row(
            "idempotency_keys",
            {
                "subject": (record.subject, "text"),
                "key": (record.key, "text"),
                "fingerprint": (record.fingerprint, "text"),
                "reply": (record.reply, "jsonb"),
            },
        )

    def sql(self) -> str:
        """The whole statement."""
        parts = [f"changed AS ({self.main_sql})"]
        parts += [f"c{i} AS ({sql})" for i, sql in enumerate(self.companions)]
        return "WITH " + ",\n".join(parts) + "\nSELECT count(*) FROM changed"

    async def execute(self, conn: Any) -> bool:
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
