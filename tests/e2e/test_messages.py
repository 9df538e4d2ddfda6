"""A thousand messages to ten workflows while workers are SIGKILLed at random."""

from __future__ import annotations

import asyncio
import random

from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import Process

WORKFLOWS = 10
MESSAGES = 100  # per workflow
EARLY = 5  # of them sent before any worker runs the workflow, before any recv is reached
# How long a waiting workflow stays in memory, per worker: some never suspend, some at once.
SUSPEND = ("never", "0", "0.05")


async def test_a_thousand_messages_under_worker_kills_are_each_received_once_in_send_order(
    cluster: ClusterFactory,
) -> None:
    c = await cluster(lease_ms="500")
    ids = [f"mailbox-{i}" for i in range(WORKFLOWS)]
    handles = [await c.client.start_workflow("inbox", MESSAGES, "m", workflow_id=i) for i in ids]
    for workflow_id in ids:
        for n in range(EARLY):
            await c.client.send(workflow_id, n, topic="m")

    alive: list[Process] = [await c.start_worker(f"w{i}", SUSPEND_AFTER=SUSPEND[i]) for i in range(3)]
    kills = 0
    sending = True

    async def send_the_rest(workflow_id: str) -> None:
        for n in range(EARLY, MESSAGES):
            await c.client.send(workflow_id, n, topic="m")
            await asyncio.sleep(random.uniform(0.005, 0.03))  # pacing, so that kills land mid-way

    async def kill_workers() -> None:
        nonlocal kills
        while sending:
            await asyncio.sleep(random.uniform(0.2, 0.5))
            victim = alive.pop(random.randrange(len(alive)))
            await victim.kill()
            kills += 1
            alive.append(await c.start_worker(f"w{len(c.workers)}", SUSPEND_AFTER=random.choice(SUSPEND)))

    killer = asyncio.create_task(kill_workers())
    try:
        await asyncio.gather(*(send_the_rest(i) for i in ids))
    finally:
        sending = False
        await killer

    received = [await h.result(timeout=60) for h in handles]
    print(f"messages: {WORKFLOWS * MESSAGES} to {WORKFLOWS} workflows, {kills} worker kills")
    assert received == [list(range(MESSAGES))] * WORKFLOWS
    assert kills >= 3, "the kills must land while messages flow"

    conn = await c.db()
    try:
        rows = await conn.fetch(
            "SELECT w.workflow_id, count(*), count(m.consumed_by), count(DISTINCT m.consumed_by)"
            " FROM messages m JOIN workflows w ON w.seq = m.workflow_seq GROUP BY w.workflow_id"
        )
        recvs = await conn.fetchval("SELECT count(*) FROM steps WHERE kind = 'recv' AND status = 'SUCCEEDED'")
    finally:
        await conn.close()
    # Every message was taken by exactly one recv, and every recv took exactly one message.
    assert sorted(tuple(r) for r in rows) == [(i, MESSAGES, MESSAGES, MESSAGES) for i in sorted(ids)]
    assert recvs == WORKFLOWS * MESSAGES
    # Each workflow ran its last step (a body in flight when its worker was killed may run
    # twice: at-least-once for the step in flight, as the guarantees say).
    finals = {e.workflow_id for e in c.effects() if e.what == f"received {MESSAGES}"}
    assert sorted(finals) == sorted(ids)
