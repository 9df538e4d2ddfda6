"""Deleting finished workflows, with their steps, messages, events and timers, once they are
older than the retention."""

from __future__ import annotations

from coordinator.store import conditions
from coordinator.store.database import Connection

# Any fixed number: of several coordinators, one sweeps at a time.
_LOCK_KEY = 7_420_002

_SWEEP = f"""
WITH old AS (
    SELECT seq FROM workflows
    WHERE completed_at < now() - make_interval(secs => $1)
      AND {conditions.final()}
    ORDER BY completed_at
    LIMIT $2
    -- Rows someone else is touching are left for the next round.
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM workflows WHERE seq IN (SELECT seq FROM old) RETURNING seq
),
steps_gone AS (
    DELETE FROM steps WHERE workflow_seq IN (SELECT seq FROM gone) RETURNING 1
),
messages_gone AS (
    DELETE FROM messages WHERE workflow_seq IN (SELECT seq FROM gone)
),
events_gone AS (
    DELETE FROM workflow_events WHERE workflow_seq IN (SELECT seq FROM gone)
),
-- Timers of a finished workflow would fire into nothing; they go with it.
timers_gone AS (
    DELETE FROM timers WHERE workflow_seq IN (SELECT seq FROM gone)
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM steps_gone)
"""


async def sweep(conn: Connection, older_than_seconds: float, batch: int) -> tuple[int, int]:
    """Deletes up to ``batch`` finished workflows older than the limit; returns (workflows, steps)."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
            return 0, 0  # another coordinator is sweeping
        row = await conn.fetchrow(_SWEEP, older_than_seconds, batch)
    return int(row[0]), int(row[1])
