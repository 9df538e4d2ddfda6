"""Child workflows with real processes: the parent's worker and the coordinator SIGKILLed
while a child served by another worker process runs."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import eventually
from worker_sdk import StepKind, StepStatus

MODES = {"in-memory": "never", "suspended": "0"}


async def parent_waits(c: Cluster, workflow_id: str, *, suspended: bool) -> bool:
    steps = await c.client.list_steps(workflow_id)
    open_wait = any(s.kind is StepKind.AWAIT_WORKFLOW and s.status is StepStatus.WAITING for s in steps)
    return open_wait and (not suspended or (await c.client.get_workflow(workflow_id)).suspended)


@pytest.mark.parametrize("mode", MODES)
async def test_a_parent_killed_while_its_child_runs_elsewhere_gets_the_one_childs_result(
    cluster: ClusterFactory, mode: str
) -> None:
    c = await cluster(lease_ms="500")
    await c.start_worker("parents-0", SERVES="parents", SUSPEND_AFTER=MODES[mode])
    await c.start_worker("children", SERVES="children")
    handle = await c.client.start_workflow("e2e.parent", 7, workflow_id="p")
    await eventually(lambda: parent_waits(c, "p", suspended=mode == "suspended"), what="the parent waiting")
    assert (await c.client.get_workflow("p/2")).parent_workflow_id == "p"

    # The parent's worker and the coordinator die while the child waits for its message.
    parents_worker = c.workers[0]
    await parents_worker.kill()
    await c.kill_coordinator()
    await c.start_coordinator()
    await c.start_worker("parents-1", SERVES="parents", SUSPEND_AFTER=MODES[mode])
    await c.client.send("p/2", "go", topic="go")

    assert await handle.result(timeout=30) == ["p/2", 70]
    effects = Counter(e.what for e in c.effects())
    assert effects == Counter(
        {"parent began": 1, "parent started its child": 1, "child 7 ran": 1, "parent got the result": 1}
    )
    conn = await c.db()
    try:
        children = await conn.fetch("SELECT workflow_id, status FROM workflows WHERE parent_id = 'p'")
    finally:
        await conn.close()
    assert [tuple(r) for r in children] == [("p/2", "SUCCEEDED")]
