"""Which asyncpg errors are outages (retried until PostgreSQL answers) and which are not."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest

from coordinator.errors import CoordinatorError, InvalidArgument, Unavailable
from coordinator.store.database import translate


class _Conn:
    def __init__(self, closed: bool) -> None:
        self.closed = closed

    def is_closed(self) -> bool:
        return self.closed


@pytest.mark.parametrize(
    ("exc", "conn", "kind"),
    [
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), None, Unavailable),
        (asyncpg.exceptions.AdminShutdownError("shutdown"), None, Unavailable),
        (asyncpg.exceptions.TooManyConnectionsError("full"), None, Unavailable),
        (ConnectionRefusedError("refused"), None, Unavailable),
        (TimeoutError(), None, Unavailable),
        (asyncpg.InterfaceError("connection is closed"), _Conn(closed=True), Unavailable),
        # asyncpg refusing to encode an argument is bad input, not an outage.
        (asyncpg_base.DataError("invalid input for query argument $1"), _Conn(closed=False), InvalidArgument),
        (asyncpg.exceptions.UntranslatableCharacterError("\\u0000"), None, InvalidArgument),
        (asyncpg.exceptions.UniqueViolationError("duplicate"), None, InvalidArgument),
        # A client state error on a live connection, or an internal one, is a bug.
        (asyncpg.InterfaceError("another operation is in progress"), _Conn(closed=False), CoordinatorError),
        (asyncpg.exceptions.InternalClientError("bug"), None, CoordinatorError),
        (asyncpg.exceptions.OutdatedSchemaCacheError("stale"), None, CoordinatorError),
    ],
)
def test_only_lost_connections_are_unavailable(exc: Exception, conn: _Conn | None, kind: type) -> None:
    error = translate(exc, conn)
    assert type(error) is kind
    assert type(exc).__name__ in str(error)
