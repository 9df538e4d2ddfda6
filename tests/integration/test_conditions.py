"""The shared SQL conditions agree with the Python ones and with the partial index."""

from __future__ import annotations

import asyncpg
import pytest

from coordinator.models import WorkflowRecord, WorkflowStatus
from coordinator.store import conditions, rows, workflows


async def test_ready_means_the_same_in_sql_and_in_python(conn: asyncpg.Connection) -> None:
    cases = [(status, owner) for status in WorkflowStatus for owner in (None, "w")]
    for i, (status, owner) in enumerate(cases):
        await conn.execute(
            "INSERT INTO workflows (workflow_id, name, status, input, input_encoding, owner_id)"
            " VALUES ($1, 'wf', $2, '\\x6e756c6c', 'json', $3)",
            f"w{i}",
            status.value,
            owner,
        )
    found = await conn.fetch(f"SELECT {rows.WORKFLOW_COLUMNS}, {conditions.ready()} FROM workflows")
    for row in found:
        record: WorkflowRecord = rows.workflow(row[:-1])
        assert record.ready == row[-1], record
        assert record.status.done == await conn.fetchval(
            f"SELECT {conditions.final()} FROM workflows WHERE workflow_id = $1", record.workflow_id
        )
    assert sum(1 for r in found if r[-1]) == 2  # ENQUEUED and RUNNING, both unowned


@pytest.mark.parametrize("statement", ["_CLAIM_READY", "_STILL_READY"])
async def test_the_claims_are_served_by_the_ready_index(conn: asyncpg.Connection, statement: str) -> None:
    # With sequential scans off, a query whose condition does not imply the partial
    # index's own can only use another index: the plan names the one it took.
    sql = getattr(workflows, statement)
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        claim: list[object] = [["wf"], "w", 3, "v1", ["wf"], 10]
        args = claim if statement == "_CLAIM_READY" else [["wf"]]
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {sql}", *args))
    assert "workflows_ready" in plan, plan
