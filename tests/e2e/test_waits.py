"""Durable waits with real processes: workers and the coordinator SIGKILLed while workflows wait."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import eventually, log_contains
from worker_sdk import StepKind, StepStatus, WorkflowFailedError, WorkflowStatus

# How late a sleep may wake after its recorded wake time, even after its worker and the
# coordinator were killed and restarted during it (the restarts are over by then).
WAKE_TOLERANCE = 0.5
SETTINGS = {"lease_ms": "500"}
MODES = {"in-memory": "never", "suspended": "0"}


async def waiting(c: Cluster, workflow_id: str, kind: StepKind, *, suspended: bool) -> bool:
    steps = await c.client.list_steps(workflow_id)
    open_wait = any(s.kind is kind and s.status is StepStatus.WAITING for s in steps)
    return open_wait and (not suspended or (await c.client.get_workflow(workflow_id)).suspended)


async def kill_everything(c: Cluster) -> None:
    """SIGKILLs every worker and the coordinator, then starts the coordinator again."""
    for w in c.workers:
        await w.kill()
    await c.kill_coordinator()
    await c.start_coordinator()


def ran(c: Cluster, workflow_id: str) -> Counter[str]:
    return Counter(e.what for e in c.effects() if e.workflow_id == workflow_id)


@pytest.mark.parametrize("mode", MODES)
async def test_a_sleep_survives_its_worker_and_the_coordinator_and_wakes_on_time(
    cluster: ClusterFactory, mode: str
) -> None:
    c = await cluster(**SETTINGS)
    await c.start_worker("w0", SUSPEND_AFTER=MODES[mode])
    handle = await c.client.start_workflow("nap", 4.0, workflow_id="nap")
    await eventually(
        lambda: waiting(c, "nap", StepKind.SLEEP, suspended=mode == "suspended"), what="the sleep"
    )
    await kill_everything(c)
    await c.start_worker("w1", SUSPEND_AFTER=MODES[mode])

    times = await handle.result(timeout=30)
    [_, sleep_step, _] = await c.client.list_steps("nap")
    assert sleep_step.wake_at is not None
    # The wake time was recorded at the first run: only what was left was slept.
    assert abs(sleep_step.wake_at.timestamp() - times["before"] - 4.0) < 0.2
    late = times["after"] - sleep_step.wake_at.timestamp()
    assert 0 <= late < WAKE_TOLERANCE, f"woke {late:.3f} s after the recorded wake time"
    assert ran(c, "nap") == Counter({"before": 1, "after": 1})


@pytest.mark.parametrize("mode", MODES)
async def test_recv_survives_its_worker_and_the_coordinator_and_receives_each_message_once(
    cluster: ClusterFactory, mode: str
) -> None:
    c = await cluster(**SETTINGS)
    await c.start_worker("w0", SUSPEND_AFTER=MODES[mode])
    handle = await c.client.start_workflow("inbox", 3, "m", workflow_id="inbox")
    await c.client.send("inbox", "first", topic="m")
    await eventually(lambda: waiting(c, "inbox", StepKind.RECV, suspended=mode == "suspended"), what="recv")
    await kill_everything(c)
    await c.client.send("inbox", "second", topic="m")  # while no worker is alive
    await c.start_worker("w1", SUSPEND_AFTER=MODES[mode])
    await c.client.send("inbox", "third", topic="m")
    assert await handle.result(timeout=30) == ["first", "second", "third"]
    assert ran(c, "inbox") == Counter({"received 3": 1})
    conn = await c.db()
    try:
        consumers = await conn.fetch("SELECT consumed_by FROM messages ORDER BY seq")
    finally:
        await conn.close()
    assert [r[0] for r in consumers] == ["1", "2", "3"]


async def test_events_survive_their_workers_and_the_coordinator(cluster: ClusterFactory) -> None:
    c = await cluster(**SETTINGS)
    await c.start_worker("w0", SUSPEND_AFTER="never")
    waiter = await c.client.start_workflow("event_waiter", "announcer", "phase", workflow_id="waiter")
    await eventually(lambda: waiting(c, "waiter", StepKind.GET_EVENT, suspended=False), what="get_event")
    announcer = await c.client.start_workflow("announcer", "phase", {"n": 1}, workflow_id="announcer")
    assert await c.client.get_event("announcer", "phase", timeout=20) == {"n": 1}
    # Killed once its step after the event is recorded too (a step body cut short by the
    # kill would run again, as it should, and this test counts bodies).
    await eventually(lambda: waiting(c, "announcer", StepKind.RECV, suspended=False), what="recv")
    await kill_everything(c)
    # The event is recorded: a client reads it with no worker alive, and a workflow that
    # waited for it got it (recorded) or gets it now.
    assert await c.client.get_event("announcer", "phase", timeout=0) == {"n": 1}
    await c.start_worker("w1", SUSPEND_AFTER="never")
    assert await waiter.result(timeout=30) == {"n": 1}
    await c.client.send("announcer", "done", topic="finish")
    assert await announcer.result(timeout=30) == "announced"
    assert ran(c, "announcer") == Counter({"before set": 1, "after set": 1})
    assert ran(c, "waiter")["waiting"] == 1


async def test_a_deadline_ends_a_workflow_with_no_worker_alive_on_time(cluster: ClusterFactory) -> None:
    c = await cluster(**SETTINGS)
    handle = await c.client.start_workflow("nap", 60.0, workflow_id="doomed", timeout=2.0)
    with pytest.raises(WorkflowFailedError, match="WorkflowTimedOutError"):
        await handle.result(timeout=30)
    info = await handle.info()
    assert info.status is WorkflowStatus.TIMED_OUT
    assert info.completed_at is not None
    assert info.created_at is not None
    took = (info.completed_at - info.created_at).total_seconds()
    assert 2.0 <= took < 2.0 + WAKE_TOLERANCE, f"timed out after {took:.3f} s"


async def test_a_deadline_stops_a_running_workflow_and_its_worker_is_told(cluster: ClusterFactory) -> None:
    c = await cluster(**SETTINGS)
    worker = await c.start_worker("w0", SUSPEND_AFTER="never")
    handle = await c.client.start_workflow("nap", 60.0, workflow_id="stopped", timeout=1.0)
    with pytest.raises(WorkflowFailedError, match="WorkflowTimedOutError"):
        await handle.result(timeout=30)
    await eventually(
        lambda: log_contains(worker.log, "workflow stopped epoch 1 abandoned: ABANDON_REASON_TIMED_OUT"),
        what="the worker to abandon the timed-out workflow",
    )
    assert ran(c, "stopped") == Counter({"before": 1})


async def test_a_suspended_workflow_is_neither_timed_out_nor_rerun_by_a_lease(
    cluster: ClusterFactory,
) -> None:
    c = await cluster(**SETTINGS)
    first = await c.start_worker("w0", SUSPEND_AFTER="0")
    handle = await c.client.start_workflow("inbox", 1, "m", workflow_id="patient")
    await eventually(lambda: waiting(c, "patient", StepKind.RECV, suspended=True), what="the suspension")
    before = await c.client.get_workflow("patient")
    await first.kill()
    # Four leases pass with its worker dead: nothing happens to a suspended workflow.
    await asyncio.sleep(4 * 0.5)
    after = await c.client.get_workflow("patient")
    assert (after.status, after.suspended, after.epoch, after.recovery_attempts) == (
        WorkflowStatus.RUNNING,
        True,
        before.epoch,
        0,
    )
    await c.start_worker("w1", SUSPEND_AFTER="0")
    await c.client.send("patient", "at last", topic="m")
    assert await handle.result(timeout=30) == ["at last"]
    info = await handle.info()
    assert info.recovery_attempts == 0
