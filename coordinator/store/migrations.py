"""Applies the numbered SQL files of ``coordinator/migrations`` in order, once each."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from coordinator.store.database import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed number: coordinators starting together on one database take turns.
_LOCK_KEY = 7_420_001

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS stepline_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this version, in order."""
    found = []
    for entry in resources.files("coordinator.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


async def apply(db: Database) -> list[int]:
    """Applies the pending migrations, each in its own transaction; returns their versions."""
    applied: list[int] = []
    async with db.connection() as conn:
        await conn.execute(_CREATE_TABLE)
        for migration in available():
            async with conn.transaction():
                # A transaction-scoped advisory lock serialises concurrent migrators; the
                # check below then sees what the previous holder committed.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                done = await conn.fetchval(
                    "SELECT true FROM stepline_migrations WHERE version = $1", migration.version
                )
                if done:
                    continue
                log.info("applying migration %04d_%s", migration.version, migration.name)
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO stepline_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
                applied.append(migration.version)
    return applied
