"""A step's result is committed in PostgreSQL before the workflow code sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from worker_sdk import Client, Worker, step, workflow, workflow_id


class Probe:
    """What the workflow code looks with, and what it saw (one per test)."""

    def __init__(self, looker: asyncpg.Connection) -> None:
        self.looker = looker
        # The step's row as the workflow code found it, the moment each call returned.
        self.seen: list[Any] = []
        self.second_started = asyncio.Event()


probes: list[Probe] = []

_STEP_ROW = """
SELECT s.status, s.output FROM steps s JOIN workflows w ON w.seq = s.workflow_seq
WHERE w.workflow_id = $1 AND s.step_id = $2
"""


@step()
async def first() -> str:
    return "one"


@step()
async def second() -> str:
    probes[-1].second_started.set()
    return "two"


@workflow()
async def looks_after_each_step() -> list[str]:
    wf = workflow_id()
    values = []
    for step_id, call in (("1", first), ("2", second)):
        values.append(await call())
        row = await probes[-1].looker.fetchrow(_STEP_ROW, wf, step_id)
        probes[-1].seen.append(tuple(row) if row is not None else None)
    return values


@pytest.fixture
async def probe(database_url: str) -> AsyncIterator[Probe]:
    looker = await asyncpg.connect(database_url)
    probes.append(Probe(looker))
    yield probes[-1]
    await looker.close()


async def test_workflow_code_sees_a_step_result_only_once_it_is_committed(
    address: str, client: Client, probe: Probe
) -> None:
    async with Worker(address, workflows=[looks_after_each_step]):
        handle = await client.start_workflow(looks_after_each_step, workflow_id="durable")
        assert await handle.result(timeout=30) == ["one", "two"]
    # Read on another connection, after each call returned: committed, with its value.
    assert probe.seen == [("SUCCEEDED", b'"one"'), ("SUCCEEDED", b'"two"')]


async def test_a_step_result_that_cannot_be_committed_holds_the_workflow_back(
    address: str, client: Client, probe: Probe, database_url: str
) -> None:
    blocker = await asyncpg.connect(database_url)
    try:
        async with Worker(address, workflows=[looks_after_each_step]):
            # Writes to steps wait behind this lock: the first step's body runs, but its
            # result cannot be committed, so the workflow must not get past it.
            lock = blocker.transaction()
            await lock.start()
            await blocker.execute("LOCK TABLE steps IN EXCLUSIVE MODE")
            handle = await client.start_workflow(looks_after_each_step, workflow_id="held-back")
            waited = await _started_within(probe.second_started, 1.0)
            await lock.rollback()
            assert not waited, "the second step started while the first one's result was not durable"
            assert await handle.result(timeout=30) == ["one", "two"]
    finally:
        await blocker.close()
    assert probe.second_started.is_set()
    assert probe.seen == [("SUCCEEDED", b'"one"'), ("SUCCEEDED", b'"two"')]


async def _started_within(event: asyncio.Event, seconds: float) -> bool:
    """Whether ``event`` is set within ``seconds`` (the window in which it must not be)."""
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True
