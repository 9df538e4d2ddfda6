"""Statements about durable waits and the steps the coordinator records itself (0005).

Every transaction here first locks the workflows rows it concerns (``lock``), in
workflow_id order, and only then reads or writes their steps, messages, events and timers.
Ending a wait and suspending a workflow both hold that lock: a wait that ends while its
workflow is being suspended either ended first (the suspension sees it and leaves the
workflow ready) or waits for the suspension and clears the flag it set. The checks that
decide run in statements after the lock, so that they see what the lock waited for.

Each statement takes a whole batch (arrays, unnest), so that a batch of waits costs a few
statements whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from coordinator.models import ErrorInfo, Payload, StepKind, StepRecord, StepStatus, WorkflowStatus
from coordinator.store import conditions, rows
from coordinator.store.database import Connection


@dataclass(frozen=True, slots=True)
class Locked:
    """A workflow row, locked FOR UPDATE by the current transaction."""

    seq: int
    workflow_id: str
    name: str
    status: WorkflowStatus
    owner_id: str | None
    epoch: int
    suspended: bool

    def held_by(self, owner_id: str, epoch: int) -> bool:
        """Whether the execution ``(owner_id, epoch)`` is the current one (the fencing check)."""
        return self.status is WorkflowStatus.RUNNING and self.owner_id == owner_id and self.epoch == epoch


@dataclass(frozen=True, slots=True)
class Ended:
    """A wait that ended, with its recorded outcome."""

    seq: int
    workflow_id: str
    step_id: str
    output: Payload | None
    timed_out: bool
    # A wait for a workflow that did not succeed: that workflow's error.
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class NewWait:
    """A wait to record: SLEEP until ``until`` or ``seconds`` from now; RECV on ``topic``;
    GET_EVENT of ``target``'s ``topic``; for the last two, ``seconds`` is the timeout."""

    seq: int
    step_id: str
    kind: StepKind
    worker_id: str
    epoch: int
    until: datetime | None
    seconds: float | None
    topic: str | None
    target: str | None


_LOCK_COLUMNS = "seq, workflow_id, name, status, owner_id, epoch, suspended"
_LOCK_BY_ID = f"""
SELECT {_LOCK_COLUMNS} FROM workflows WHERE workflow_id = ANY($1::text[])
ORDER BY workflow_id FOR UPDATE
"""
_LOCK_BY_SEQ = f"""
SELECT {_LOCK_COLUMNS} FROM workflows WHERE seq = ANY($1::bigint[])
ORDER BY workflow_id FOR UPDATE
"""


def _locked(r: Any) -> Locked:
    return Locked(r[0], r[1], r[2], WorkflowStatus(r[3]), r[4], r[5], r[6])


async def lock(conn: Connection, workflow_ids: Iterable[str]) -> dict[str, Locked]:
    """Locks the workflows that exist among ``workflow_ids``; returns them by ID."""
    found = await conn.fetch(_LOCK_BY_ID, sorted(set(workflow_ids)))
    return {r[1]: _locked(r) for r in found}


async def lock_seqs(conn: Connection, seqs: Iterable[int]) -> dict[int, Locked]:
    found = await conn.fetch(_LOCK_BY_SEQ, list(set(seqs)))
    return {r[0]: _locked(r) for r in found}


_EXISTS = "SELECT true FROM workflows WHERE workflow_id = $1"


async def exists(conn: Connection, workflow_id: str) -> bool:
    return bool(await conn.fetchval(_EXISTS, workflow_id))


# --- the steps of operations ------------------------------------------------------------

_STEPS = f"""
SELECT k.seq, {rows.step_columns("s")}
FROM unnest($1::bigint[], $2::text[]) AS k(seq, step_id)
JOIN steps s ON s.workflow_seq = k.seq AND s.step_id = k.step_id
"""


async def steps(conn: Connection, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], StepRecord]:
    """The recorded steps among (seq, step_id) keys."""
    if not keys:
        return {}
    found = await conn.fetch(_STEPS, [k[0] for k in keys], [k[1] for k in keys])
    return {(r[0], r[1]): rows.step(r[1:]) for r in found}


