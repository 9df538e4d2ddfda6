"""Statements that control a workflow from outside: cancel (with its descendants), resume, fork."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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


_RESUMABLE = ("FAILED", "CANCELLED", "TIMED_OUT", "MAX_RECOVERY_ATTEMPTS_EXCEEDED", "PAUSED")
_RESUME = f"""
WITH w AS (
    SELECT seq, workflow_id, name, status FROM workflows WHERE workflow_id = $1 FOR UPDATE
),
resumed AS (
    -- Ready to be handed out again, from a clean slate: no deadline, no recoveries counted.
    UPDATE workflows t
    SET status = 'ENQUEUED', owner_id = NULL, suspended = false, handoff = false, output = NULL,
        version = CASE WHEN $2::text IS NULL THEN t.version ELSE NULLIF($2::text, '') END,
        output_encoding = NULL, error = NULL, completed_at = NULL, deadline_at = NULL,
        recovery_attempts = 0, updated_at = now()
    FROM w WHERE t.seq = w.seq AND w.status IN {_RESUMABLE}
    RETURNING t.seq
),
forgotten AS (
    -- The step bodies that failed run again; what succeeded is replayed from its record.
    DELETE FROM steps s USING resumed r
    WHERE s.workflow_seq = r.seq AND s.kind = 'step' AND s.status IN ('FAILED', 'RUNNING')
),
retimed AS (
    -- Its open waits keep their wake times (a cancel dropped their timers).
    INSERT INTO timers (workflow_seq, step_id, due_at)
    SELECT s.workflow_seq, s.step_id, s.wake_at FROM steps s JOIN resumed r ON s.workflow_seq = r.seq
    WHERE s.status = 'WAITING' AND s.wake_at IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING due_at
)
SELECT w.name, w.status, EXISTS (SELECT 1 FROM resumed), (SELECT min(due_at) FROM retimed) FROM w
"""


async def resume(
    conn: Connection, workflow_id: str, version: str | None = None
) -> tuple[str, str, bool, datetime | None] | None:
    """Makes a finished, unsuccessful workflow ready to run again from its recorded steps,
    on workers of ``version`` if given (else of the version it recorded).

    Returns its name, the status it had, whether it was resumed (only FAILED, CANCELLED,
    TIMED_OUT and MAX_RECOVERY_ATTEMPTS_EXCEEDED are) and the earliest timer it got back;
    None if there is no such workflow.
    """
    row = await conn.fetchrow(_RESUME, workflow_id, version)
    return None if row is None else (row[0], row[1], row[2], row[3])


_FORK = """
WITH source AS (SELECT seq, name, input, input_encoding FROM workflows WHERE workflow_id = $1),
point AS (
    SELECT s.started_at FROM source JOIN steps s ON s.workflow_seq = source.seq AND s.step_id = $3
),
forked AS (
    INSERT INTO workflows (workflow_id, name, status, input, input_encoding, epoch, created_at, updated_at,
                           version)
    -- Epoch 1, as if a first execution had run: the one it is handed to (epoch 2) is sent
    -- the copied history (a workflow first handed out under epoch 1 has none to send).
    SELECT $2, name, 'ENQUEUED', input, input_encoding, 1, now(), now(), NULLIF($4::text, '') FROM source
    WHERE EXISTS (SELECT 1 FROM point)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING seq, name
),
copied AS (
    -- The finished steps first started before from_step was (the order of the history).
    INSERT INTO steps (workflow_seq, step_id, name, status, output, output_encoding, error, attempts,
                       worker_id, epoch, started_at, completed_at, kind, wake_at, wait_topic,
                       wait_target, timed_out)
    SELECT f.seq, s.step_id, s.name, s.status, s.output, s.output_encoding, s.error, s.attempts,
           s.worker_id, 0, s.started_at, s.completed_at, s.kind, s.wake_at, s.wait_topic,
           s.wait_target, s.timed_out
    FROM forked f, point p, source src JOIN steps s ON s.workflow_seq = src.seq
    WHERE s.status IN ('SUCCEEDED', 'FAILED') AND s.started_at < p.started_at AND s.step_id <> $3
    RETURNING 1
)
SELECT (SELECT name FROM source), EXISTS (SELECT 1 FROM point), (SELECT name FROM forked),
       (SELECT count(*) FROM copied)
"""


@dataclass(frozen=True, slots=True)
class Forked:
    source: str | None  # the source's name; None: no such workflow
    step_found: bool  # whether the source recorded from_step
    name: str | None  # the new run's name; None: not recorded (its ID was taken)
    copied: int


async def fork(
    conn: Connection, workflow_id: str, new_id: str, from_step: str, version: str | None = None
) -> Forked:
    """Records ``new_id``, a new ENQUEUED run of the workflow with its input and copies
    of its finished steps first started before ``from_step`` was, for workers of
    ``version`` (None: the first worker that takes it)."""
    row = await conn.fetchrow(_FORK, workflow_id, new_id, from_step, version)
    assert row is not None
    return Forked(row[0], row[1], row[2], row[3])
