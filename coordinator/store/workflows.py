"""Statements about the ``workflows`` table.

Ownership rules every statement here keeps: a workflow is owned by at most one worker
(``owner_id``) under one ``epoch``; taking ownership of a workflow that has run before
increments the epoch; a write about an execution names its epoch and owner and is applied
only if both are still current, decided in the statement that writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from coordinator.models import (
    Claimant,
    ErrorInfo,
    Payload,
    WorkflowCount,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowStatus,
)
from coordinator.store import conditions, rows
from coordinator.store.database import Connection


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A workflow to record; ``owner_id`` set means it starts RUNNING on that worker."""

    workflow_id: str
    name: str
    input: Payload
    owner_id: str | None
    at: datetime
    # When it times out (TIMED_OUT), if ever; a timers row is recorded with it.
    deadline_at: datetime | None = None
    # The owner's version (None without an owner: the first worker to take it decides).
    version: str | None = None
    traceparent: str = ""

    # A new workflow is RUNNING under epoch 1 when it starts on its worker at once, else
    # ENQUEUED (epoch 0) until the dispatcher hands it out.
    @property
    def status(self) -> WorkflowStatus:
        return WorkflowStatus.ENQUEUED if self.owner_id is None else WorkflowStatus.RUNNING

    @property
    def epoch(self) -> int:
        return 0 if self.owner_id is None else 1

    @property
    def started_at(self) -> datetime | None:
        return None if self.owner_id is None else self.at

    def record(self, seq: int) -> WorkflowRecord:
        """The row this inserts, as recorded under ``seq``."""
        return WorkflowRecord(
            workflow_id=self.workflow_id,
            name=self.name,
            status=self.status,
            input=self.input,
            output=None,
            error=None,
            owner_id=self.owner_id,
            epoch=self.epoch,
            recovery_attempts=0,
            created_at=self.at,
            updated_at=self.at,
            started_at=self.started_at,
            completed_at=None,
            seq=seq,
            deadline_at=self.deadline_at,
            version=self.version,
            traceparent=self.traceparent,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """A workflow's final result, as written by the execution ``(epoch, owner_id)``."""

    workflow_id: str
    epoch: int
    owner_id: str
    status: WorkflowStatus
    output: Payload | None
    error: ErrorInfo | None
    at: datetime


_INSERT = """
INSERT INTO workflows (workflow_id, name, status, input, input_encoding, owner_id, epoch,
                       created_at, updated_at, started_at, deadline_at, version, traceparent)
SELECT b.workflow_id, b.name, b.status, b.input, b.input_encoding, b.owner_id, b.epoch, b.at, b.at,
       b.started_at, b.deadline_at, b.version, b.traceparent
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], $7::bigint[],
            $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[])
     AS b(workflow_id, name, status, input, input_encoding, owner_id, epoch, at, started_at,
          deadline_at, version, traceparent)
-- DO NOTHING waits for a concurrent insert of the same ID to commit or roll back, so two
-- starts of one ID record one workflow; the loser reads the winner's row afterwards.
ON CONFLICT (workflow_id) DO NOTHING
-- The rest of the row is the caller's own: only the generated key comes back.
RETURNING workflow_id, seq, deadline_at
"""
# The same, and the deadlines' timers in the same statement (only when a start has one).
_INSERT_WITH_DEADLINES = f"""
WITH inserted AS ({_INSERT}),
timed AS (
    INSERT INTO timers (workflow_seq, step_id, due_at)
    SELECT seq, '', deadline_at FROM inserted WHERE deadline_at IS NOT NULL
)
SELECT workflow_id, seq FROM inserted
"""


async def insert(conn: Connection, new: Sequence[NewWorkflow]) -> list[WorkflowRecord]:
    """Records the workflows whose IDs are free; returns those it recorded."""
    timed = any(n.deadline_at is not None for n in new)
    result = await conn.fetch(
        _INSERT_WITH_DEADLINES if timed else _INSERT,
        [n.workflow_id for n in new],
        [n.name for n in new],
        [n.status.value for n in new],
        [n.input.data for n in new],
        [n.input.encoding for n in new],
        [n.owner_id for n in new],
        [n.epoch for n in new],
        [n.at for n in new],
        [n.started_at for n in new],
        [n.deadline_at for n in new],
        [n.version for n in new],
        [n.traceparent for n in new],
    )
    by_id = {n.workflow_id: n for n in new}
    return [by_id[r[0]].record(r[1]) for r in result]


_GET_MANY = f"SELECT {rows.WORKFLOW_COLUMNS} FROM workflows WHERE workflow_id = ANY($1::text[])"


async def get_many(conn: Connection, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
    result = await conn.fetch(_GET_MANY, list(workflow_ids))
    return {r[0]: rows.workflow(r) for r in result}


async def get(conn: Connection, workflow_id: str) -> WorkflowRecord | None:
    return (await get_many(conn, [workflow_id])).get(workflow_id)


_COMPLETE = f"""
WITH b AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::text[],
                         $7::jsonb[], $8::timestamptz[])
        AS b(workflow_id, epoch, owner_id, status, output, output_encoding, error, at)
),
current AS (
    -- The fencing check, one primary-key probe per outcome (a subquery with a locking
    -- clause is never flattened into a join, whatever the statistics say). FOR UPDATE
    -- makes the check and the write one step: a concurrent reassignment either committed
    -- first (the row is re-checked in its new version, the epoch no longer matches, nothing
    -- is written) or waits for this transaction.
    SELECT b.* FROM b
    CROSS JOIN LATERAL (
        SELECT FROM workflows w
        WHERE w.workflow_id = b.workflow_id AND w.epoch = b.epoch AND w.owner_id = b.owner_id
          AND {conditions.running("w")}
        FOR UPDATE
    ) locked
)
UPDATE workflows AS w
SET status = c.status, output = c.output, output_encoding = c.output_encoding, error = c.error,
    owner_id = NULL, completed_at = c.at, updated_at = c.at
-- Joined on the key alone: with no filter on workflows here, the planner sees the whole
-- table and does not pick a nested loop that rescans the batch per row of it.
FROM current c
WHERE w.workflow_id = c.workflow_id
RETURNING {rows.workflow_columns("w")}
"""


async def complete(conn: Connection, outcomes: Sequence[Outcome]) -> dict[str, WorkflowRecord]:
    """Writes final results whose execution is still current; returns their final records."""
    result = await conn.fetch(
        _COMPLETE,
        [o.workflow_id for o in outcomes],
        [o.epoch for o in outcomes],
        [o.owner_id for o in outcomes],
        [o.status.value for o in outcomes],
        [o.output.data if o.output else None for o in outcomes],
        [o.output.encoding if o.output else None for o in outcomes],
        [rows.error_to_json(o.error) for o in outcomes],
        [o.at for o in outcomes],
    )
    return {r[0]: rows.workflow(r) for r in result}


# Shared by both claims: take ownership under a new epoch, or, for a workflow recovered
# too often, mark it poison instead. `w.status` on the right-hand side is the old value: a
# claimed running workflow is a recovery, unless its worker handed it back on purpose.
_RECOVERY = f"{conditions.running('w')} AND NOT w.handoff"
_POISON = f"{_RECOVERY} AND w.recovery_attempts >= $3"
_CLAIM_SET = f"""
SET owner_id = CASE WHEN {_POISON} THEN NULL ELSE $2 END,
    epoch = CASE WHEN {_POISON} THEN w.epoch ELSE w.epoch + 1 END,
    status = CASE WHEN {_POISON} THEN '{WorkflowStatus.MAX_RECOVERY_ATTEMPTS_EXCEEDED.value}'
                  ELSE '{WorkflowStatus.RUNNING.value}' END,
    error = CASE WHEN {_POISON}
                 THEN jsonb_build_object(
                     'type', 'stepline.MaxRecoveryAttemptsExceeded',
                     'message', format('workflow %s was recovered %s times and lost its worker '
                                       'every time; it is not reassigned again', w.workflow_id,
                                       w.recovery_attempts),
                     'traceback', '')
                 ELSE w.error END,
    completed_at = CASE WHEN {_POISON} THEN now() ELSE w.completed_at END,
    recovery_attempts = w.recovery_attempts + CASE WHEN {_RECOVERY} AND NOT ({_POISON}) THEN 1 ELSE 0 END,
    handoff = false,
    version = CASE WHEN {_POISON} THEN w.version ELSE NULLIF($4, '') END,
    started_at = COALESCE(w.started_at, now()),
    updated_at = now()
"""
_CLAIM_RETURNING = "RETURNING " + rows.workflow_columns("w")


def _takes(alias: str = "") -> str:
    """The claiming worker (version $4, auto-upgrading the names $5) may run the workflow:
    no worker took it yet, it runs under the worker's version, or its name auto-upgrades."""
    a = f"{alias}." if alias else ""
    return f"({a}version IS NULL OR {a}version = $4 OR {a}name = ANY($5::text[]))"


_CLAIM_READY = f"""
WITH picked AS (
    SELECT workflow_id FROM workflows
    WHERE {conditions.ready()} AND name = ANY($1::text[]) AND {_takes()}
    ORDER BY seq
    LIMIT $6
    -- SKIP LOCKED: a row another transaction is claiming is that transaction's; waiting
    -- for it would only find it owned.
    FOR UPDATE SKIP LOCKED
)
UPDATE workflows AS w {_CLAIM_SET}
FROM picked WHERE w.workflow_id = picked.workflow_id
{_CLAIM_RETURNING}
"""

_CLAIM_IDS = f"""
UPDATE workflows AS w {_CLAIM_SET}
WHERE w.workflow_id = ANY($1::text[]) AND {conditions.ready("w")} AND {_takes("w")}
{_CLAIM_RETURNING}
"""


_STILL_READY = f"""
-- Names with ready workflows, locked or not, and the versions they wait for: a claim that
-- came back short may have skipped rows another transaction held for a moment, or rows
-- that only workers of another version may take.
SELECT DISTINCT name, version FROM workflows
WHERE {conditions.ready()} AND name = ANY($1::text[])
"""


async def still_ready(conn: Connection, names: Sequence[str]) -> set[tuple[str, str | None]]:
    """Which of ``names`` still have workflows waiting for a worker, with their versions
    (None: any worker may take them)."""
    return {(r[0], r[1]) for r in await conn.fetch(_STILL_READY, list(names))}


async def claim_ready(
    conn: Connection, names: Sequence[str], owner: Claimant, limit: int, max_recovery_attempts: int
) -> list[WorkflowRecord]:
    """Claims up to ``limit`` unowned workflows with one of ``names`` that ``owner`` may
    run, oldest first; each records the owner's version.

    Returns the claimed records: RUNNING ones now belong to ``owner``; the others were
    marked MAX_RECOVERY_ATTEMPTS_EXCEEDED instead of being claimed.
    """
    result = await conn.fetch(
        _CLAIM_READY,
        list(names),
        owner.worker_id,
        max_recovery_attempts,
        owner.version,
        list(owner.auto_upgrade),
        limit,
    )
    return [rows.workflow(r) for r in result]


async def claim_ids(
    conn: Connection, workflow_ids: Sequence[str], owner: Claimant, max_recovery_attempts: int
) -> list[WorkflowRecord]:
    """Like claim_ready, for the given workflows (those that are unowned, unfinished and
    of a version the owner may run)."""
    result = await conn.fetch(
        _CLAIM_IDS,
        list(workflow_ids),
        owner.worker_id,
        max_recovery_attempts,
        owner.version,
        list(owner.auto_upgrade),
    )
    return [rows.workflow(r) for r in result]


_RELEASE = f"""
UPDATE workflows SET owner_id = NULL, handoff = $3, updated_at = now()
WHERE owner_id = $1 AND {conditions.running()} AND NOT (workflow_id = ANY($2::text[]))
RETURNING name
"""


async def release(
    conn: Connection, owner_id: str, keep: Sequence[str] = (), *, handoff: bool = False
) -> list[str]:
    """Gives up every execution ``owner_id`` holds except ``keep``; returns their names.

    ``handoff`` marks a graceful hand-back, which the next claim does not count as a recovery.
    """
    return [r[0] for r in await conn.fetch(_RELEASE, owner_id, list(keep), handoff)]


_RELEASE_ONE = f"""
UPDATE workflows SET owner_id = NULL, handoff = $4, updated_at = now()
WHERE workflow_id = $1 AND epoch = $2 AND owner_id = $3 AND {conditions.running()}
RETURNING name
"""


async def release_one(
    conn: Connection, workflow_id: str, epoch: int, owner_id: str, *, handoff: bool = False
) -> str | None:
    """Gives up one execution if ``owner_id`` still holds it under ``epoch``; returns its name."""
    name: str | None = await conn.fetchval(_RELEASE_ONE, workflow_id, epoch, owner_id, handoff)
    return name


_REATTACH = f"""
UPDATE workflows AS w SET owner_id = $1, updated_at = now()
FROM unnest($2::text[], $3::bigint[]) AS h(workflow_id, epoch)
-- Only under the same epoch, and only if no other worker took it meanwhile.
WHERE w.workflow_id = h.workflow_id AND w.epoch = h.epoch AND {conditions.running("w")}
  AND (w.owner_id IS NULL OR w.owner_id = $1)
RETURNING w.workflow_id
"""


async def reattach(conn: Connection, owner_id: str, held: Sequence[tuple[str, int]]) -> set[str]:
    """Gives ``owner_id`` back the executions it still runs whose epoch is still current."""
    result = await conn.fetch(_REATTACH, owner_id, [h[0] for h in held], [h[1] for h in held])
    return {r[0] for r in result}


_STATUS_NAMES = {s: s.value for s in WorkflowStatus}


async def list_(conn: Connection, f: WorkflowFilter) -> list[WorkflowRecord]:
    """Workflows matching ``f``, ordered by creation (``seq``)."""
    clauses: list[str] = []
    args: list[object] = []

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.name:
        clauses.append(f"name = {arg(f.name)}")
    if f.statuses:
        clauses.append(f"status = ANY({arg([_STATUS_NAMES[s] for s in f.statuses])}::text[])")
    if f.version is not None:
        clauses.append(f"version = {arg(f.version)}")
    if f.created_after is not None:
        clauses.append(f"created_at >= {arg(f.created_after)}")
    if f.created_before is not None:
        clauses.append(f"created_at < {arg(f.created_before)}")
    if f.after_seq is not None:
        clauses.append(f"seq {'<' if f.descending else '>'} {arg(f.after_seq)}")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    columns = rows.WORKFLOW_COLUMNS if f.include_payloads else rows.WORKFLOW_COLUMNS_LEAN
    order = "DESC" if f.descending else "ASC"
    sql = f"SELECT {columns} FROM workflows {where} ORDER BY seq {order} LIMIT {arg(f.limit)}"
    return [rows.workflow(r) for r in await conn.fetch(sql, *args)]


# What a count may group by: the model's field, and its column.
COUNT_FIELDS = {"name": "name", "version": "version", "status": "status"}
_OPEN = (WorkflowStatus.ENQUEUED, WorkflowStatus.RUNNING, WorkflowStatus.PAUSED)


async def count(
    conn: Connection, by: Sequence[str], statuses: Sequence[WorkflowStatus] = (), name: str | None = None
) -> list[WorkflowCount]:
    """How many workflows there are per group of the ``by`` fields (COUNT_FIELDS), in
    ``statuses`` (default: the open ones, PAUSED included), largest group first."""
    columns = [COUNT_FIELDS[b] for b in by]  # keys only: never input in the SQL text
    select = ", ".join([*columns, "count(*)"])
    group = f"GROUP BY {', '.join(columns)}" if columns else ""
    where = "status = ANY($1::text[]) AND ($2::text IS NULL OR name = $2)"
    sql = f"SELECT {select} FROM workflows WHERE {where} {group} ORDER BY count(*) DESC"
    wanted = [s.value for s in (statuses or _OPEN)]
    result = []
    for row in await conn.fetch(sql, wanted, name):
        fields = dict(zip(by, row, strict=False))
        status = fields.get("status")
        result.append(
            WorkflowCount(
                count=row[-1],
                name=fields.get("name"),
                version=fields.get("version"),
                status=WorkflowStatus(status) if status is not None else None,
            )
        )
    return result


_BACKLOG = f"""
SELECT (SELECT count(*) FROM workflows WHERE {conditions.ready()}),
       (SELECT count(*) FROM timers WHERE due_at <= now())
"""


async def backlog(conn: Connection) -> tuple[int, int]:
    """Workflows ready for a worker (the ready index), and timers due and not yet fired."""
    row = await conn.fetchrow(_BACKLOG)
    assert row is not None
    return row[0], row[1]
