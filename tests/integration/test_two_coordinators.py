"""Waits with two coordinators on one database: timers fire once, wake-ups cross over."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest

from coordinator import server
from coordinator.config import Settings
from tests.e2e.processes import eventually
from worker_sdk import Client, StepKind, StepStatus, Worker, recv, sleep, workflow


@workflow(name="two.napper")
async def napper(seconds: float) -> str:
    await sleep(seconds)
    return "awake"


@workflow(name="two.listener")
async def listener() -> Any:
    return await recv()


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[list[server.Running]]:
    # A sweep far longer than any test: what wakes a workflow here is the hint, not it.
    quiet = replace(settings, sweep_ms=60_000)
    running = [await server.start(quiet), await server.start(quiet)]
    yield running
    for r in running:
        await r.stop(grace=0)


def address(r: server.Running) -> str:
    return f"127.0.0.1:{r.port}"


async def waiting(client: Client, workflow_id: str) -> bool:
    return any(s.status is StepStatus.WAITING for s in await client.list_steps(workflow_id))


async def test_each_timer_fires_exactly_once(pair: list[server.Running], conn: asyncpg.Connection) -> None:
    a, b = pair
    clients = [Client(address(a)), Client(address(b))]
    try:
        # Suspended at once: no worker holds them, so either coordinator may wake them.
        async with Worker(address(a), workflows=[napper], suspend_after=0):
            handles = [
                await clients[i % 2].start_workflow(napper, 0.5, workflow_id=f"nap-{i}") for i in range(20)
            ]
            assert [await h.result(timeout=20) for h in handles] == ["awake"] * 20
    finally:
        for c in clients:
            await c.close()
    fired = [r.engine.timers.fired for r in pair]
    assert sum(fired) == 20, f"timers fired by each coordinator: {fired}"
    ended = await conn.fetch("SELECT count(*) FROM steps WHERE kind = 'sleep' AND status = 'SUCCEEDED'")
    assert ended[0][0] == 20
    assert await conn.fetchval("SELECT count(*) FROM timers") == 0


@pytest.mark.parametrize("suspend_after", [None, 0.0], ids=["in-memory", "suspended"])
async def test_a_message_through_one_coordinator_wakes_a_workflow_held_on_the_other(
    pair: list[server.Running], suspend_after: float | None
) -> None:
    a, b = pair
    workflow_id = f"cross-{uuid.uuid4().hex[:6]}"
    async with (
        Worker(address(a), workflows=[listener], suspend_after=suspend_after),
        Client(address(a)) as on_a,
        Client(address(b)) as on_b,
    ):
        handle = await on_a.start_workflow(listener, workflow_id=workflow_id)
        await eventually(lambda: waiting(on_a, workflow_id), what="the recv")
        if suspend_after == 0:
            await eventually(lambda: _suspended(on_a, workflow_id), what="the suspension")
        sent = time.monotonic()
        await on_b.send(workflow_id, "over here")
        assert await handle.result(timeout=10) == "over here"
        # Well within the (minute-long) sweep: the hint did it.
        assert time.monotonic() - sent < 5
    assert a.engine.hints.received >= 1


async def test_a_lost_hint_is_made_up_for_by_the_resync(settings: Settings) -> None:
    running = [await server.start(replace(settings, sweep_ms=300)) for _ in range(2)]
    a, b = running
    try:
        async with (
            Worker(address(a), workflows=[listener], suspend_after=None),
            Client(address(a)) as on_a,
        ):
            workflow_id = "lost-hint"
            handle = await on_a.start_workflow(listener, workflow_id=workflow_id)
            await eventually(lambda: waiting(on_a, workflow_id), what="the recv")
            # The message is sent while coordinator A listens for nothing: no hint reaches it.
            a.engine.hints._handlers.clear()
            async with Client(address(b)) as on_b:
                await on_b.send(workflow_id, "anyway")
            assert await handle.result(timeout=10) == "anyway"
    finally:
        for r in running:
            await r.stop(grace=0)


async def _suspended(client: Client, workflow_id: str) -> bool:
    return (await client.get_workflow(workflow_id)).suspended


__all__ = ["StepKind", "asyncio"]


async def test_workers_of_both_coordinators_are_listed_by_either(pair: list[server.Running]) -> None:
    a, b = pair
    workflow_id = f"held-{uuid.uuid4().hex[:6]}"
    async with (
        Worker(address(a), workflows=[listener], worker_id="on-a", version="va", suspend_after=None),
        Worker(address(b), workflows=[napper], worker_id="on-b", version="vb", capacity=7),
        Client(address(a)) as on_a,
        Client(address(b)) as on_b,
    ):
        await on_a.start_workflow(listener, workflow_id=workflow_id)
        await eventually(lambda: waiting(on_a, workflow_id), what="the recv")
        seen_from_b = {w.worker_id: w for w in await on_b.list_workers()}
        assert set(seen_from_b) == {"on-a", "on-b"}
        there, here = seen_from_b["on-a"], seen_from_b["on-b"]
        assert (there.local, there.version, there.in_flight, there.workflow_names) == (
            False,
            "va",
            1,
            ("two.listener",),
        )
        assert (here.local, here.version, here.capacity, here.language) == (True, "vb", 7, "python")
        assert here.coordinator_id != there.coordinator_id
        assert 0 <= here.heartbeat_age < 5
        assert 0 <= there.heartbeat_age < 30
        await on_a.cancel(workflow_id)
        # A worker that disconnects is soon no longer listed (its lease row is dropped).
    async with Client(address(a)) as on_a:
        await eventually(lambda: _none(on_a.list_workers()), what="the workers' leases dropped")


async def _none(found: Awaitable[list[Any]]) -> bool:
    return not await found
