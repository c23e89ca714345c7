"""The sweep: periodic work whose state lives in PostgreSQL, run by every instance.

Each sweep finds its work in the database and changes each row only on the status (or
revision) it read, so instances never double it and nothing is forgotten across restarts:

- ``expire messages``: SENT messages past ``expires_at`` become EXPIRED (the server has
  already dropped them from AGENT_MESSAGES by their ``Nats-TTL``);
- ``time out tasks``: RUNNING tasks past their deadline are retried or TIMED_OUT, and
  questions (INPUT_REQUIRED) past theirs get their on_timeout, once;
- ``remove ended messages`` / ``remove ended assignments``: messages and task assignments
  that reached a final status while still in their stream are deleted from it, so they are
  never delivered again.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol
from uuid import UUID

from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.storage.agent_queues import AgentQueue

log = logging.getLogger(__name__)

BATCH = 500

Sweep = Callable[[], Awaitable[int]]
"""One kind of sweep; returns how many rows it handled."""


class EndedInStream(Protocol):
    """A store whose ended rows may still have a message waiting in a stream."""

    async def ended_in_stream(self, *, limit: int) -> list[tuple[UUID, int]]: ...

    async def forget_stream_seqs(self, removed: list[tuple[UUID, int]]) -> None: ...


def remove_ended(store: EndedInStream, queue: AgentQueue) -> Sweep:
    """A sweep that deletes the messages of ended rows of ``store`` from ``queue``'s stream."""

    async def sweep() -> int:
        count = 0
        while stale := await store.ended_in_stream(limit=BATCH):
            for _, stream_seq in stale:
                await queue.delete_message(stream_seq)
            await store.forget_stream_seqs(stale)
            count += len(stale)
            if len(stale) < BATCH:
                break
        return count

    return sweep


class Sweeper:
    """Runs every sweep every ``interval_s`` until stopped."""

    def __init__(self, sweeps: Mapping[str, Sweep], *, interval_s: float) -> None:
        self._sweeps = dict(sweeps)
        self._interval_s = interval_s
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Make ``run`` return after the current round."""
        self._stop.set()

    async def run(self) -> None:
        """Sweep until stopped; a dependency that is down only delays a sweep."""
        while not self._stop.is_set():
            await self.sweep()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._stop.wait()

    async def sweep(self) -> dict[str, int]:
        """One round of every sweep: how many rows each handled (-1: it could not run)."""
        done = {}
        for name, sweep in self._sweeps.items():
            try:
                done[name] = await sweep()
            except Unavailable as exc:
                log.warning("sweep %r postponed: %s (%s)", name, exc.message, exc.__cause__)
                done[name] = -1
            except Exception:
                # A bug in one sweep must not stop the others, nor the next rounds.
                log.exception("sweep %r failed", name)
                done[name] = -1
        return done
