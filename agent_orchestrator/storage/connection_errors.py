"""Driver errors that mean PostgreSQL is not there right now, not that a request is wrong."""

import asyncio

import asyncpg

# Errors that mean "the database is not there right now", not "the request is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin / crash shutdown, class 57
    # A pooled connection caught mid-operation when PostgreSQL went away ("cannot switch to
    # state 12; another operation is in progress"), seen on a PostgreSQL restart under load.
    asyncpg.exceptions.InternalClientError,
)
