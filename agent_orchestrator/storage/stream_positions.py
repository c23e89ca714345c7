"""Where a table's rows have their message in a stream, so ended ones can be removed from it.

The outbox relay records each published message's stream sequence in its row (a
:class:`PublishedHook`); once a row reaches a final status while its message may still wait in
the stream (nobody acknowledged it), the sweep deletes the message and forgets the sequence.
A sequence of :data:`TAKEN` means its receiver took the message and acknowledges it itself:
the relay, however late, records nothing over it, and the sweep leaves it alone.
"""

from dataclasses import dataclass
from uuid import UUID

from agent_orchestrator.storage.outbox import PublishedHook
from agent_orchestrator.storage.postgres import Database, translate_errors

TAKEN = 0
"""The stream_seq of a row whose message its receiver took (and acknowledges)."""


@dataclass(frozen=True)
class StreamPositions:
    """``table``'s ``stream_seq`` column: rows keyed by ``key``, ended when ``ended`` holds,
    their messages published with ``Nats-Msg-Id`` = ``msg_id_column``."""

    table: str
    key: str
    ended: str
    msg_id_column: str

    def hook(self, subject_prefix: str) -> PublishedHook:
        """For the relay: record where each message on ``subject_prefix`` landed."""
        return PublishedHook(
            subject_prefix,
            # Rows locked in key order, as the batched status updates lock them: no deadlock.
            f"""UPDATE {self.table} t SET stream_seq = u.seq
                FROM unnest($1::uuid[], $2::bigint[]) AS u(id, seq),
                     (SELECT {self.key} FROM {self.table}
                      WHERE {self.msg_id_column} = ANY($1::uuid[])
                      ORDER BY {self.key} FOR UPDATE) AS l
                WHERE t.{self.msg_id_column} = u.id AND l.{self.key} = t.{self.key}
                  AND t.stream_seq IS DISTINCT FROM {TAKEN}""",
        )

    @translate_errors
    async def ended_in_stream(self, db: Database, *, limit: int) -> list[tuple[UUID, int]]:
        """(key, stream sequence) of ended rows whose message may still be in the stream."""
        rows = await db.pool.fetch(
            f"""SELECT {self.key}, stream_seq FROM {self.table}
                WHERE {self.ended} AND stream_seq > {TAKEN} LIMIT $1""",
            limit,
        )
        return [(row[0], row[1]) for row in rows]

    @translate_errors
    async def forget(self, db: Database, removed: list[tuple[UUID, int]]) -> None:
        """Note that these messages are gone (unless the row moved to another one since)."""
        await db.pool.execute(
            f"""UPDATE {self.table} t SET stream_seq = NULL
                FROM unnest($1::uuid[], $2::bigint[]) AS r(id, seq)
                WHERE t.{self.key} = r.id AND t.stream_seq = r.seq""",
            [r[0] for r in removed],
            [r[1] for r in removed],
        )
