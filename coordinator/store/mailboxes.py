"""Statements about workflows' mailboxes (``messages``) and events (``workflow_events``).

As in ``waits.py``, the workflows concerned are locked by the caller's transaction first.
Messages meet their recvs in ``pair``: one statement hands the oldest unread messages of
each topic to the oldest open recvs of that topic, one to one, records each as its step's
output and marks it read, so that each message is received once and in the order it was
sent.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.models import Payload
from coordinator.store import conditions
from coordinator.store.database import Connection
from coordinator.store.waits import Ended

_SEND = """
WITH b AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[], $5::text[])
        WITH ORDINALITY AS b(seq, topic, data, encoding, idempotency_key, n)
),
sent AS (
    INSERT INTO messages (workflow_seq, topic, data, encoding, idempotency_key)
    SELECT seq, topic, data, encoding, idempotency_key FROM b ORDER BY n
    ON CONFLICT (workflow_seq, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING workflow_seq, idempotency_key
)
-- Which of the batch were dropped as duplicates (only messages with a key can be).
SELECT b.n FROM b
WHERE b.idempotency_key IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM sent s WHERE s.workflow_seq = b.seq AND s.idempotency_key = b.idempotency_key)
"""


async def send(conn: Connection, messages: Sequence[tuple[int, str, Payload, str | None]]) -> list[bool]:
    """Appends (seq, topic, message, idempotency_key) messages in order; returns for each
    whether it was dropped as a duplicate of one with the same key."""
    if not messages:
        return []
    dropped = await conn.fetch(
        _SEND,
        [m[0] for m in messages],
        [m[1] for m in messages],
        [m[2].data for m in messages],
        [m[2].encoding for m in messages],
        [m[3] for m in messages],
    )
    duplicates = {r[0] for r in dropped}
    return [i + 1 in duplicates for i in range(len(messages))]


_HAS_KEY = "SELECT true FROM messages WHERE workflow_seq = $1 AND idempotency_key = $2"


async def has_key(conn: Connection, seq: int, idempotency_key: str) -> bool:
    """Whether the workflow was sent a message with this idempotency key."""
    return bool(await conn.fetchval(_HAS_KEY, seq, idempotency_key))


_UNREAD = """
SELECT DISTINCT m.workflow_seq, m.topic FROM messages m
JOIN unnest($1::bigint[], $2::text[]) AS k(seq, topic) ON m.workflow_seq = k.seq AND m.topic = k.topic
WHERE m.consumed_by IS NULL
"""


async def unread(conn: Connection, boxes: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of the (seq, topic) mailboxes hold unread messages."""
    if not boxes:
        return set()
    result = await conn.fetch(_UNREAD, [b[0] for b in boxes], [b[1] for b in boxes])
    return {(r[0], r[1]) for r in result}


_PAIR = f"""
WITH k AS (SELECT DISTINCT * FROM unnest($1::bigint[], $2::text[]) AS k(seq, topic)),
-- The open recvs of each mailbox, oldest first, in workflows that are not finished.
w AS (
    SELECT s.workflow_seq, s.wait_topic AS topic, s.step_id,
           row_number() OVER (PARTITION BY s.workflow_seq, s.wait_topic ORDER BY s.started_at, s.step_id) AS n
    FROM k
    JOIN workflows wf ON wf.seq = k.seq AND {conditions.unfinished("wf")}
    JOIN steps s ON s.workflow_seq = k.seq AND s.wait_topic = k.topic
    WHERE s.status = 'WAITING' AND s.kind = 'recv'
),
wanted AS (SELECT workflow_seq, topic, count(*) AS c FROM w GROUP BY workflow_seq, topic),
-- As many of each mailbox's oldest unread messages as it has open recvs.
m AS (
    SELECT wanted.workflow_seq, wanted.topic, x.seq, x.data, x.encoding, x.n
    FROM wanted CROSS JOIN LATERAL (
        SELECT seq, data, encoding, row_number() OVER (ORDER BY seq) AS n FROM messages
        WHERE workflow_seq = wanted.workflow_seq AND topic = wanted.topic AND consumed_by IS NULL
        ORDER BY seq LIMIT wanted.c
    ) x
),
p AS (
    SELECT w.workflow_seq, w.step_id, m.seq AS message_seq, m.data, m.encoding
    FROM w JOIN m ON m.workflow_seq = w.workflow_seq AND m.topic = w.topic AND m.n = w.n
),
ended AS (
    UPDATE steps s
    SET status = 'SUCCEEDED', output = p.data, output_encoding = p.encoding, completed_at = clock_timestamp()
    FROM p
    WHERE s.workflow_seq = p.workflow_seq AND s.step_id = p.step_id AND s.status = 'WAITING'
    RETURNING s.workflow_seq, s.step_id
),
read AS (
    UPDATE messages SET consumed_by = p.step_id FROM p WHERE messages.seq = p.message_seq
),
untimed AS (
    DELETE FROM timers t USING p WHERE t.workflow_seq = p.workflow_seq AND t.step_id = p.step_id
),
woken AS (
    UPDATE workflows SET suspended = false, updated_at = now()
    WHERE seq IN (SELECT workflow_seq FROM p) AND suspended
    RETURNING seq, name
)
SELECT p.workflow_seq, p.step_id, p.data, p.encoding, woken.name
FROM p LEFT JOIN woken ON woken.seq = p.workflow_seq
ORDER BY p.workflow_seq, p.message_seq
"""


