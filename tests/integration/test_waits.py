"""Durable waits through a real coordinator and PostgreSQL, with workers in this process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from coordinator import server
from tests.e2e.processes import eventually
from tests.ids import unique
from worker_sdk import (
    Client,
    RetryPolicy,
    StepKind,
    StepStatus,
    Worker,
    Workflow,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowStatus,
    get_event,
    recv,
    send,
    set_event,
    sleep,
    sleep_until,
    step,
    workflow,
)

effects: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    effects.clear()


@step()
async def mark(what: str) -> str:
    effects[what] += 1
    return what


@workflow()
async def napper(seconds: float) -> float:
    started = time.monotonic()
    await sleep(seconds)
    return time.monotonic() - started


@workflow()
async def napper_until(at: str) -> str:
    await sleep_until(datetime.fromisoformat(at))
    return "awake"


@workflow()
async def listener(topic: str | None, timeout: float | None) -> Any:
    await mark("before recv")
    return await recv(topic, timeout)


@workflow()
async def two_topics() -> list[Any]:
    a = await recv("a")
    b = await recv("b")
    a2 = await recv("a")
    return [a, b, a2]


@workflow()
async def gathered_recvs() -> list[Any]:
    return list(await asyncio.gather(*(recv("x") for _ in range(4)), *(recv("y") for _ in range(2))))


@workflow()
async def sender(to: str, message: Any) -> str:
    await send(to, message, topic="t")
    await mark("sent")
    return "done"


@workflow()
async def publisher(value: Any) -> str:
    await set_event("status", value)
    await mark("published")
    await recv("finish")
    return "published"


@workflow()
async def watcher(target: str) -> Any:
    return await get_event(target, "status", timeout=30)


@workflow()
async def bad_sender(to: str) -> str:
    try:
        await send(to, "hello")
    except WorkflowNotFoundError as exc:
        return f"not found: {exc}"
    return "sent"


WORKFLOWS: list[Workflow[Any, Any]] = [
    napper,
    napper_until,
    listener,
    two_topics,
    gathered_recvs,
    sender,
    publisher,
    watcher,
    bad_sender,
]


@pytest.fixture
async def worker(address: str) -> Any:
    async with Worker(address, workflows=WORKFLOWS, suspend_after=None) as w:
        yield w


async def steps_of(client: Client, workflow_id: str) -> list[tuple[str, StepKind, StepStatus]]:
    return [(s.step_name, s.kind, s.status) for s in await client.list_steps(workflow_id)]


async def test_sleep_is_recorded_and_lasts_its_time(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(napper, 0.3, workflow_id=unique("nap"))
    slept = await handle.result(timeout=10)
    assert 0.3 <= slept < 1.5
    [nap] = await client.list_steps(handle.workflow_id)
    assert (nap.step_name, nap.kind, nap.status) == ("stepline.sleep", StepKind.SLEEP, StepStatus.SUCCEEDED)
    assert nap.wake_at is not None
    assert nap.started_at is not None
    assert abs((nap.wake_at - nap.started_at).total_seconds() - 0.3) < 0.05


async def test_sleep_until_a_time_in_the_past_returns_at_once(worker: Worker, client: Client) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    handle = await client.start_workflow(napper_until, past, workflow_id=unique("until"))
    assert await handle.result(timeout=10) == "awake"


async def test_a_message_sent_before_recv_is_reached_is_kept(address: str, client: Client) -> None:
    workflow_id = unique("early")
    # No worker yet: the workflow waits ENQUEUED, and the message waits in its mailbox.
    handle = await client.start_workflow(listener, None, None, workflow_id=workflow_id)
    await client.send(workflow_id, {"hello": 1})
    async with Worker(address, workflows=WORKFLOWS, suspend_after=None):
        assert await handle.result(timeout=10) == {"hello": 1}
    assert effects["before recv"] == 1


async def test_messages_are_received_in_order_per_topic(worker: Worker, client: Client) -> None:
    workflow_id = unique("topics")
    handle = await client.start_workflow(two_topics, workflow_id=workflow_id)
    for topic, message in (("a", 1), ("b", 2), ("a", 3)):
        await client.send(workflow_id, message, topic=topic)
    assert await handle.result(timeout=10) == [1, 2, 3]


async def test_concurrent_recvs_take_the_messages_in_step_order_in_one_batch(
    address: str, client: Client
) -> None:
    workflow_id = unique("gathered")
    handle = await client.start_workflow(gathered_recvs, workflow_id=workflow_id)
    for message, topic in (("x0", "x"), ("y0", "y"), ("x1", "x"), ("x2", "x")):
        await client.send(workflow_id, message, topic=topic)

    async def received() -> int:
        steps = await client.list_steps(workflow_id)
        return sum(s.kind is StepKind.RECV and s.status is StepStatus.SUCCEEDED for s in steps)

    async with Worker(address, workflows=WORKFLOWS, suspend_after=None):
        # Six recvs begin together; the four messages waiting go to the first recvs of
        # their topic, in step order, and the two others wait for the next ones.
        await eventually(lambda: _at_least(received, 4), what="the waiting messages received")
        await asyncio.gather(
            client.send(workflow_id, "x3", topic="x"), client.send(workflow_id, "y1", topic="y")
        )
        assert await handle.result(timeout=10) == ["x0", "x1", "x2", "x3", "y0", "y1"]


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_recv_times_out_with_none(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(listener, "nobody", 0.2, workflow_id=unique("timeout"))
    assert await handle.result(timeout=10) is None
    [_, wait] = await client.list_steps(handle.workflow_id)
    assert (wait.kind, wait.status, wait.timed_out, wait.output) == (
        StepKind.RECV,
        StepStatus.SUCCEEDED,
        True,
        None,
    )


async def test_an_idempotency_key_drops_a_second_send(worker: Worker, client: Client) -> None:
    workflow_id = unique("dedupe")
    handle = await client.start_workflow(two_topics, workflow_id=workflow_id)
    await client.send(workflow_id, "first", topic="a", idempotency_key="k1")
    await client.send(workflow_id, "again", topic="a", idempotency_key="k1")
    await client.send(workflow_id, "b", topic="b")
    await client.send(workflow_id, "second", topic="a", idempotency_key="k2")
    assert await handle.result(timeout=10) == ["first", "b", "second"]


async def test_a_workflow_sends_exactly_once(
    worker: Worker, client: Client, conn: asyncpg.Connection
) -> None:
    target = unique("target")
    target_handle = await client.start_workflow(listener, "t", None, workflow_id=target)
    handle = await client.start_workflow(sender, target, {"n": 7}, workflow_id=unique("sender"))
    assert await handle.result(timeout=10) == "done"
    assert await target_handle.result(timeout=10) == {"n": 7}
    assert await conn.fetchval("SELECT count(*) FROM messages") == 1
    first = (await steps_of(client, handle.workflow_id))[0]
    assert first == ("stepline.send", StepKind.SEND, StepStatus.SUCCEEDED)


async def test_sending_to_an_unknown_workflow_fails_the_call(worker: Worker, client: Client) -> None:
    handle = await client.start_workflow(bad_sender, "ghost", workflow_id=unique("bad"))
    assert await handle.result(timeout=10) == "not found: workflow 'ghost' does not exist"
    with pytest.raises(WorkflowNotFoundError, match="'ghost' does not exist"):
        await client.send("ghost", "x")
    finished = await client.start_workflow(napper, 0, workflow_id=unique("done"))
    await finished.result(timeout=10)
    with pytest.raises(WorkflowFinishedError, match="already SUCCEEDED"):
        await client.send(finished.workflow_id, "too late")


async def test_events_reach_clients_and_workflows(worker: Worker, client: Client) -> None:
    target = unique("publisher")
    watching = await client.start_workflow(watcher, target, workflow_id=unique("watcher"))
    # The target does not exist yet: a workflow waits for it; a client is told it is unknown.
    with pytest.raises(WorkflowNotFoundError):
        await client.get_event(target, "status", timeout=0)
    handle = await client.start_workflow(publisher, {"phase": "ready"}, workflow_id=target)
    assert await client.get_event(target, "status", timeout=10) == {"phase": "ready"}
    assert await watching.result(timeout=10) == {"phase": "ready"}
    assert await client.get_event(target, "other", timeout=0.1) is None
    await client.send(target, "go", topic="finish")
    assert await handle.result(timeout=10) == "published"


async def test_a_client_waiting_for_an_event_is_woken_when_it_is_set(worker: Worker, client: Client) -> None:
    target = unique("later")
    handle = await client.start_workflow(listener, "go", None, workflow_id=target)
    waiting = asyncio.create_task(client.get_event(target, "status", timeout=20))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    publisher_id = unique("pub")
    pub = await client.start_workflow(publisher, "set", workflow_id=publisher_id)
    assert await client.get_event(publisher_id, "status", timeout=10) == "set"
    waiting.cancel()
    await client.send(publisher_id, "x", topic="finish")
    await client.send(target, "x", topic="go")
    await pub.result(timeout=10)
    await handle.result(timeout=10)


@workflow()
async def waits_long() -> Any:
    return await recv("go")


async def test_a_suspended_workflow_takes_no_slot_and_wakes_on_a_message(
    address: str, client: Client, conn: asyncpg.Connection
) -> None:
    async with Worker(address, workflows=[waits_long], capacity=1, suspend_after=0):
        ids = [unique("suspended") for _ in range(3)]
        handles = [await client.start_workflow(waits_long, workflow_id=i) for i in ids]

        async def all_suspended() -> bool:
            n = await conn.fetchval("SELECT count(*) FROM workflows WHERE suspended AND owner_id IS NULL")
            return bool(n == 3)

        # Capacity 1, and yet all three reached their recv: waiting takes no slot.
        await eventually(all_suspended, timeout=10, what="three suspended workflows")
        info = await client.get_workflow(ids[0])
        assert (info.status, info.suspended, info.owner_worker_id) == (WorkflowStatus.RUNNING, True, None)
        for n, workflow_id in enumerate(ids):
            await client.send(workflow_id, n, topic="go")
        assert [await h.result(timeout=10) for h in handles] == [0, 1, 2]
        # Handed out again after a suspension is not a recovery.
        assert (await client.get_workflow(ids[0])).recovery_attempts == 0


async def test_a_timeout_ends_a_workflow_with_no_worker_alive(
    client: Client, coordinator: server.Running
) -> None:
    started = time.monotonic()
    handle = await client.start_workflow("nobody-serves-this", workflow_id=unique("late"), timeout=0.5)
    with pytest.raises(WorkflowFailedError, match="WorkflowTimedOutError") as caught:
        await handle.result(timeout=10)
    assert 0.5 <= time.monotonic() - started < 2.0
    info = await handle.info()
    assert info.status is WorkflowStatus.TIMED_OUT
    assert info.deadline is not None
    assert "passed its deadline" in str(caught.value)


attempts: Counter[str] = Counter()


@step(timeout=0.1, retry=RetryPolicy(max_attempts=3, initial_interval=0.01))
async def slow_then_fast(key: str) -> str:
    attempts[key] += 1
    if attempts[key] < 3:
        await asyncio.sleep(5)
    return f"attempt {attempts[key]}"


@workflow()
async def impatient(key: str) -> str:
    return await slow_then_fast(key)


async def test_a_step_attempt_that_runs_out_of_time_fails_and_is_retried(
    address: str, client: Client
) -> None:
    async with Worker(address, workflows=[impatient]):
        key = unique("slow")
        handle = await client.start_workflow(impatient, key, workflow_id=key)
        assert await handle.result(timeout=10) == "attempt 3"
    [s] = await client.list_steps(key)
    assert (s.status, s.attempts) == (StepStatus.SUCCEEDED, 3)
