"""The PostgreSQL pool, and the one place where asyncpg's errors become CoordinatorErrors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from coordinator.errors import Conflict, CoordinatorError, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

Connection = Any  # asyncpg.Connection; asyncpg ships no type information.

# Errors that mean "PostgreSQL cannot be reached right now", as opposed to "this statement
# or its values are wrong": connection exceptions (SQLSTATE class 08), operator
# intervention (57: shutdown, cannot connect now), insufficient resources (53: too many
# connections, disk full), a refused or broken socket, a timed-out connect.
CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,
    asyncio.TimeoutError,
)
# Errors that mean "these values cannot be stored": data exceptions (22, such as a string
# PostgreSQL's jsonb refuses), integrity violations (23), and asyncpg's own refusal to
# encode an argument (an InterfaceError that is also a ValueError).
_BAD_VALUES = (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError)


def transient(exc: BaseException, conn: Connection | None = None) -> bool:
    """Whether ``exc`` means that PostgreSQL is out of reach, so that the same work may
    succeed later. ``conn`` is the connection it came from, if any."""
    if isinstance(exc, CONNECTION_LOST):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError):
        # asyncpg's state errors ("connection is closed", "pool is closing") mean an outage
        # only when the connection is in fact gone; on an open one they are bugs, and
        # retrying a bug forever would hide it behind a NOT_SERVING health status.
        return conn is None or conn.is_closed()
    return False


def broken(exc: BaseException) -> bool:
    """Whether ``exc`` leaves its connection in a state nobody should use again: asyncpg's
    own state errors (seen on the write connection while PostgreSQL was shutting down:
    "cannot switch to state 12; another operation (2) is in progress")."""
    return isinstance(exc, asyncpg.exceptions.InternalClientError) or (
        isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)
    )


def translate(exc: BaseException, conn: Connection | None = None) -> CoordinatorError:
    """Maps an exception raised while talking to PostgreSQL to the coordinator's tree."""
    if isinstance(exc, CoordinatorError):
        return exc
    if transient(exc, conn):
        return Unavailable(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        return Conflict(f"{type(exc).__name__}: {exc}")
    bad_argument = isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError)
    if isinstance(exc, _BAD_VALUES) or bad_argument:
        return InvalidArgument(f"PostgreSQL refused the values: {type(exc).__name__}: {exc}")
    return CoordinatorError(f"database error: {type(exc).__name__}: {exc}")


async def _keep_session(conn: Connection) -> None:
    """Pool release hook: nothing to reset (asyncpg still ends open transactions itself)."""


class Database:
    """An asyncpg pool, plus one dedicated connection for the per-step write path, that
    reports whether PostgreSQL answered the last time it was asked."""

    def __init__(self, pool: Any, url: str) -> None:
        self._pool = pool
        self.url = url
        self._writer: Any = None
        self.healthy = True

    @classmethod
    async def connect(cls, url: str, *, size: int) -> Database:
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=size,
                # Statements are prepared once per connection and reused; the hot path's
                # statements are few and fixed.
                statement_cache_size=256,
                # A connection that was idle across a PostgreSQL restart is dead; drop
                # idle connections so that the pool notices quickly.
                max_inactive_connection_lifetime=60,
                # The coordinator keeps no session state (no LISTEN, no session advisory
                # locks, no SET), so the default reset query on every release would be a
                # wasted round trip per batch.
                reset=_keep_session,
            )
        except Exception as exc:
            raise translate(exc) from exc
        return cls(pool, url)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.terminate()
        try:
            await asyncio.wait_for(self._pool.close(), timeout=5)
        except (TimeoutError, *CONNECTION_LOST):
            self._pool.terminate()

    def _failed(self, exc: Exception, conn: Connection | None) -> CoordinatorError:
        """Translates ``exc`` and remembers whether PostgreSQL answered."""
        error = translate(exc, conn)
        if isinstance(error, Unavailable):
            if self.healthy:
                log.warning("PostgreSQL became unavailable: %s: %s", type(exc).__name__, exc)
            self.healthy = False
        return error

    def _answered(self) -> None:
        if not self.healthy:
            log.info("PostgreSQL is available again")
        self.healthy = True

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection. Errors leave as CoordinatorErrors."""
        conn: Connection | None = None
        try:
            async with self._pool.acquire(timeout=10) as conn:
                yield conn
        except Exception as exc:
            if conn is not None and broken(exc):
                conn.terminate()  # the pool opens another in its place
            raise self._failed(exc, conn) from exc
        self._answered()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[Connection]:
        """The connection of the per-step write path, held across batches (no pool hand-off
        per batch). One user at a time; replaced after it is lost."""
        try:
            if self._writer is None or self._writer.is_closed():
                self._writer = await asyncpg.connect(
                    self.url,
                    statement_cache_size=256,
                    # The write path's statements take arrays, whose length a custom plan
                    # would be made for: PostgreSQL then plans them afresh on every call
                    # (0.3 ms of a 0.7 ms one-step batch). Their plans do not depend on
                    # the batch (every lookup is a primary-key probe), so plan them once.
                    server_settings={"plan_cache_mode": "force_generic_plan"},
                )
            yield self._writer
        except Exception as exc:
            error = self._failed(exc, self._writer)
            if (isinstance(error, Unavailable) or broken(exc)) and self._writer is not None:
                self._writer.terminate()
                self._writer = None
            raise error from exc
        self._answered()


class Listening:
    """A connection of its own that LISTENs on a channel; ``lost`` is set when it closes."""

    def __init__(self, conn: Any, lost: asyncio.Event) -> None:
        self._conn = conn
        self.lost = lost

    async def ping(self) -> None:
        """Checks the connection (a silently dropped one is noticed here)."""
        try:
            await self._conn.execute("SELECT 1")
        except Exception as exc:
            self.lost.set()
            raise translate(exc, self._conn) from exc

    def close(self) -> None:
        self._conn.terminate()


async def listen(url: str, channel: str, received: Callable[[str], None]) -> Listening:
    """Opens a connection that calls ``received`` with every notification's payload."""
    try:
        conn = await asyncpg.connect(url)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(channel, lambda _conn, _pid, _channel, payload: received(payload))
    except Exception as exc:
        raise translate(exc) from exc
    return Listening(conn, lost)
