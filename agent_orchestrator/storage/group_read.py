"""Group read: concurrent lookups by key share one query (natural batching, like group commit).

Callers ``get`` a key and await its value. One reader takes every key asked for while its last
query was in flight and fetches them all with the next query (``WHERE key = ANY($1)``). No
timer: a lone lookup is a query of one key at once. So under load a primary-key read costs a
share of one round trip instead of a round trip each, and the replies of a batch go out
together (one socket write for many).

Every lookup's query starts after the lookup was asked for, so a reader sees every write that
committed before its request arrived (read-your-writes holds as with a query per request).
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_MAX_BATCH = 500


class GroupRead(Generic[K, V]):
    """Batched lookups through ``fetch`` (keys -> the values found; a missing key: None)."""

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.queries = 0
        """Queries run so far (for tests and metrics)."""

    async def get(self, key: K) -> V | None:
        """The value of ``key``, or None."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._reader is None:
            self._reader = asyncio.create_task(self._drain(), name="group-read")
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                batch = {key: self._waiting.pop(key) for key in keys}
                live = [key for key, futures in batch.items() if any(not f.done() for f in futures)]
                if live:
                    await self._read(live, batch)
        except BaseException as exc:
            for futures in self._waiting.values():
                _settle(futures, exc)
            self._waiting.clear()
            raise
        finally:
            self._reader = None

    async def _read(self, keys: list[K], batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        self.queries += 1
        try:
            found = await self._fetch(keys)
        except BaseException as exc:
            for futures in batch.values():
                _settle(futures, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for key, futures in batch.items():
            value = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(value)


def _settle(futures: list["asyncio.Future[V | None]"], exc: BaseException) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(exc)
