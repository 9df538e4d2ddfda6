"""Statements that control a workflow from outside: cancel (with its descendants)."""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.store import conditions
from coordinator.store.database import Connection

_TREE = f"""
-- The workflow and its descendants (children name their parent); the unfinished ones,
-- locked in workflow_id order like every transaction that locks several.
WITH RECURSIVE tree AS (
    SELECT workflow_id FROM workflows WHERE workflow_id = $1
    UNION
    SELECT w.workflow_id FROM workflows w JOIN tree t ON w.parent_id = t.workflow_id
)
SELECT w.seq, w.workflow_id, w.owner_id, w.epoch FROM workflows w
WHERE w.workflow_id IN (SELECT workflow_id FROM tree) AND {conditions.unfinished("w")}
ORDER BY w.workflow_id
FOR UPDATE
"""
_CANCEL = f"""
WITH cancelled AS (
    UPDATE workflows w
    SET status = 'CANCELLED', owner_id = NULL, suspended = false, completed_at = now(), updated_at = now(),
        error = jsonb_build_object('type', 'stepline.WorkflowCancelledError', 'message', $2::text,
                                   'traceback', '')
    WHERE w.seq = ANY($1::bigint[]) AND {conditions.unfinished("w")}
    RETURNING w.seq
),
untimed AS (DELETE FROM timers t USING cancelled c WHERE t.workflow_seq = c.seq)
SELECT count(*) FROM cancelled
"""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A workflow cancelled, with the execution that held it (if any) when it was."""

    workflow_id: str
    owner_id: str | None
    epoch: int


async def cancel(conn: Connection, workflow_id: str, message: str) -> list[Cancelled]:
    """Cancels the workflow and its unfinished descendants, in the caller's transaction."""
    found = await conn.fetch(_TREE, workflow_id)
    if found:
        await conn.fetchval(_CANCEL, [r[0] for r in found], message)
    return [Cancelled(r[1], r[2], r[3]) for r in found]