async def pair(conn: Connection, boxes: Sequence[tuple[int, str, str]]) -> tuple[list[Ended], list[str]]:
    """Hands each of the (seq, workflow_id, topic) mailboxes' oldest unread messages to its
    oldest open recvs, one message to one recv, in one statement; returns the recvs that
    ended, and the names of the workflows that woke (were suspended)."""
    if not boxes:
        return [], []
    ids = {seq: workflow_id for seq, workflow_id, _ in boxes}
    rows = await conn.fetch(_PAIR, [b[0] for b in boxes], [b[2] for b in boxes])
    ended = [Ended(r[0], ids[r[0]], r[1], Payload(bytes(r[2]), r[3]), False) for r in rows]
    woken = {r[0]: r[4] for r in rows if r[4] is not None}
    return ended, list(woken.values())


_EVENTS = """
SELECT w.workflow_id, e.key, e.data, e.encoding
FROM unnest($1::text[], $2::text[]) AS k(workflow_id, key)
JOIN workflows w ON w.workflow_id = k.workflow_id
JOIN workflow_events e ON e.workflow_seq = w.seq AND e.key = k.key
"""


async def events(conn: Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Payload]:
    """The events that are set among (workflow_id, key) keys."""
    if not keys:
        return {}
    found = await conn.fetch(_EVENTS, [k[0] for k in keys], [k[1] for k in keys])
    return {(r[0], r[1]): Payload(bytes(r[2]), r[3]) for r in found}


async def event(conn: Connection, workflow_id: str, key: str) -> Payload | None:
    return (await events(conn, [(workflow_id, key)])).get((workflow_id, key))


_SET_EVENTS = """
INSERT INTO workflow_events AS e (workflow_seq, key, data, encoding)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[])
ON CONFLICT (workflow_seq, key) DO UPDATE
SET data = EXCLUDED.data, encoding = EXCLUDED.encoding, updated_at = now()
"""


async def set_events(conn: Connection, values: Sequence[tuple[int, str, Payload]]) -> None:
    """Sets (seq, key, value) events; the latest value of a key wins. At most one per key."""
    if values:
        await conn.execute(
            _SET_EVENTS,
            [v[0] for v in values],
            [v[1] for v in values],
            [v[2].data for v in values],
            [v[2].encoding for v in values],
        )


_EVENT_WAITERS = """
SELECT s.workflow_seq, s.step_id, s.wait_target, s.wait_topic FROM steps s
JOIN unnest($1::text[], $2::text[]) AS k(workflow_id, key)
  ON s.wait_target = k.workflow_id AND s.wait_topic = k.key
WHERE s.status = 'WAITING' AND s.kind = 'get_event'
"""


async def event_waiters(conn: Connection, keys: Sequence[tuple[str, str]]) -> list[tuple[int, str, str, str]]:
    """The open get_event waits, in any workflow, for the (workflow_id, key) events:
    (seq, step_id, workflow_id, key) each."""
    if not keys:
        return []
    found = await conn.fetch(_EVENT_WAITERS, [k[0] for k in keys], [k[1] for k in keys])
    return [(r[0], r[1], r[2], r[3]) for r in found]
