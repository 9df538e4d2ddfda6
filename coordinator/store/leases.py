"""Statements about ``worker_leases``: coarse, database-held leases of connected workers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from coordinator.store import conditions
from coordinator.store.database import Connection


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A connected worker as recorded beside its lease (what its Register said)."""

    worker_id: str
    coordinator_id: str
    language: str
    sdk_version: str
    version: str
    capacity: int
    workflow_names: tuple[str, ...]
    connected_at: datetime | None = None
    renewed_at: datetime | None = None
    # Workflows it owns (RUNNING), by the database.
    in_flight: int = 0
    # Filled in by the coordinator that lists it: whether the worker is connected to it,
    # and the seconds since it was heard from (there exact; elsewhere since the renewal).
    local: bool = False
    heartbeat_age: float = 0.0


_TAKE = """
INSERT INTO worker_leases (worker_id, coordinator_id, session_id, expires_at, language, sdk_version,
                           version, capacity, workflow_names)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7, $8, $9)
ON CONFLICT (worker_id) DO UPDATE
SET coordinator_id = EXCLUDED.coordinator_id, session_id = EXCLUDED.session_id,
    expires_at = EXCLUDED.expires_at, connected_at = now(), renewed_at = now(),
    language = EXCLUDED.language, sdk_version = EXCLUDED.sdk_version, version = EXCLUDED.version,
    capacity = EXCLUDED.capacity, workflow_names = EXCLUDED.workflow_names
"""


async def take(conn: Connection, worker: WorkerRow, session_id: str, seconds: float) -> None:
    """Records that the worker is connected to its coordinator through ``session_id``."""
    await conn.execute(
        _TAKE,
        worker.worker_id,
        worker.coordinator_id,
        session_id,
        seconds,
        worker.language,
        worker.sdk_version,
        worker.version,
        worker.capacity,
        list(worker.workflow_names),
    )


_RENEW = """
UPDATE worker_leases SET expires_at = now() + make_interval(secs => $3), renewed_at = now()
WHERE coordinator_id = $1 AND worker_id = ANY($2::text[])
"""


async def renew(conn: Connection, coordinator_id: str, worker_ids: Sequence[str], seconds: float) -> None:
    """Extends the leases of all of this coordinator's workers, in one statement."""
    await conn.execute(_RENEW, coordinator_id, list(worker_ids), seconds)


_DROP = "DELETE FROM worker_leases WHERE worker_id = $1 AND session_id = $2"


async def drop(conn: Connection, worker_id: str, session_id: str) -> None:
    """Forgets a session's lease (only that session's: a newer one may have taken it over)."""
    await conn.execute(_DROP, worker_id, session_id)


_RELEASE_EXPIRED = f"""
WITH gone AS (
    -- Leases that ran out, except those of workers connected here (renewed just before).
    DELETE FROM worker_leases
    WHERE expires_at < now() AND NOT (worker_id = ANY($1::text[]))
    RETURNING worker_id
)
UPDATE workflows SET owner_id = NULL, updated_at = now()
WHERE {conditions.running()} AND owner_id IS NOT NULL
  AND (owner_id IN (SELECT worker_id FROM gone)
       -- Owners with no lease at all: their coordinator died before it could record one,
       -- or dropped it without releasing. Only looked for when asked (at start-up).
       OR ($2 AND NOT (owner_id = ANY($1::text[]))
              AND NOT EXISTS (SELECT 1 FROM worker_leases l WHERE l.worker_id = owner_id)))
RETURNING name
"""


async def release_expired(conn: Connection, connected: Sequence[str], *, unleased: bool) -> list[str]:
    """Releases executions of workers whose lease expired; returns their workflow names.

    With ``unleased``, also those of owners that have no lease row at all.
    """
    return [r[0] for r in await conn.fetch(_RELEASE_EXPIRED, list(connected), unleased)]


_LIST = f"""
SELECT l.worker_id, l.coordinator_id, l.language, l.sdk_version, l.version, l.capacity, l.workflow_names,
       l.connected_at, l.renewed_at,
       (SELECT count(*) FROM workflows w WHERE w.owner_id = l.worker_id AND {conditions.running("w")})
FROM worker_leases l
WHERE l.expires_at > now()
ORDER BY l.worker_id
"""


async def list_workers(conn: Connection) -> list[WorkerRow]:
    """The workers with a live lease, on any coordinator, with what they own."""
    return [
        WorkerRow(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6]), r[7], r[8], r[9])
        for r in await conn.fetch(_LIST)
    ]
