"""Statements about workflows' mailboxes (``messages``) and events (``workflow_events``).

As in ``waits.py``, the workflows concerned are locked by the caller's transaction first.
Messages meet their recvs in ``pair``: one statement hands the oldest unread messages of
each topic to the oldest open recvs of that topic, one to one, records each as its step's
output and marks it read, so that each message is received once and in the order it was
sent. Sending and pairing are functions in PostgreSQL (``migrations/0011_sends.sql``),
so that a batch of clients' sends alone is one round trip (``client_send``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.models import FINAL, UNFINISHED, Payload, WorkflowStatus
from coordinator.store.database import Connection
from coordinator.store.waits import Ended


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of a message: its destination's seq and status (None: there is no such
    workflow), and ``outcome``: "missing" (no such workflow), "finished" (its
    destination is closed: nothing would read it), "duplicate" (its idempotency key was
    sent to that workflow before) or "sent"."""

    seq: int | None
    status: WorkflowStatus | None
    outcome: str


# Where a message is refused: finished, but not PAUSED (a paused workflow keeps its
# messages for when it is resumed). Pairing is only in unfinished workflows.
_CLOSED = sorted(s.value for s in FINAL - {WorkflowStatus.PAUSED})
_UNFINISHED = sorted(s.value for s in UNFINISHED)

Message = tuple[str, str, Payload, str | None]  # (destination workflow_id, topic, message, key)


def _columns(messages: Sequence[Message]) -> list[list[Any]]:
    return [
        [m[0] for m in messages],
        [m[1] for m in messages],
        [m[2].data for m in messages],
        [m[2].encoding for m in messages],
        [m[3] for m in messages],
    ]


def _sent(r: Any) -> Sent:
    return Sent(r["workflow_seq"], WorkflowStatus(r["status"]) if r["status"] else None, r["outcome"])


_SEND = "SELECT n, workflow_seq, status, outcome FROM stepline_send($1, $2, $3, $4, $5, $6)"


async def send(conn: Connection, messages: Sequence[Message]) -> list[Sent]:
    """Appends the messages, in order, to the (locked) destinations that take them
    (migrations/0011_sends.sql); returns what became of each."""
    if not messages:
        return []
    return [_sent(r) for r in await conn.fetch(_SEND, *_columns(messages), _CLOSED)]


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


_PAIR = """
SELECT workflow_seq, step_id, data, encoding, woken FROM stepline_pair($1, $2, $3)
ORDER BY workflow_seq, message_seq
"""


def _ended(r: Any, workflow_id: str) -> Ended:
    return Ended(
        r["workflow_seq"], workflow_id, r["step_id"], Payload(bytes(r["data"]), r["encoding"]), False
    )


async def pair(conn: Connection, boxes: Sequence[tuple[int, str, str]]) -> tuple[list[Ended], list[str]]:
    """Hands each of the (seq, workflow_id, topic) mailboxes' oldest unread messages to its
    oldest open recvs, one message to one recv, in one statement; returns the recvs that
    ended, and the names of the workflows that woke (were suspended)."""
    if not boxes:
        return [], []
    ids = {seq: workflow_id for seq, workflow_id, _ in boxes}
    rows = await conn.fetch(_PAIR, [b[0] for b in boxes], [b[2] for b in boxes], _UNFINISHED)
    woken = {r["workflow_seq"]: r["woken"] for r in rows if r["woken"] is not None}
    return [_ended(r, ids[r["workflow_seq"]]) for r in rows], list(woken.values())


_CLIENT_SEND = """
SELECT n, workflow_seq, status, outcome, workflow_id, step_id, data, encoding, woken
FROM stepline_client_send($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""


async def client_send(
    conn: Connection, messages: Sequence[Message], held: Sequence[str], channel: str, sender: str
) -> tuple[list[Sent], list[Ended], list[str]]:
    """Clients' sends alone, whole, in one statement of its own transaction: locks the
    destinations, appends the messages, pairs them with open recvs and publishes hints as
    ``sender`` on ``channel`` for the recvs that ended in workflows not ``held`` here and
    the workflows woken. Returns what became of each message, the recvs that ended, and
    the names of the workflows that woke."""
    rows = await conn.fetch(
        _CLIENT_SEND, *_columns(messages), _CLOSED, _UNFINISHED, list(held), channel, sender
    )
    sent = [_sent(r) for r in rows if r["n"] is not None]
    ended = [_ended(r, r["workflow_id"]) for r in rows if r["n"] is None]
    return sent, ended, list({r["woken"] for r in rows if r["n"] is None and r["woken"] is not None})


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
