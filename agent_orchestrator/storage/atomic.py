"""One SQL statement per change: the row write plus its history, outbox and idempotency rows.

A data-modifying CTE runs as a single statement, so the change, its events and the idempotency
record commit together or not at all, in one round trip. The companion rows are written only
when the main write touched a row, so a version guard that fails writes nothing.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
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
    expires_at: datetime | None = None
    """Published with what is left of its time to live as ``Nats-TTL``; not at all if past."""

    @classmethod
    def for_event(cls, event: Event) -> "OutboxMessage":
        """The outbox row of an agent event."""
        return cls.of(event.event_id, event_subject(str(event.agent_id), event.type), event)

    @classmethod
    def of(
        cls, msg_id: UUID, subject: str, body: BaseModel, expires_at: datetime | None = None
    ) -> "OutboxMessage":
        """The outbox row of any message with a JSON body."""
        return cls(msg_id, subject, body.model_dump_json().encode(), expires_at)


@dataclass(frozen=True)
class IdempotencyRecord:
    """An Idempotency-Key to store with the change, with the reply to give on a repeat."""

    subject: str
    key: str
    fingerprint: str
    reply: Any = None
    #: The caller's project: keys are a namespace per project ("": no scope, an operator).
    project: str = ""


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
            self.companions.append(
                outbox_insert(self._outbox_params(messages), "EXISTS (SELECT 1 FROM changed)")
            )
        return self

    def with_outbox_per_row(
        self, messages: list[OutboxMessage], rows: list[UUID], *, key: str
    ) -> "AtomicWrite":
        """Queue each message only if the main write returned its row (``rows[i]``, the
        value of the main write's RETURNING column ``key``)."""
        if messages:
            params = self._outbox_params(messages)
            row_ids = self._param(rows)
            self.companions.append(
                outbox_insert(
                    params,
                    f"m.n IN (SELECT r.n FROM unnest({row_ids}::uuid[]) WITH ORDINALITY "
                    f"AS r(id, n) WHERE r.id IN (SELECT {key} FROM changed))",
                )
            )
        return self

    def _outbox_params(self, messages: list[OutboxMessage]) -> tuple[str, str, str, str]:
        return (
            self._param([m.msg_id for m in messages]),
            self._param([m.subject for m in messages]),
            self._param([m.payload for m in messages]),
            self._param([m.expires_at for m in messages]),
        )

    def with_idempotency(self, record: IdempotencyRecord | None) -> "AtomicWrite":
        """Store the Idempotency-Key and its reply."""
        if record is None:
            return self
        return self.with_row(
            "idempotency_keys",
            {
                "project": (record.project, "text"),
                "subject": (record.subject, "text"),
                "key": (record.key, "text"),
                "fingerprint": (record.fingerprint, "text"),
                "reply": (record.reply, "jsonb"),
            },
        )

    def sql(self, result: str = "count(*)") -> str:
        """The whole statement, selecting ``result`` from the main write's rows."""
        parts = [f"changed AS ({self.main_sql})"]
        parts += [f"c{i} AS ({sql})" for i, sql in enumerate(self.companions)]
        return "WITH " + ",\n".join(parts) + f"\nSELECT {result} FROM changed"

    async def execute(self, conn: Any) -> bool:
        """Run it; True when the main write touched a row.

        Raises IdempotencyKeyTaken when a request with the same key committed first.
        """
        return bool(await self._run(conn.fetchval, self.sql()))

    async def returning(self, conn: Any, key: str) -> list[Any]:
        """Run it; the ``key`` column of every row the main write returned."""
        return [row[0] for row in await self._run(conn.fetch, self.sql(key))]

    async def _run(self, method: Callable[..., Awaitable[Any]], sql: str) -> Any:
        try:
            return await method(sql, *self.args)
        except asyncpg.UniqueViolationError as exc:
            if exc.table_name == "idempotency_keys":
                raise IdempotencyKeyTaken from exc
            raise


class AtomicWrites:
    """A group-commit kind: each caller's AtomicWrite as its own statement, all of them in
    one transaction (one commit instead of one per caller). Result: whether the main write
    touched a row. For writes without a batched (``unnest``) statement of their own."""

    one_statement_per_item = True

    async def write(self, conn: Any, items: Sequence[AtomicWrite]) -> list[bool]:
        """Run the writes one after the other on ``conn``."""
        return [await item.execute(conn) for item in items]


ATOMIC_WRITES = AtomicWrites()


def outbox_insert(params: tuple[str, str, str, str], condition: str) -> str:
    """INSERT of outbox rows from parallel arrays (id, subject, payload, expires_at), in order,
    keeping those that meet ``condition`` (which may use the ordinal ``m.n``)."""
    ids, subjects, payloads, expiries = params
    return (
        "INSERT INTO outbox (msg_id, subject, payload, expires_at) "
        f"SELECT m.i, m.s, m.p, m.e FROM unnest({ids}::uuid[], {subjects}::text[], "
        f"{payloads}::bytea[], {expiries}::timestamptz[]) WITH ORDINALITY AS m(i, s, p, e, n) "
        f"WHERE {condition} ORDER BY m.n"
    )
