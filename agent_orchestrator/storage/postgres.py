"""PostgreSQL connection pool and translation of driver errors into the service's errors."""

import functools
import json
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import asyncpg

from agent_orchestrator.domain.errors import Unavailable, ValidationFailed
from agent_orchestrator.storage.connection_errors import CONNECTION_ERRORS
from agent_orchestrator.storage.group_commit import GroupCommit
from agent_orchestrator.storage.traced_db import TracedConnection

P = ParamSpec("P")
T = TypeVar("T")


async def init_connection(conn: asyncpg.Connection) -> None:
    for json_type in ("json", "jsonb"):
        await conn.set_type_codec(
            json_type, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections never change session state (no SET, LISTEN or held advisory locks;
    open transactions are rolled back by asyncpg), so skip the reset round trip on release."""


class Database:
    """The service's connection pool; created by ``open()``, so construction does no I/O.

    ``traced``: every query is a span of the traced request that runs it (tracing is on)."""

    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, traced: bool = False
    ) -> None:
        self.dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._connection_class: type[asyncpg.Connection[asyncpg.Record]] = (
            TracedConnection if traced else asyncpg.Connection
        )
        self._pool: asyncpg.Pool | None = None
        self.group_commit = GroupCommit(lambda: self.pool)
        """The pool's writer: concurrent writes share one transaction (see group_commit)."""

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool; Unavailable before ``open()`` or after ``close()``."""
        if self._pool is None:
            raise Unavailable("the database pool is not open")
        return self._pool

    async def open(self) -> None:
        """Connect; json/jsonb columns read and write as Python objects."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                init=init_connection,
                reset=_keep_session,
                command_timeout=30,
                timeout=10,
                connection_class=self._connection_class,
            )
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"PostgreSQL is not reachable: {exc!r}") from exc

    async def close(self) -> None:
        """Close every connection."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def connect(dsn: str) -> asyncpg.Connection:
    """One dedicated connection (LISTEN, advisory locks), with the same codecs as the pool."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"PostgreSQL is not reachable: {exc}") from exc
    await init_connection(conn)
    return conn


def translate_errors(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Turn connection-level failures of ``func`` into Unavailable and values PostgreSQL
    cannot hold into ValidationFailed; re-raise the rest."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await func(*args, **kwargs)
        except CONNECTION_ERRORS as exc:
            raise Unavailable("PostgreSQL is unavailable; retry shortly") from exc
        except (asyncpg.exceptions.DataError, OverflowError) as exc:
            # Input the contract let through but PostgreSQL cannot hold (SQLSTATE class 22).
            raise ValidationFailed(f"a value cannot be stored: {exc}") from exc

    return wrapper
