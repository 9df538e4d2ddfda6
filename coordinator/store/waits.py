"""Statements about durable waits, messages and events (migration 0005).

Every transaction here first locks the workflows rows it concerns (``lock``), in
workflow_id order, and only then reads or writes their steps, messages, events and timers.
Ending a wait and suspending a workflow both hold that lock: a wait that ends while its
workflow is being suspended either ended first (the suspension sees it and leaves the
workflow ready) or waits for the suspension and clears the flag it set. The checks that
decide run in statements after the lock, so that they see what the lock waited for.
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


# --- recording a step the coordinator carries out -----------------------------------------

_STEP = f"SELECT {rows.STEP_COLUMNS} FROM steps WHERE workflow_seq = $1 AND step_id = $2"


async def step(conn: Connection, seq: int, step_id: str) -> StepRecord | None:
    row = await conn.fetchrow(_STEP, seq, step_id)
    return rows.step(row) if row is not None else None


_BEGIN_WAIT = """
INSERT INTO steps (workflow_seq, step_id, name, status, kind, attempts, worker_id, epoch,
                   started_at, wake_at, wait_topic, wait_target)
VALUES ($1, $2, $3, 'WAITING', $4, 1, $5, $6, clock_timestamp(),
        -- A sleep's wake time, or a wait's timeout, counted from now (the first run):
        -- a replay sends the same Wait, finds this row and keeps it.
        COALESCE($7::timestamptz, clock_timestamp() + make_interval(secs => $8::float8)),
        $9, $10)
RETURNING wake_at
"""
_ADD_TIMER = """
INSERT INTO timers (workflow_seq, step_id, due_at) VALUES ($1, $2, $3)
ON CONFLICT (workflow_seq, step_id) DO NOTHING
"""


async def begin_wait(
    conn: Connection,
    seq: int,
    step_id: str,
    kind: StepKind,
    worker_id: str,
    epoch: int,
    *,
    until: datetime | None,
    seconds: float | None,
    topic: str | None,
    target: str | None,
) -> datetime | None:
    """Records a WAITING step and its timer (when it has a wake time); returns that time."""
    wake_at: datetime | None = await conn.fetchval(
        _BEGIN_WAIT, seq, step_id, kind.step_name, kind.value, worker_id, epoch, until, seconds, topic, target
    )
    if wake_at is not None:
        await conn.execute(_ADD_TIMER, seq, step_id, wake_at)
    return wake_at


_RECORD_DONE = """
INSERT INTO steps (workflow_seq, step_id, name, status, kind, attempts, worker_id, epoch,
                   output, output_encoding, error, started_at, completed_at)
VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10::jsonb, clock_timestamp(), clock_timestamp())
"""


async def record_done(
    conn: Connection,
    seq: int,
    step_id: str,
    kind: StepKind,
    worker_id: str,
    epoch: int,
    output: Payload | None,
    error: ErrorInfo | None,
) -> None:
    """Records a send or set_event step, finished (its caller checked that the ID is free)."""
    status = StepStatus.FAILED if error is not None else StepStatus.SUCCEEDED
    await conn.execute(
        _RECORD_DONE,
        seq,
        step_id,
        kind.step_name,
        status.value,
        kind.value,
        worker_id,
        epoch,
        output.data if output else None,
        output.encoding if output else None,
        rows.error_to_json(error),
    )


# --- what ends a wait -------------------------------------------------------------------

_DUE = "SELECT $1::timestamptz <= clock_timestamp()"


async def is_due(conn: Connection, wake_at: datetime) -> bool:
    """Whether ``wake_at`` has passed, by the database's clock (the one that recorded it)."""
    due: bool = await conn.fetchval(_DUE, wake_at)
    return due


_CONSUME = """
-- The oldest unread message of the topic. Its workflow's row is locked by this
-- transaction, and every consumer locks it first, so no one else can take it meanwhile.
UPDATE messages SET consumed_by = $3
WHERE seq = (SELECT seq FROM messages
             WHERE workflow_seq = $1 AND topic = $2 AND consumed_by IS NULL
             ORDER BY seq LIMIT 1)
RETURNING data, encoding
"""


