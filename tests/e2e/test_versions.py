"""Worker versions with real processes: a run stays on the version that first ran it,
waits while no worker of it is connected, moves to new code only by fork, resume or
auto-upgrade; a diverging auto-upgrade pauses the run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import Process, eventually
from worker_sdk import StepKind, StepStatus, WorkflowFailedError, WorkflowStatus


async def worker(c: Cluster, name: str, version: str, code: str = "1", **env: str) -> Process:
    return await c.start_worker(
        name, SERVES="versions", STEPLINE_WORKER_VERSION=version, CODE=code, SUSPEND_AFTER="never", **env
    )


async def waiting(c: Cluster, *workflow_ids: str) -> bool:
    for workflow_id in workflow_ids:
        steps = await c.client.list_steps(workflow_id)
        if not any(s.kind is StepKind.RECV and s.status is StepStatus.WAITING for s in steps):
            return False
    return True


async def owners(c: Cluster, *workflow_ids: str) -> list[str | None]:
    return [(await c.client.get_workflow(w)).owner_worker_id for w in workflow_ids]


def ran(c: Cluster) -> Counter[tuple[str, str, str]]:
    """(workflow, what, worker) of every step body that ran."""
    return Counter((e.workflow_id, e.what, e.worker) for e in c.effects())


async def test_a_run_stays_on_its_version_waits_without_one_and_moves_to_new_code_by_fork(
    cluster: ClusterFactory,
) -> None:
    c = await cluster(lease_ms="500")
    first = await worker(c, "v1-a", "v1")
    runs = {
        w: await c.client.start_workflow("e2e.versioned", n, workflow_id=w) for n, w in [(1, "r1"), (2, "r2")]
    }
    await eventually(lambda: waiting(c, "r1", "r2"), what="both runs waiting for their message")
    assert [(await c.client.get_workflow(w)).version for w in runs] == ["v1", "v1"]

    # Two versions connected; the v1 worker that ran both dies: they go to v1 only.
    second = await worker(c, "v1-b", "v1")
    await worker(c, "v2", "v2", code="2")
    await first.kill()
    await eventually(
        lambda: _equal(owners(c, "r1", "r2"), [second.worker_id] * 2), what="recovery on the other v1 worker"
    )
    await c.client.send("r1", "!", topic="go")
    assert await runs["r1"].result(timeout=30) == "v1:1!"

    # No v1 worker left: r2 waits, unowned, while the v2 worker serves the name.
    await second.kill()
    await eventually(lambda: _equal(owners(c, "r2"), [None]), what="r2 released by the lease")
    fresh = await c.client.start_workflow("e2e.versioned", 3, workflow_id="r3")
    await eventually(lambda: waiting(c, "r3"), what="a new run on the v2 worker")
    await c.client.send("r3", "!", topic="go")
    assert await fresh.result(timeout=30) == "v2:3!"  # the v2 worker was there all along
    info = await c.client.get_workflow("r2")
    assert (info.status, info.owner_worker_id, info.version) == (WorkflowStatus.RUNNING, None, "v1")

    # Forked to v2 from its recv: the recorded step 1 is reused, the rest runs on v2.
    fork = await c.client.fork("r2", "2", new_workflow_id="r2-on-v2", version="v2")
    await c.client.send("r2-on-v2", "?", topic="go")
    assert await fork.result(timeout=30) == "v2:2?"
    assert (await c.client.get_workflow("r2-on-v2")).version == "v2"
    assert ran(c) == Counter(
        {
            ("r1", "prepare 1", "v1-a"): 1,
            ("r2", "prepare 2", "v1-a"): 1,
            ("r1", "finish v1", "v1-b"): 1,
            ("r3", "prepare 3", "v2"): 1,
            ("r3", "finish v2", "v2"): 1,
            ("r2-on-v2", "finish v2", "v2"): 1,
        }
    )


@pytest.mark.parametrize("suspended", [False, True])
async def test_a_diverging_auto_upgrade_pauses_the_run_and_resume_on_the_fixed_version_finishes_it(
    cluster: ClusterFactory, suspended: bool
) -> None:
    c = await cluster(lease_ms="500")
    old = await worker(c, "v1", "v1")
    handle = await c.client.start_workflow("e2e.versioned", 5, workflow_id="r")
    await eventually(lambda: waiting(c, "r"), what="the run waiting for its message")
    await old.kill()

    broken = await worker(c, "v2-broken", "v2", code="broken", AUTO_UPGRADE="1")
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result(timeout=30)
    assert caught.value.error_type == "stepline.NonDeterminismError"
    assert "step '1' was recorded as 'prepare' but the code now calls 'prepare_differently'" in str(
        caught.value.message
    )
    info = await c.client.get_workflow("r")
    assert (info.status, info.version) == (WorkflowStatus.PAUSED, "v2")  # the upgrade moved it
    await broken.kill()

    await worker(c, "v3", "v3", code="2")
    if suspended:  # the message is already in its mailbox when it resumes
        await c.client.send("r", "!", topic="go")
    await c.client.resume("r", version="v3")
    if not suspended:
        await c.client.send("r", "!", topic="go")
    assert await handle.result(timeout=30) == "v2:5!"
    assert (await c.client.get_workflow("r")).version == "v3"
    assert ran(c) == Counter({("r", "prepare 5", "v1"): 1, ("r", "finish v2", "v3"): 1})


async def _equal(values: Awaitable[object], expected: object) -> bool:
    return bool(await values == expected)
