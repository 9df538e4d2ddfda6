"""Statements about ``timers``: due times of waits and workflow deadlines.

A timer is taken by deleting its row in the transaction that applies its effect, after
that transaction has locked the timer's workflow: of two coordinators that find the same
timer due, the second waits for the first's lock and then finds the row gone. So every
timer fires once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from coordinator.models import StepKind, WorkflowRecord
from coordinator.store import conditions, rows
from coordinator.store.database import Connection

_DUE = """
SELECT workflow_seq, step_id FROM timers WHERE due_at <= clock_timestamp()
ORDER BY due_at LIMIT $1
"""


async def due(conn: Connection, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` timers that are due, earliest first (not yet taken)."""
    return [(r[0], r[1]) for r in await conn.fetch(_DUE, limit)]


_TAKE = """
DELETE FROM timers t USING unnest($1::bigint[], $2::text[]) AS k(seq, step_id)
WHERE t.workflow_seq = k.seq AND t.step_id = k.step_id AND t.due_at <= clock_timestamp()
RETURNING t.workflow_seq, t.step_id
"""


async def take(conn: Connection, keys: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """Deletes the given timers if they are still there; returns those this call took."""
    result = await conn.fetch(_TAKE, [k[0] for k in keys], [k[1] for k in keys])
    return [(r[0], r[1]) for r in result]


_NEXT = "SELECT min(due_at) FROM timers"


async def next_due(conn: Connection) -> datetime | None:
    """The earliest due time of all timers (one probe of the due_at index)."""
    at: datetime | None = await conn.fetchval(_NEXT)
    return at


_WAIT_KINDS = """
SELECT s.workflow_seq, s.step_id, s.kind FROM steps s
JOIN unnest($1::bigint[], $2::text[]) AS k(seq, step_id) ON s.workflow_seq = k.seq AND s.step_id = k.step_id
WHERE s.status = 'WAITING'
"""


async def open_waits(conn: Connection, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], StepKind]:
    """Which of the given steps still wait, and of what kind."""
    result = await conn.fetch(_WAIT_KINDS, [k[0] for k in keys], [k[1] for k in keys])
    return {(r[0], r[1]): StepKind(r[2]) for r in result}


_TIME_OUT = f"""
WITH old AS (
    SELECT seq, owner_id, epoch FROM workflows WHERE seq = ANY($1::bigint[]) AND {conditions.unfinished()}
)
UPDATE workflows w
SET status = 'TIMED_OUT', owner_id = NULL, suspended = false, completed_at = now(), updated_at = now(),
    error = jsonb_build_object(
        'type', 'stepline.WorkflowTimedOutError',
        'message', format('workflow %s passed its deadline (%s) before it finished', w.workflow_id,
                          w.deadline_at),
        'traceback', '')
FROM old WHERE w.seq = old.seq
RETURNING old.owner_id, {rows.workflow_columns("w")}
"""


async def time_out(conn: Connection, seqs: Sequence[int]) -> list[tuple[str | None, WorkflowRecord]]:
    """Ends the unfinished ones of these (locked) workflows TIMED_OUT; returns each with the
    owner it had (to be told to abandon it)."""
    result = await conn.fetch(_TIME_OUT, list(seqs))
    return [(r[0], rows.workflow(r[1:])) for r in result]
