"""One SQL statement for many callers' changes: the rows from ``unnest`` arrays, plus their
history, outbox and idempotency rows, written only for the items whose main write took effect.

The batched counterpart of ``atomic.AtomicWrite``, for ``group_commit`` kinds. The main write
returns one *key* per item it touched (its ordinal ``n`` from ``WITH ORDINALITY``, or a primary
key); every companion row names the key of the item it belongs to (its *owner*) and is written
only when that key is among the main write's rows. So a failed version guard writes nothing for
that item and everything for the others, in one round trip.
"""

from collections.abc import Sequence
from typing import Any

import asyncpg

from agent_orchestrator.contracts.agents import Transition
from agent_orchestrator.storage.atomic import (
    IdempotencyKeyTaken,
    IdempotencyRecord,
    OutboxMessage,
    outbox_insert,
)
from agent_orchestrator.storage.group_commit import Connection


class BatchStatement:
    """Builds ``WITH changed AS (<main>) ...companions... SELECT key FROM changed``.

    ``key_cast`` is the SQL type of the main write's returned key (``int`` for an ordinal).
    """

    def __init__(self, key_cast: str = "int") -> None:
        self.args: list[Any] = []
        self.companions: list[str] = []
        self._key_cast = key_cast

    def array(self, values: Sequence[Any], cast: str) -> str:
        """A parameter holding ``values`` as a PostgreSQL array of ``cast``."""
        self.args.append(list(values))
        return f"${len(self.args)}::{cast}[]"

    def unnest(self, alias: str, columns: dict[str, tuple[Sequence[Any], str]]) -> str:
        """``unnest(<arrays>) WITH ORDINALITY AS alias(<columns>, n)``: one row per item."""
        arrays = ", ".join(self.array(values, cast) for values, cast in columns.values())
        names = ", ".join([*columns, "n"])
        return f"unnest({arrays}) WITH ORDINALITY AS {alias}({names})"

    def with_rows(
        self, table: str, owners: Sequence[Any], columns: dict[str, tuple[Sequence[Any], str]]
    ) -> "BatchStatement":
        """Insert one row per owner (column -> (values, SQL type)), for touched owners only."""
        if not owners:
            return self
        source = self.unnest("r", {"owner": (owners, self._key_cast), **columns})
        names = ", ".join(columns)
        selected = ", ".join(f"r.{name}" for name in columns)
        self.companions.append(
            f"INSERT INTO {table} ({names}) SELECT {selected} FROM {source} "
            "WHERE r.owner IN (SELECT key FROM changed) ORDER BY r.n"
        )
        return self

    def with_transitions(
        self, owners: Sequence[Any], rows: Sequence[tuple[Any, Transition]]
    ) -> "BatchStatement":
        """Record lifecycle transitions, ``rows[i] = (agent_id, transition)`` of ``owners[i]``."""
        return self.with_rows(
            "agent_transitions",
            owners,
            {
                "agent_id": ([a for a, _ in rows], "uuid"),
                "version": ([t.version for _, t in rows], "int"),
                "from_status": ([t.from_status for _, t in rows], "text"),
                "to_status": ([t.to_status for _, t in rows], "text"),
                "reason": ([t.reason for _, t in rows], "text"),
                "actor": ([t.actor for _, t in rows], "text"),
                "at": ([t.at for _, t in rows], "timestamptz"),
            },
        )

    def with_outbox(
        self, owners: Sequence[Any], messages: Sequence[OutboxMessage]
    ) -> "BatchStatement":
        """Queue ``messages[i]`` for the relay if ``owners[i]`` was touched; in list order."""
        if messages:
            params = (
                self.array([m.msg_id for m in messages], "uuid"),
                self.array([m.subject for m in messages], "text"),
                self.array([m.payload for m in messages], "bytea"),
                self.array([m.expires_at for m in messages], "timestamptz"),
            )
            owner_ids = self.array(owners, self._key_cast)
            self.companions.append(
                outbox_insert(
                    params,
                    f"m.n IN (SELECT o.n FROM unnest({owner_ids}) WITH ORDINALITY AS o(k, n) "
                    "WHERE o.k IN (SELECT key FROM changed))",
                )
            )
        return self

    def with_idempotency(
        self, owners: Sequence[Any], records: Sequence[IdempotencyRecord]
    ) -> "BatchStatement":
        """Store Idempotency-Keys and their replies."""
        return self.with_rows(
            "idempotency_keys",
            owners,
            {
                "project": ([r.project for r in records], "text"),
                "subject": ([r.subject for r in records], "text"),
                "key": ([r.key for r in records], "text"),
                "fingerprint": ([r.fingerprint for r in records], "text"),
                "reply": ([r.reply for r in records], "jsonb"),
            },
        )

    def sql(self, main_sql: str, before: Sequence[str] = ()) -> str:
        """The whole statement; ``main_sql`` must return the item's key as ``key``; ``before``:
        CTEs (``name AS (...)``) that the main write may use."""
        parts = [*before, f"changed AS ({main_sql})"]
        parts += [f"c{i} AS ({sql})" for i, sql in enumerate(self.companions)]
        return "WITH " + ",\n".join(parts) + "\nSELECT key FROM changed"

    async def touched(
        self, conn: Connection, main_sql: str, before: Sequence[str] = ()
    ) -> set[Any]:
        """Run it; the keys the main write touched.

        Raises IdempotencyKeyTaken when an Idempotency-Key is already stored (the group commit
        then writes each item alone, so only that caller gets it).
        """
        try:
            rows = await conn.fetch(self.sql(main_sql, before), *self.args)
        except asyncpg.UniqueViolationError as exc:
            if exc.table_name == "idempotency_keys":
                raise IdempotencyKeyTaken from exc
            raise
        return {row[0] for row in rows}
