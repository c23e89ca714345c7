"""One leader among the service's instances: the holder of a PostgreSQL advisory lock.

The outbox relay and the message ingest each run on one instance at a time, so that what they
publish keeps its order. :class:`Leadership` holds the lock on a connection of its own (the lock
goes with the connection, also when the process dies), runs the leader's work while it holds
it, and after any failure reconnects and competes again.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from agent_orchestrator.domain.errors import Unavailable
from agent_orchestrator.storage.connection_errors import CONNECTION_ERRORS
from agent_orchestrator.storage.postgres import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockSettings:
    """How often a follower tries the lock, and how long to wait after a failure."""

    lock_retry_s: float = 1.0
    reconnect_s: float = 1.0


class Leadership:
    """Competes for advisory lock ``lock_id``; runs ``lead(conn)`` while holding it.

    ``expected``: failures to log as a warning and start over after (connection losses always
    are); any other exception is logged as a bug, and it starts over all the same."""

    def __init__(
        self,
        name: str,
        dsn: str,
        lock_id: int,
        lead: Callable[[asyncpg.Connection], Awaitable[None]],
        settings: LockSettings,
        expected: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._name = name
        self._dsn = dsn
        self._lock_id = lock_id
        self._lead = lead
        self._settings = settings
        self._expected = (*CONNECTION_ERRORS, *expected)
        self.is_leader = False
        self.stopping = False

    async def run(self) -> None:
        """Lead when possible; returns after ``stopping`` is set."""
        while not self.stopping:
            try:
                conn = await connect(self._dsn)
            except Unavailable as exc:
                log.warning("%s cannot reach PostgreSQL: %s", self._name, exc)
                await asyncio.sleep(self._settings.reconnect_s)
                continue
            try:
                if await self._acquire(conn):
                    self.is_leader = True
                    log.info("%s is leading", self._name)
                    await self._lead(conn)
            except self._expected as exc:
                log.warning("%s interrupted, starting over: %r", self._name, exc)
            except Exception:
                # Whatever it was, the leader's work must go on: start over on a fresh connection.
                log.exception("%s failed; starting over", self._name)
            finally:
                self.is_leader = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=2)
            if not self.stopping:
                await asyncio.sleep(self._settings.reconnect_s)

    async def _acquire(self, conn: asyncpg.Connection) -> bool:
        # Followers poll the lock slowly: PostgreSQL cannot notify its release.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
            if self.stopping:
                return False
            await asyncio.sleep(self._settings.lock_retry_s)
        return True
