"""Statements about ``timers``: due times of waits and workflow deadlines.

A timer is taken by deleting its row in the transaction that applies its effect, after
that transaction has locked the timer's workflow: of two coordinators that find the same
timer due, the second waits for the first's lock and then finds the row gone. So every
timer fires once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from coordinator.models import WorkflowRecord
from coordinator.store import conditions, rows
from coordinator.store.database import Connection
from coordinator.store.waits import Ended

_DUE = """
SELECT workflow_seq, step_id FROM timers WHERE due_at <= clock_timestamp()
ORDER BY due_at LIMIT $1
"""


async def due(conn: Connection, limit: int) -> list[tuple[int, str]]:
    """Up to ``limit`` timers that are due, earliest first (not yet taken)."""
    return [(r[0], r[1]) for r in await conn.fetch(_DUE, limit)]


_TAKE = f"""
WITH taken AS (
    DELETE FROM timers t USING unnest($1::bigint[], $2::text[]) AS k(seq, step_id)
    WHERE t.workflow_seq = k.seq AND t.step_id = k.step_id AND t.due_at <= clock_timestamp()
    RETURNING t.workflow_seq, t.step_id
),
-- A sleep ends; a recv or get_event times out (if it still waits, in an unfinished workflow).
ended AS (
    UPDATE steps s
    SET status = 'SUCCEEDED', timed_out = s.kind <> 'sleep', completed_at = clock_timestamp()
    FROM taken k, workflows w
    WHERE s.workflow_seq = k.workflow_seq AND s.step_id = k.step_id AND s.status = 'WAITING'
      AND w.seq = k.workflow_seq AND {conditions.unfinished("w")}
    RETURNING s.workflow_seq, s.step_id, s.timed_out, w.workflow_id
),
woken AS (
    UPDATE workflows w SET suspended = false, updated_at = now()
    WHERE w.seq IN (SELECT workflow_seq FROM ended) AND w.suspended
    RETURNING w.name
)
SELECT 't', workflow_seq, step_id, NULL::bool, NULL FROM taken
UNION ALL SELECT 'e', workflow_seq, step_id, timed_out, workflow_id FROM ended
UNION ALL SELECT 'w', NULL, NULL, NULL, name FROM woken
"""


async def take(
    conn: Connection, keys: Sequence[tuple[int, str]]
) -> tuple[list[tuple[int, str]], list[Ended], list[str]]:
    """Takes the given timers if they are still there (their workflows locked by the
    caller) and ends the waits they are for, in one statement. Returns the timers taken,
    the waits that ended, and the names of suspended workflows that woke."""
    result = await conn.fetch(_TAKE, [k[0] for k in keys], [k[1] for k in keys])
    taken = [(r[1], r[2]) for r in result if r[0] == "t"]
    ended = [Ended(r[1], r[4], r[2], None, r[3]) for r in result if r[0] == "e"]
    return taken, ended, [r[4] for r in result if r[0] == "w"]


_NEXT = "SELECT min(due_at) FROM timers"


async def next_due(conn: Connection) -> datetime | None:
    """The earliest due time of all timers (one probe of the due_at index)."""
    at: datetime | None = await conn.fetchval(_NEXT)
    return at


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
