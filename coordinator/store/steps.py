"""Statements about the ``steps`` table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.models import ErrorInfo, Payload, StepRecord, StepStatus
from coordinator.store import conditions, rows
from coordinator.store.database import Connection


@dataclass(slots=True)  # made per step: not frozen (see coordinator/models.py)
class StepWrite:
    """A step's start (status RUNNING) or outcome, as written by execution ``(epoch, worker_id)``.

    Its times are taken by the database when it is written.
    """

    workflow_id: str
    epoch: int
    worker_id: str
    step_id: str
    name: str
    status: StepStatus
    output: Payload | None
    error: ErrorInfo | None
    attempts: int


_UPSERT = f"""
WITH batch AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::bytea[], $8::text[], $9::jsonb[], $10::int[])
        AS b(workflow_id, epoch, worker_id, step_id, name, status, output, output_encoding, error,
             attempts)
),
writers AS (
    SELECT DISTINCT workflow_id, epoch, worker_id FROM batch
),
current_owner AS (
    -- FOR SHARE conflicts with the UPDATE that reassigns a workflow (epoch + 1). Either that
    -- UPDATE committed first, and the row is re-checked in its new version (the stale
    -- writer no longer matches and its rows are filtered out below), or it waits until this
    -- transaction ends. The fencing check and the write are one statement; there is no
    -- window between them. Only rows the writer still owns are locked: a stale write must
    -- not hold up the claim that hands the workflow to someone else.
    --
    -- One primary-key probe per writer, whatever the statistics say: a subquery with a
    -- locking clause is never flattened into a join, so the planner cannot pick a nested
    -- loop over a scan of workflows (which it did on a young table whose statistics
    -- said "one row", at 130 us per step).
    SELECT x.workflow_id, o.seq, x.epoch, x.worker_id AS owner_id
    FROM writers x
    CROSS JOIN LATERAL (
        SELECT w.seq FROM workflows w
        WHERE w.workflow_id = x.workflow_id AND w.epoch = x.epoch AND w.owner_id = x.worker_id
          AND {conditions.running("w")}
        FOR SHARE
    ) o
),
written AS (
    INSERT INTO steps AS s (workflow_seq, step_id, name, status, output, output_encoding, error,
                            attempts, worker_id, epoch, started_at, completed_at)
    -- Times come from the database clock, per row (clock_timestamp() grows in row order,
    -- so steps recorded together keep the order they were sent in).
    SELECT o.seq, b.step_id, b.name, b.status, b.output, b.output_encoding, b.error, b.attempts,
           b.worker_id, b.epoch, clock_timestamp(),
           CASE WHEN b.status = 'RUNNING' THEN NULL ELSE clock_timestamp() END
    FROM batch b
    JOIN current_owner o
      ON o.workflow_id = b.workflow_id AND o.epoch = b.epoch AND o.owner_id = b.worker_id
    ON CONFLICT (workflow_seq, step_id) DO UPDATE
    SET status = EXCLUDED.status, output = EXCLUDED.output,
        output_encoding = EXCLUDED.output_encoding, error = EXCLUDED.error,
        attempts = GREATEST(s.attempts, EXCLUDED.attempts), worker_id = EXCLUDED.worker_id,
        epoch = EXCLUDED.epoch, completed_at = EXCLUDED.completed_at
    -- A recorded outcome is final, and a recorded ID keeps its name.
    WHERE s.status = 'RUNNING' AND s.name = EXCLUDED.name
    RETURNING s.workflow_seq, s.step_id
)
-- Only the writes that were not applied come back (usually none): the hot path decodes
-- no result rows.
SELECT b.workflow_id, b.step_id
FROM batch b
LEFT JOIN current_owner o ON o.workflow_id = b.workflow_id
LEFT JOIN written w ON w.workflow_seq = o.seq AND w.step_id = b.step_id
WHERE w.step_id IS NULL
"""


async def upsert(conn: Connection, writes: Sequence[StepWrite]) -> set[tuple[str, str]]:
    """Writes the steps whose execution is current and whose record is not final.

    At most one write per (workflow, step) may be given. Returns the (workflow_id,
    step_id) pairs *not* written (stale epoch or owner, final record, name clash).
    """
    result = await conn.fetch(
        _UPSERT,
        [w.workflow_id for w in writes],
        [w.epoch for w in writes],
        [w.worker_id for w in writes],
        [w.step_id for w in writes],
        [w.name for w in writes],
        [w.status.value for w in writes],
        [w.output.data if w.output else None for w in writes],
        [w.output.encoding if w.output else None for w in writes],
        [rows.error_to_json(w.error) for w in writes],
        [w.attempts for w in writes],
    )
    return {(r[0], r[1]) for r in result}


@dataclass(frozen=True, slots=True)
class Found:
    """What the database holds for a write that was not applied, to say why."""

    workflow_status: str | None
    workflow_epoch: int | None
    owner_id: str | None
    step: StepRecord | None


_EXPLAIN = f"""
SELECT k.workflow_id, k.step_id, w.status, w.epoch, w.owner_id, {rows.step_columns("s")}
FROM unnest($1::text[], $2::text[]) AS k(workflow_id, step_id)
LEFT JOIN workflows w ON w.workflow_id = k.workflow_id
LEFT JOIN steps s ON s.workflow_seq = w.seq AND s.step_id = k.step_id
"""


async def explain(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Found]:
    """For writes that were not applied: the workflow's and the step's current state."""
    result = await conn.fetch(_EXPLAIN, [k[0] for k in keys], [k[1] for k in keys])
    return {
        (r[0], r[1]): Found(r[2], r[3], r[4], rows.step(r[5:]) if r[5] is not None else None) for r in result
    }


_HISTORY = f"""
SELECT workflow_seq, {rows.STEP_COLUMNS} FROM steps
WHERE workflow_seq = ANY($1::bigint[])
ORDER BY workflow_seq, started_at, step_id
"""


async def history(conn: Connection, seqs: Sequence[int]) -> dict[int, list[StepRecord]]:
    """The recorded steps of each workflow (by ``seq``), in the order they were started."""
    found: dict[int, list[StepRecord]] = {seq: [] for seq in seqs}
    if seqs:
        for r in await conn.fetch(_HISTORY, list(seqs)):
            found[r[0]].append(rows.step(r[1:]))
    return found


async def list_(conn: Connection, workflow_seq: int) -> list[StepRecord]:
    return (await history(conn, [workflow_seq]))[workflow_seq]
