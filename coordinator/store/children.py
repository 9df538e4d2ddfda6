"""Statements about child workflows and waits for a workflow to finish (AWAIT_WORKFLOW).

A wait that begins while its workflow is unfinished marks that workflow ``awaited``; the
trigger of ``migrations/0006_children.sql`` ends it in the transaction that finishes the
workflow. A wait that begins when its workflow has finished already (or does not exist)
is ended here at once. The workflows concerned are locked by the caller first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator.models import Payload
from coordinator.store import rows, workflows
from coordinator.store.database import Connection
from coordinator.store.waits import Ended

_AWAITED = "UPDATE workflows SET awaited = true WHERE workflow_id = ANY($1::text[]) AND NOT awaited"


async def mark_awaited(conn: Connection, workflow_ids: Iterable[str]) -> None:
    """Someone waits for these (locked, unfinished) workflows to finish."""
    ids = sorted(set(workflow_ids))
    if ids:
        await conn.execute(_AWAITED, ids)


_END_FINISHED = """
WITH k AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS k(seq, step_id, target)),
e AS (
    UPDATE steps s
    SET status = CASE WHEN t.status = 'SUCCEEDED' THEN 'SUCCEEDED' ELSE 'FAILED' END,
        output = CASE WHEN t.status = 'SUCCEEDED' THEN t.output END,
        output_encoding = CASE WHEN t.status = 'SUCCEEDED' THEN t.output_encoding END,
        error = CASE WHEN t.seq IS NULL
                     THEN jsonb_build_object('type', 'stepline.WorkflowNotFoundError',
                                             'message', format('workflow %s does not exist', k.target),
                                             'traceback', '')
                     ELSE stepline_outcome_error(t.status, t.error, t.workflow_id) END,
        completed_at = clock_timestamp()
    FROM k LEFT JOIN workflows t ON t.workflow_id = k.target
    WHERE s.workflow_seq = k.seq AND s.step_id = k.step_id AND s.status = 'WAITING'
      AND (t.seq IS NULL OR t.status NOT IN ('ENQUEUED', 'RUNNING', 'PAUSED'))
    RETURNING s.workflow_seq, s.step_id, s.output, s.output_encoding, s.error
),
untimed AS (
    DELETE FROM timers t USING e WHERE t.workflow_seq = e.workflow_seq AND t.step_id = e.step_id
)
SELECT workflow_seq, step_id, output, output_encoding, error::text FROM e
"""


async def end_finished(conn: Connection, waits: Sequence[tuple[int, str, str, str]]) -> list[Ended]:
    """Ends the (seq, workflow_id, step_id, target) waits whose target has finished or does
    not exist, with the target's outcome; returns those it ended."""
    if not waits:
        return []
    ids = {(w[0], w[2]): w[1] for w in waits}
    found = await conn.fetch(
        _END_FINISHED, [w[0] for w in waits], [w[2] for w in waits], [w[3] for w in waits]
    )
    return [
        Ended(
            r[0],
            ids[(r[0], r[1])],
            r[1],
            Payload(bytes(r[2]), r[3]) if r[2] is not None else None,
            False,
            rows.error_from_json(r[4]),
        )
        for r in found
    ]


@dataclass(frozen=True, slots=True)
class NewChild:
    parent_id: str
    step_id: str
    child_id: str
    name: str
    input: Payload


_PARENTS = """
UPDATE workflows w SET parent_id = b.parent_id, parent_step_id = b.step_id
FROM unnest($1::text[], $2::text[], $3::text[]) AS b(workflow_id, parent_id, step_id)
WHERE w.workflow_id = b.workflow_id
"""
_NAMES = "SELECT workflow_id, name FROM workflows WHERE workflow_id = ANY($1::text[])"


async def start(conn: Connection, children: Sequence[NewChild]) -> tuple[set[str], dict[str, str]]:
    """Records the children whose IDs are free, ENQUEUED, naming their parents.

    Returns the IDs recorded now, and the name of every workflow that had a child's ID
    already (the same child, started by an earlier run of the parent, if the name matches).
    """
    if not children:
        return set(), {}
    at = datetime.now(UTC)
    new = [workflows.NewWorkflow(c.child_id, c.name, c.input, None, at) for c in children]
    inserted = {r.workflow_id for r in await workflows.insert(conn, new)}
    fresh = [c for c in children if c.child_id in inserted]
    if fresh:
        await conn.execute(
            _PARENTS, [c.child_id for c in fresh], [c.parent_id for c in fresh], [c.step_id for c in fresh]
        )
    others = [c.child_id for c in children if c.child_id not in inserted]
    existing = {r[0]: r[1] for r in await conn.fetch(_NAMES, others)} if others else {}
    return inserted, existing
