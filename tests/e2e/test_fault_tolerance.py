"""Leases, fencing, reconnects, graceful shutdown and poison, with real processes and signals."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.cluster import Cluster, RestartablePostgres
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import eventually, log_contains
from worker_sdk import CoordinatorUnavailableError, StepInfo, StepStatus, WorkflowStatus


def done_ids(steps: list[StepInfo]) -> set[str]:
    return {s.step_id for s in steps if s.status is not StepStatus.RUNNING}


async def recorded_at_least(c: Cluster, workflow_id: str, n: int) -> bool:
    return len(done_ids(await c.client.list_steps(workflow_id))) >= n


async def test_a_frozen_worker_loses_its_work_and_its_late_writes_change_nothing(
    cluster: ClusterFactory,
) -> None:
    c = await cluster(lease_ms="1000")
    zombie = await c.start_worker("zombie", STEP_DELAY="0.4")
    handle = await c.client.start_workflow("sequence", 6, workflow_id="zombie")
    await eventually(lambda: recorded_at_least(c, "zombie", 1), what="a recorded step")
    zombie.signal(signal.SIGSTOP)
    frozen_at = time.time()
    await c.start_worker("healthy", STEP_DELAY="0.05")
    assert await handle.result(timeout=30) == [f"s{i}-done" for i in range(6)]
    before = await handle.steps()

    zombie.signal(signal.SIGCONT)
    await eventually(
        lambda: log_contains(zombie.log, "workflow zombie epoch 1 abandoned"),
        what="the zombie to be told to abandon",
    )
    # The step the zombie had in flight finished after the thaw, and its result (kept until
    # acknowledged, resent on reconnect) reached the coordinator and was refused there.
    refused = f"write refused: workflow zombie epoch 1 from {zombie.worker_id}"
    await eventually(
        lambda: log_contains(c.coordinator_log, refused),
        what="the zombie's late step result to be refused",
    )
    assert await handle.steps() == before, "a late write from the zombie changed a recorded step"
    info = await handle.info()
    assert (info.status, info.epoch, info.recovery_attempts) == (WorkflowStatus.SUCCEEDED, 2, 1)
    by_zombie = [e for e in c.effects() if e.worker == "zombie"]
    assert by_zombie, "the zombie ran at least the first step"
    assert all(e.started < frozen_at for e in by_zombie), (
        "the zombie started a step body after its lease ran out"
    )
    assert all(s.worker_id != zombie.worker_id for s in before if s.step_id not in {"1", "2"})


async def test_a_worker_cut_off_from_the_coordinator_starts_no_step_body_once_its_lease_ends(
    cluster: ClusterFactory,
) -> None:
    lease = 1.0
    c = await cluster(lease_ms=str(int(lease * 1000)))
    await c.start_worker("cut-off")
    handle = await c.client.start_workflow("ticker", 40, 0.1, workflow_id="ticker")
    await eventually(lambda: recorded_at_least(c, "ticker", 3), what="a few recorded ticks")
    assert c.coordinator is not None
    c.coordinator.signal(signal.SIGSTOP)
    frozen_at = time.time()
    try:
        # The window measured: the worker hears nothing for two and a half leases.
        await asyncio.sleep(2.5 * lease)
    finally:
        c.coordinator.signal(signal.SIGCONT)
    thawed_at = time.time()
    assert await handle.result(timeout=30) == list(range(40))

    lines = [e for e in c.effects() if e.workflow_id == "ticker"]
    calls = [e.started for e in lines if e.what.startswith("call ")]
    bodies = [e.started for e in lines if e.what.startswith("tick ")]
    # The worker's own deadline counts from the last acknowledged heartbeat, sent before
    # the coordinator stopped: no later than frozen_at + lease.
    cut_off = frozen_at + lease + 0.05
    assert len([t for t in calls if cut_off < t < thawed_at - 0.1]) >= 5, (
        "the workflow should have kept calling steps while cut off"
    )
    late = [t - frozen_at for t in bodies if cut_off < t < thawed_at]
    assert not late, f"step bodies started {late} s after the coordinator stopped (lease {lease} s)"
    assert len({e.what for e in lines if e.what.startswith("tick ")}) == 40


async def test_sigterm_hands_work_over_at_once_and_runs_every_step_exactly_once(
    cluster: ClusterFactory,
) -> None:
    # A lease of a minute: only a graceful hand-back lets the workflow finish within the test.
    c = await cluster(lease_ms="60000")
    leaving = await c.start_worker("leaving", STEP_DELAY="0.3")
    handle = await c.client.start_workflow("sequence", 8, workflow_id="handover")
    await eventually(lambda: recorded_at_least(c, "handover", 2), what="two recorded steps")
    await c.start_worker("staying", STEP_DELAY="0.05")
    leaving.signal(signal.SIGTERM)
    assert await leaving.proc.wait() == 0
    assert await handle.result(timeout=30) == [f"s{i}-done" for i in range(8)]

    runs = Counter(e.step_id for e in c.effects())
    assert runs == Counter({str(i): 1 for i in range(1, 9)}), "a step ran twice or not at all"
    workers = {e.worker for e in c.effects()}
    assert workers == {"leaving", "staying"}
    info = await handle.info()
    assert (info.epoch, info.recovery_attempts) == (2, 0), "a graceful hand-back is not a recovery"


async def test_a_killed_coordinator_restarts_and_workers_reattach(cluster: ClusterFactory) -> None:
    c = await cluster(lease_ms="2000")
    await c.start_worker("w", STEP_DELAY="0.2")
    handle = await c.client.start_workflow("sequence", 10, workflow_id="survivor")
    await eventually(lambda: recorded_at_least(c, "survivor", 3), what="three recorded steps")
    await c.kill_coordinator()
    db = await c.db()
    try:
        recorded = {r[0] for r in await db.fetch("SELECT step_id FROM steps WHERE status = 'SUCCEEDED'")}
    finally:
        await db.close()
    await c.start_coordinator()
    assert await handle.result(timeout=30) == [f"s{i}-done" for i in range(10)]

    runs = Counter(e.step_id for e in c.effects())
    assert all(runs[step_id] == 1 for step_id in recorded), "an acknowledged step ran again"
    info = await handle.info()
    # Still epoch 1: the worker re-attached its execution instead of losing it.
    assert (info.epoch, info.recovery_attempts) == (1, 0)


async def test_postgres_down_then_back_the_coordinator_waits_and_recovers(
    cluster: ClusterFactory, restartable_pg: RestartablePostgres
) -> None:
    c = await cluster(database=await restartable_pg.new_database(), lease_ms="2000")
    await c.start_worker("w", STEP_DELAY="0.1")
    handle = await c.client.start_workflow("sequence", 12, workflow_id="patient")
    await eventually(lambda: recorded_at_least(c, "patient", 3), what="three recorded steps")
    async with grpc.aio.insecure_channel(c.address) as channel:
        health: Any = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            return int((await health.Check(health_pb2.HealthCheckRequest(service=""))).status)

        await restartable_pg.stop()
        await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.NOT_SERVING), what="NOT_SERVING")
        with pytest.raises(CoordinatorUnavailableError, match="PostgreSQL is unavailable"):
            await c.client.get_workflow("patient")
        await restartable_pg.start()
        await eventually(lambda: _is(status, health_pb2.HealthCheckResponse.SERVING), what="SERVING again")
    assert await handle.result(timeout=60) == [f"s{i}-done" for i in range(12)]
    assert c.coordinator is not None
    assert c.coordinator.alive, "the coordinator stayed up"
    recorded_by_first = [e for e in c.effects() if e.step_id in {"1", "2", "3"}]
    assert Counter(e.step_id for e in recorded_by_first) == Counter({"1": 1, "2": 1, "3": 1}), "a step re-ran"


async def _is(status: object, wanted: int) -> bool:
    try:
        return bool(await status() == wanted)  # type: ignore[operator]
    except grpc.aio.AioRpcError:
        return False


@pytest.mark.parametrize(
    ("args", "output", "attempts", "step_status"),
    [
        ((3,), "succeeded on attempt 3", 3, StepStatus.SUCCEEDED),
        ((3, True), "gave up: Fatal: no point retrying", 1, StepStatus.FAILED),
        ((9,), "gave up: Flaky: attempt 3 failed", 3, StepStatus.FAILED),
    ],
    ids=["succeeds-on-third", "non-retryable", "attempts-exhausted"],
)
async def test_retry_policy(
    cluster: ClusterFactory, args: tuple[object, ...], output: str, attempts: int, step_status: StepStatus
) -> None:
    c = await cluster()
    await c.start_worker("w")
    handle = await c.client.start_workflow("retrying", *args, workflow_id="retry")
    assert await handle.result(timeout=30) == output
    [step] = await handle.steps()
    assert (step.status, step.attempts) == (step_status, attempts)
    assert [e.attempt for e in c.effects()] == list(range(1, attempts + 1))


async def test_a_crash_during_backoff_resumes_with_the_next_attempt(cluster: ClusterFactory) -> None:
    c = await cluster()
    first = await c.start_worker("first", BACKOFF="30")
    handle = await c.client.start_workflow("retrying", 3, workflow_id="backoff")

    async def waiting_to_retry() -> bool:
        steps = await handle.steps()
        return bool(steps) and steps[0].attempts == 1 and bool(c.effects())

    await eventually(waiting_to_retry, what="attempt 1 to fail and be recorded")
    await first.kill()
    await c.start_worker("second", BACKOFF="0.01")
    assert await handle.result(timeout=30) == "succeeded on attempt 3"
    assert [(e.worker, e.attempt) for e in c.effects()] == [("first", 1), ("second", 2), ("second", 3)]
    [step] = await handle.steps()
    assert (step.status, step.attempts) == (StepStatus.SUCCEEDED, 3)


async def test_a_workflow_that_keeps_killing_its_workers_is_given_up(cluster: ClusterFactory) -> None:
    c = await cluster(max_recovery_attempts="2")
    handle = await c.client.start_workflow("poison", workflow_id="poison")
    for _ in range(3):  # the first run and two recoveries each kill a worker
        victim = await c.start_worker()
        await victim.proc.wait()
    # The next worker's registration would be the third recovery: the workflow is given up
    # instead, and the worker lives on to serve other work.
    survivor = await c.start_worker()
    await eventually(
        lambda: _status_is(handle, WorkflowStatus.MAX_RECOVERY_ATTEMPTS_EXCEEDED),
        what="the workflow to be given up",
    )
    info = await handle.info()
    assert info.error is not None
    assert info.error.type == "stepline.MaxRecoveryAttemptsExceeded"
    assert (info.recovery_attempts, info.owner_worker_id) == (2, None)
    other = await c.client.start_workflow("sequence", 1, workflow_id="after")
    assert await other.result(timeout=30) == ["s0-done"]
    assert survivor.alive
    assert (await handle.info()).epoch == info.epoch
    assert sum(e.what == "suicide" for e in c.effects()) == 3


async def _status_is(handle: object, status: WorkflowStatus) -> bool:
    return bool(await handle.status() == status)  # type: ignore[attr-defined]
