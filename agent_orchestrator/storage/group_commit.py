"""Group commit: concurrent writes share one PostgreSQL transaction (natural batching).

Callers ``submit`` a write of some kind (a ``BatchKind``: it knows how to write many items of
its kind in one statement, typically from ``unnest`` arrays) and await their own result. One
writer takes everything queued while its last transaction was in flight and runs it in the next
transaction: one ``BatchKind.write`` call per kind present, then one commit. No timer: when
nothing else is queued, a batch is the one request, so latency at low load does not grow.

Guarantees:
- A caller's result is set only after its transaction committed (a success reply is durable).
- Each caller gets its own result or its own error. A kind reports a per-item failure that does
  not abort the statement (a failed version guard, a conflict it detected) in that item's
  result, or as an exception instance in its place, which is raised to that caller only.
- When a batch's transaction fails with a statement error (a unique violation, a value
  PostgreSQL cannot hold, a deadlock), every item of it runs again alone, each in its own
  transaction, so the error reaches only the caller that caused it. Connection errors fail the
  whole batch: each caller gets the error (and translates it to Unavailable as before).
- A caller cancelled before its batch started writes nothing.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg

from agent_orchestrator.storage.connection_errors import CONNECTION_ERRORS

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)

DEFAULT_MAX_BATCH = 500
DEFAULT_WRITERS = 2
"""Transactions in flight at once: while one waits for its WAL flush, the next batch is
already written (PostgreSQL flushes both with one fsync when they meet)."""

Connection = Any
"""An asyncpg connection, or the pool's proxy of one."""


class BatchKind(Protocol[ItemT_contra, ResultT_co]):
    """One kind of write that many callers' items can share one statement for.

    A kind whose ``write`` runs exactly one statement may say so with a class attribute
    ``single_statement = True``: a batch of that kind alone then runs without BEGIN/COMMIT
    (the statement is atomic by itself). ``one_statement_per_item = True`` says the same of a
    batch of one item."""

    async def write(
        self, conn: Connection, items: Sequence[ItemT_contra]
    ) -> Sequence[ResultT_co | BaseException]:
        """Write ``items`` inside the open transaction on ``conn``; one result per item, in
        order (an exception instance fails that item's caller only)."""
        ...


@dataclass
class _Pending(Generic[ItemT, ResultT]):
    kind: BatchKind[ItemT, ResultT]
    item: ItemT
    future: "asyncio.Future[ResultT]"


@dataclass
class GroupCommitStats:
    """Counters for metrics and tests: transactions run and items written."""

    batches: int = 0
    items: int = 0
    largest_batch: int = 0
    split_batches: int = 0


class GroupCommit:
    """The writer of one pool. ``submit`` from any task of the event loop."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        writers: int = DEFAULT_WRITERS,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: list[_Pending[Any, Any]] = []
        self._max_writers = writers
        self._writers: set[asyncio.Task[None]] = set()
        self._busy = 0
        self.stats = GroupCommitStats()

    async def submit(self, kind: BatchKind[ItemT, ResultT], item: ItemT) -> ResultT:
        """Write ``item`` with whatever else is queued; its result once committed."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(kind, item, future))
        if len(self._writers) == self._busy and len(self._writers) < self._max_writers:
            # Every writer is in a transaction (or there is none): start one more.
            self._writers.add(asyncio.create_task(self._drain(), name="group-commit"))
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [p for p in self._queue[: self._max_batch] if not p.future.done()]
                del self._queue[: self._max_batch]
                if batch:
                    self._busy += 1
                    try:
                        await self._commit(batch)
                    finally:
                        self._busy -= 1
        except BaseException as exc:
            # Cancelled (shutdown) or a bug: nobody may wait forever.
            for pending in self._queue:
                _fail(pending, exc)
            self._queue.clear()
            raise
        finally:
            # At once (not in a done callback): a submit right after must see it gone.
            task = asyncio.current_task()
            if task is not None:
                self._writers.discard(task)

    async def _commit(self, batch: list[_Pending[Any, Any]]) -> None:
        try:
            results = await self._transaction(batch)
        except CONNECTION_ERRORS as exc:
            for pending in batch:
                _fail(pending, exc)
            return
        except asyncio.CancelledError as exc:
            for pending in batch:
                _fail(pending, exc)
            raise
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            # Find out whose write it was: each item alone, in its own transaction.
            self.stats.split_batches += 1
            log.debug("group commit: batch of %d failed (%r); writing each alone", len(batch), exc)
            for pending in batch:
                await self._commit([pending])
            return
        self.stats.batches += 1
        self.stats.items += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for pending, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                _fail(pending, result)
            elif not pending.future.done():
                pending.future.set_result(result)

    async def _transaction(self, batch: list[_Pending[Any, Any]]) -> list[Any]:
        by_kind: dict[int, list[int]] = {}
        for index, pending in enumerate(batch):
            by_kind.setdefault(id(pending.kind), []).append(index)
        results: list[Any] = [None] * len(batch)
        async with self._pool().acquire() as conn:
            kinds = [batch[indexes[0]].kind for indexes in by_kind.values()]
            # One statement is a transaction of its own: BEGIN and COMMIT would only add two
            # round trips (and leave its commit to a client that may die before sending it).
            alone = len(kinds) == 1 and (
                getattr(kinds[0], "single_statement", False)
                or (len(batch) == 1 and getattr(kinds[0], "one_statement_per_item", False))
            )
            async with contextlib.nullcontext() if alone else conn.transaction():
                for kind, indexes in zip(kinds, by_kind.values(), strict=True):
                    out = await kind.write(conn, [batch[i].item for i in indexes])
                    if len(out) != len(indexes):
                        raise RuntimeError(f"{kind!r} gave {len(out)} results for {len(indexes)}")
                    for i, result in zip(indexes, out, strict=True):
                        results[i] = result
        return results


def _fail(pending: _Pending[Any, Any], exc: BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        pending.future.cancel()
    else:
        pending.future.set_exception(exc)
