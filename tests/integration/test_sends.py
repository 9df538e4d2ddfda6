"""Clients' sends in one round trip (migrations/0011_sends.sql), called as the waits
write path calls them, on a real PostgreSQL beside a real coordinator."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import asyncpg

from coordinator.hints import WAKE
from coordinator.models import Payload
from coordinator.store import mailboxes
from tests.e2e.processes import eventually
from tests.integration.test_two_coordinators import listener, waiting
from worker_sdk import Client, Worker

CHANNEL = "stepline-test-sends"
X = Payload(b'"x"', "json")


async def test_a_batch_of_sends_is_answered_message_by_message(
    client: Client, conn: asyncpg.Connection
) -> None:
    # No worker: "open" stays ENQUEUED; "closed" is cancelled.
    await client.start_workflow("sends.nobody_runs_it", workflow_id="open")
    await client.start_workflow("sends.nobody_runs_it", workflow_id="closed")
    await client.cancel("closed")
    batch = [
        ("open", "t", X, "k"),
        ("open", "t", X, "k"),  # the same key in the same batch
        ("open", "t", X, None),
        ("nobody", "t", X, None),
        ("closed", "t", X, None),
        ("open", "u", X, "k2"),
    ]
    sent, ended, woken = await mailboxes.client_send(conn, batch, [], CHANNEL, "test")
    assert [s.outcome for s in sent] == ["sent", "duplicate", "sent", "missing", "finished", "sent"]
    assert sent[3].seq is None
    assert sent[3].status is None
    assert (ended, woken) == ([], [])
    # Sent again: "k" is known to "open"; "closed" never took a message, so it refuses it.
    again, _, _ = await mailboxes.client_send(
        conn, [("open", "t", X, "k"), ("closed", "t", X, "k")], [], CHANNEL, "test"
    )
    assert [s.outcome for s in again] == ["duplicate", "finished"]
    # Once "open" is closed too, a key it took is still a duplicate (the sender's retry
    # succeeds); a new key is refused.
    await client.cancel("open")
    late, _, _ = await mailboxes.client_send(
        conn, [("open", "t", X, "k2"), ("open", "t", X, "k9")], [], CHANNEL, "test"
    )
    assert [s.outcome for s in late] == ["duplicate", "finished"]
    stored = await conn.fetch("SELECT topic, idempotency_key FROM messages ORDER BY seq")
    assert [tuple(r) for r in stored] == [("t", "k"), ("t", None), ("u", "k2")]


async def test_a_send_ends_the_open_recv_and_hints_only_for_workflows_held_elsewhere(
    address: str, client: Client, conn: asyncpg.Connection, database_url: str
) -> None:
    hints: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    listening = await asyncpg.connect(database_url)
    await listening.add_listener(CHANNEL, lambda *args: hints.put_nowait(json.loads(args[3])))
    try:
        async with Worker(address, workflows=[listener], suspend_after=None):
            for workflow_id, held in (("held-here", True), ("held-elsewhere", False)):
                await client.start_workflow(listener, workflow_id=workflow_id)
                await eventually(functools.partial(waiting, client, workflow_id), what="the recv")
                sent, ended, woken = await mailboxes.client_send(
                    conn, [(workflow_id, "", X, None)], [workflow_id] if held else [], CHANNEL, "test"
                )
                assert [s.outcome for s in sent] == ["sent"]
                assert [(e.workflow_id, e.output) for e in ended] == [(workflow_id, X)]
                assert woken == []
            # One hint, for the workflow not held here; a hint arrives after the commit.
            hint = await asyncio.wait_for(hints.get(), timeout=10)
            assert hint == {"from": "test", "kind": WAKE, "items": [["held-elsewhere", ended[0].step_id]]}
            assert hints.empty()
            read = await conn.fetch("SELECT consumed_by FROM messages ORDER BY seq")
            assert [r[0] for r in read] == [ended[0].step_id] * 2
    finally:
        await listening.close()