async def consume(conn: Connection, seq: int, topic: str, step_id: str) -> Payload | None:
    """Marks the oldest unread message of ``topic`` read by ``step_id``; returns it."""
    row = await conn.fetchrow(_CONSUME, seq, topic, step_id)
    return Payload(bytes(row[0]), row[1]) if row is not None else None


_EVENT = """
SELECT e.data, e.encoding FROM workflow_events e JOIN workflows w ON w.seq = e.workflow_seq
WHERE w.workflow_id = $1 AND e.key = $2
"""


async def event(conn: Connection, workflow_id: str, key: str) -> Payload | None:
    row = await conn.fetchrow(_EVENT, workflow_id, key)
    return Payload(bytes(row[0]), row[1]) if row is not None else None


_WAITING_RECV = """
SELECT step_id FROM steps
WHERE workflow_seq = $1 AND status = 'WAITING' AND kind = 'recv' AND wait_topic = $2
ORDER BY started_at, step_id LIMIT 1
"""


async def waiting_recv(conn: Connection, seq: int, topic: str) -> str | None:
    """The oldest open recv of ``topic`` in the workflow, if any."""
    step_id: str | None = await conn.fetchval(_WAITING_RECV, seq, topic)
    return step_id


_EVENT_WAITERS = """
SELECT s.workflow_seq, s.step_id FROM steps s
WHERE s.wait_target = $1 AND s.wait_topic = $2 AND s.status = 'WAITING' AND s.kind = 'get_event'
"""


async def event_waiters(conn: Connection, workflow_id: str, key: str) -> list[tuple[int, str]]:
    """The open get_event waits, in any workflow, for ``workflow_id``'s ``key``."""
    return [(r[0], r[1]) for r in await conn.fetch(_EVENT_WAITERS, workflow_id, key)]


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
)
SELECT workflow_seq, step_id, workflow_id FROM ended
"""
_WAKE = """
UPDATE workflows SET suspended = false, updated_at = now()
WHERE seq = ANY($1::bigint[]) AND suspended
RETURNING name
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
    ended = [Ended(r[0], r[2], r[1], outputs[(r[0], r[1])][2], outputs[(r[0], r[1])][3]) for r in result]
    woken = await conn.fetch(_WAKE, list({e.seq for e in ended})) if ended else []
    return ended, [r[0] for r in woken]


# --- messages and events ------------------------------------------------------------------

_SEND = """
INSERT INTO messages (workflow_seq, topic, data, encoding, idempotency_key)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (workflow_seq, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING seq
"""


async def send(conn: Connection, seq: int, topic: str, message: Payload, key: str | None) -> bool:
    """Appends a message; returns False when one with the same idempotency key is there."""
    inserted = await conn.fetchval(_SEND, seq, topic, message.data, message.encoding, key)
    return inserted is not None


_SET_EVENT = """
INSERT INTO workflow_events (workflow_seq, key, data, encoding) VALUES ($1, $2, $3, $4)
ON CONFLICT (workflow_seq, key) DO UPDATE
SET data = EXCLUDED.data, encoding = EXCLUDED.encoding, updated_at = now()
"""


async def set_event(conn: Connection, seq: int, key: str, value: Payload) -> None:
    await conn.execute(_SET_EVENT, seq, key, value.data, value.encoding)


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


_OPEN_OUTCOMES = f"""
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
    found = await conn.fetch(_OPEN_OUTCOMES, [k[0] for k in keys], [k[1] for k in keys])
    return [(r[0], rows.step(r[2:])) for r in found]


_EXISTS = "SELECT true FROM workflows WHERE workflow_id = $1"


async def exists(conn: Connection, workflow_id: str) -> bool:
    return bool(await conn.fetchval(_EXISTS, workflow_id))


_HAS_MESSAGE = "SELECT true FROM messages WHERE workflow_seq = $1 AND idempotency_key = $2"


async def has_message(conn: Connection, seq: int, idempotency_key: str) -> bool:
    """Whether the workflow was sent a message with this idempotency key."""
    return bool(await conn.fetchval(_HAS_MESSAGE, seq, idempotency_key))