_BEGIN_WAITS = """
WITH b AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                         $7::timestamptz[], $8::float8[], $9::text[], $10::text[])
        AS b(seq, step_id, name, kind, worker_id, epoch, until, seconds, topic, target)
),
waiting AS (
    INSERT INTO steps (workflow_seq, step_id, name, status, kind, attempts, worker_id, epoch,
                       started_at, wake_at, wait_topic, wait_target)
    -- A sleep's wake time, or a wait's timeout, counted from now (the first run): a replay
    -- sends the same Wait, finds this row (the conflict) and keeps it.
    SELECT seq, step_id, name, 'WAITING', kind, 1, worker_id, epoch, clock_timestamp(),
           COALESCE(until, clock_timestamp() + make_interval(secs => seconds)), topic, target
    FROM b
    ON CONFLICT (workflow_seq, step_id) DO NOTHING
    RETURNING workflow_seq, step_id, wake_at
),
timed AS (
    INSERT INTO timers (workflow_seq, step_id, due_at)
    SELECT workflow_seq, step_id, wake_at FROM waiting WHERE wake_at IS NOT NULL
    ON CONFLICT (workflow_seq, step_id) DO NOTHING
)
SELECT workflow_seq, step_id, wake_at, wake_at <= clock_timestamp() FROM waiting
"""


async def begin_waits(
    conn: Connection, waits: Sequence[NewWait]
) -> dict[tuple[int, str], tuple[datetime | None, bool]]:
    """Records WAITING steps and their timers, in one statement, for the step IDs not yet
    recorded; returns for each of those its wake time and whether that has passed."""
    if not waits:
        return {}
    result = await conn.fetch(
        _BEGIN_WAITS,
        [w.seq for w in waits],
        [w.step_id for w in waits],
        [w.kind.step_name for w in waits],
        [w.kind.value for w in waits],
        [w.worker_id for w in waits],
        [w.epoch for w in waits],
        [w.until for w in waits],
        [w.seconds for w in waits],
        [w.topic for w in waits],
        [w.target for w in waits],
    )
    return {(r[0], r[1]): (r[2], bool(r[3])) for r in result}


_DUE = """
SELECT k.seq, k.step_id FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS k(seq, step_id, at)
WHERE k.at <= clock_timestamp()
"""


async def due(conn: Connection, waits: Sequence[tuple[int, str, datetime]]) -> set[tuple[int, str]]:
    """Which of the open waits (seq, step_id, wake time) have passed their wake time."""
    if not waits:
        return set()
    result = await conn.fetch(_DUE, [w[0] for w in waits], [w[1] for w in waits], [w[2] for w in waits])
    return {(r[0], r[1]) for r in result}


_RECORD_DONE = """
INSERT INTO steps (workflow_seq, step_id, name, status, kind, attempts, worker_id, epoch,
                   error, output, output_encoding, started_at, completed_at)
SELECT seq, step_id, name, status, kind, 1, worker_id, epoch, error, output, output_encoding,
       clock_timestamp(), clock_timestamp()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
            $8::jsonb[], $9::bytea[], $10::text[])
    AS b(seq, step_id, name, status, kind, worker_id, epoch, error, output, output_encoding)
"""


@dataclass(frozen=True, slots=True)
class Done:
    """A send, set_event or start_child step, recorded finished (its step ID was checked
    to be free)."""

    seq: int
    step_id: str
    kind: StepKind
    worker_id: str
    epoch: int
    error: ErrorInfo | None
    output: Payload | None = None


async def record_done(conn: Connection, done: Sequence[Done]) -> None:
    if not done:
        return
    await conn.execute(
        _RECORD_DONE,
        [d.seq for d in done],
        [d.step_id for d in done],
        [d.kind.step_name for d in done],
        [(StepStatus.FAILED if d.error else StepStatus.SUCCEEDED).value for d in done],
        [d.kind.value for d in done],
        [d.worker_id for d in done],
        [d.epoch for d in done],
        [rows.error_to_json(d.error) for d in done],
        [d.output.data if d.output else None for d in done],
        [d.output.encoding if d.output else None for d in done],
    )


# --- ending waits -----------------------------------------------------------------------

