"""worker_sdk.as_completed and wait replay the order they recorded after a SIGKILL, even
though a replay gets every recorded result back at once, in the order of the calls."""

from __future__ import annotations

from collections import Counter

from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import eventually
from worker_sdk import StepKind, StepStatus


async def test_the_recorded_order_survives_a_sigkill(cluster: ClusterFactory) -> None:
    c = await cluster(lease_ms="500")
    await c.start_worker("w0", SUSPEND_AFTER="never")
    handle = await c.client.start_workflow("e2e.racing", workflow_id="race")

    async def waits_for_go() -> bool:
        steps = await c.client.list_steps("race")
        return any(s.kind is StepKind.RECV and s.status is StepStatus.WAITING for s in steps)

    await eventually(waits_for_go, what="the race over and the recv waiting")
    await c.workers[0].kill()
    await c.start_worker("w1", SUSPEND_AFTER="never")
    await c.client.send("race", "go", topic="go")
    assert await handle.result(timeout=30) == [["fast", "mid", "slow"], ["early"]]
    effects = Counter(e.what for e in c.effects())
    assert effects["order ['fast', 'mid', 'slow'] ['early']"] == 1
    for name in ("slow", "fast", "mid", "early"):
        assert effects[f"racer {name}"] == 1  # recorded before the kill: not run again