_END_WAITS = f"""
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::bool[])
        AS r(seq, step_id, data, encoding, timed_out)
),
ended AS (
    UPDATE steps s
    SET status = 'SUCCEEDED', output = r.data, output_encoding = r.encoding,
        timed_out = r.timed_out, completed_at = clock_timestamp()
    FROM r, workflows w
    WHERE s.workflow_seq = r.seq AND s.step_id = r.step_id AND s.status = 'WAITING'
      AND w.seq = r.seq AND {conditions.unfinished("w")}
    RETURNING s.workflow_seq, s.step_id, w.workflow_id
),
untimed AS (
    DELETE FROM timers t USING ended e WHERE t.workflow_seq = e.workflow_seq AND t.step_id = e.step_id
),
woken AS (
    -- A suspended workflow whose wait ended is ready again.
    UPDATE workflows w SET suspended = false, updated_at = now()
    WHERE w.seq IN (SELECT workflow_seq FROM ended) AND w.suspended
    RETURNING w.name
)
SELECT workflow_seq, step_id, workflow_id, NULL FROM ended
UNION ALL
SELECT NULL, NULL, NULL, name FROM woken
"""


async def end_waits(
    conn: Connection, ending: Sequence[tuple[int, str, Payload | None, bool]]
) -> tuple[list[Ended], list[str]]:
    """Ends open waits (seq, step_id, output, timed_out) of locked, unfinished workflows.

    Returns the waits that ended and the names of the suspended workflows they woke (now
    ready to be handed out).
    """
    if not ending:
        return [], []
    outputs = {(e[0], e[1]): e for e in ending}
    result = await conn.fetch(
        _END_WAITS,
        [e[0] for e in ending],
        [e[1] for e in ending],
        [e[2].data if e[2] else None for e in ending],
        [e[2].encoding if e[2] else None for e in ending],
        [e[3] for e in ending],
    )
    ended = [
        Ended(r[0], r[2], r[1], outputs[(r[0], r[1])][2], outputs[(r[0], r[1])][3])
        for r in result
        if r[0] is not None
    ]
    return ended, [r[3] for r in result if r[3] is not None]


# --- suspension -------------------------------------------------------------------------

_OPEN_COUNTS = """
SELECT b.seq, count(s.step_id)
FROM unnest($1::bigint[], $2::text[]) AS b(seq, step_id)
JOIN steps s ON s.workflow_seq = b.seq AND s.step_id = b.step_id AND s.status = 'WAITING'
GROUP BY b.seq
"""
_SUSPEND = """
-- A suspended workflow is not handed out until a wait ends; one whose wait ended already
-- is ready at once. Either way it was handed back on purpose: not a recovery.
UPDATE workflows w SET owner_id = NULL, handoff = true, suspended = b.suspended, updated_at = now()
FROM unnest($1::bigint[], $2::bool[]) AS b(seq, suspended)
WHERE w.seq = b.seq
RETURNING w.workflow_id, w.name, w.suspended
"""


async def suspend(conn: Connection, waiting: dict[int, set[str]]) -> list[tuple[str, str, bool]]:
    """Gives back locked, held executions by seq, each with the waits it is blocked on.

    A workflow is suspended if all of its waits are still open, else left ready. Returns
    (workflow_id, name, suspended) for each.
    """
    pairs = [(seq, step_id) for seq, ids in waiting.items() for step_id in ids]
    counts = dict(
        await conn.fetch(_OPEN_COUNTS, [p[0] for p in pairs], [p[1] for p in pairs]) if pairs else []
    )
    seqs = list(waiting)
    flags = [bool(waiting[s]) and counts.get(s, 0) == len(waiting[s]) for s in seqs]
    result = await conn.fetch(_SUSPEND, seqs, flags)
    return [(r[0], r[1], r[2]) for r in result]


_ENDED_AMONG = f"""
SELECT w.workflow_id, s.workflow_seq, {rows.step_columns("s")}
FROM unnest($1::text[], $2::text[]) AS k(workflow_id, step_id)
JOIN workflows w ON w.workflow_id = k.workflow_id
JOIN steps s ON s.workflow_seq = w.seq AND s.step_id = k.step_id
WHERE s.status <> 'WAITING'
"""


async def ended_among(conn: Connection, keys: Sequence[tuple[str, str]]) -> list[tuple[str, StepRecord]]:
    """Of the waits (workflow_id, step_id) given, those that have ended, with their records."""
    if not keys:
        return []
    found = await conn.fetch(_ENDED_AMONG, [k[0] for k in keys], [k[1] for k in keys])
    return [(r[0], rows.step(r[2:])) for r in found]
