"""e2e: the TypeScript SDK (sdks/typescript) against a real coordinator on PostgreSQL.

The TS worker is sdks/typescript/test/programs/worker.ts and the TS client program
test/programs/client.ts; both run as node processes (built by the session fixture).
Python workers (tests/e2e/programs) run next to them where languages meet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ClusterFactory, WorkerFactory
from tests.e2e.processes import Process, eventually, read_effects, spawn, start_coordinator
from tests.e2e.typescript import build, run_ts_client, start_ts_worker
from worker_sdk import Client
from worker_sdk._models import StepStatus, WorkflowStatus
from worker_sdk.errors import WorkflowFailedError


@pytest.fixture(scope="session", autouse=True)
def built() -> None:
    build()


class TsWorkers:
    """TS worker processes of one test, writing their effects to one file."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.address = address
        self.tmp_path = tmp_path
        self.started: list[Process] = []

    async def __call__(self, **env: str) -> Process:
        """Starts one (keyword arguments become environment variables)."""
        n = len(self.started)
        env = {"SIDE_EFFECTS": str(self.tmp_path / "effects.tsv"), "WORKER_NAME": f"ts-{n}", **env}
        process = await start_ts_worker(self.address, self.tmp_path / f"ts-worker-{n}.log", **env)
        self.started.append(process)
        return process

    async def kill_all(self) -> None:
        for process in self.started:
            await process.kill()


@pytest.fixture
async def ts_worker(address: str, tmp_path: Path) -> AsyncIterator[TsWorkers]:
    workers = TsWorkers(address, tmp_path)
    yield workers
    await workers.kill_all()


async def step_ids(client: Client, workflow_id: str) -> list[tuple[str, str, StepStatus]]:
    return [(s.step_id, s.step_name, s.status) for s in await client.list_steps(workflow_id)]


async def test_workflow_started_by_name_from_python(
    client: Client, ts_worker: TsWorkers, tmp_path: Path
) -> None:
    await ts_worker()
    handle = await client.start_workflow("ts.greet", "bob", workflow_id="greet-1")
    assert await handle.result(timeout=20) == {
        "greeting": "hello bob",
        "shout": "HELLO BOB",
        "workflowId": "greet-1",
    }
    assert await step_ids(client, "greet-1") == [
        ("1", "greet", StepStatus.SUCCEEDED),
        ("2", "shout", StepStatus.SUCCEEDED),
    ]
    assert [e.what for e in read_effects(tmp_path / "effects.tsv")] == ["greet bob"]
    # Retries per the step's policy, and a failure recorded with its type.
    assert await (await client.start_workflow("ts.flaky", 2)).result(timeout=20) == 3
    failing = await client.start_workflow("ts.fails")
    with pytest.raises(WorkflowFailedError) as failed:
        await failing.result(timeout=20)
    assert (failed.value.error_type, failed.value.message) == ("TypeError", "no such thing")


async def test_fan_out_and_scopes_take_python_shaped_ids(client: Client, ts_worker: TsWorkers) -> None:
    await ts_worker()
    handle = await client.start_workflow("ts.fanout", 3, workflow_id="fan-1")
    assert await handle.result(timeout=20) == {
        "squares": [0, 1, 4],
        "helpers": [[f"{i}.{j}" for j in range(3)] for i in range(3)],
        "nested": ["a", "b"],
    }
    ids = sorted(s[0] for s in await step_ids(client, "fan-1"))
    expected = ["1", "2", "3", *(f"t{i}/{j}" for i in (1, 2, 3) for j in (1, 2, 3)), "t4/t1/1", "t4/t2/1"]
    assert ids == sorted(expected)


async def test_killed_worker_is_replaced_and_no_acknowledged_step_runs_again(
    client: Client, ts_worker: TsWorkers, tmp_path: Path
) -> None:
    """Promise.all of helpers that each await several steps, SIGKILLed mid-way: the second
    worker replays what was recorded (same IDs, no non-determinism) and runs the rest."""
    effects = tmp_path / "effects.tsv"
    first = await ts_worker(STEP_DELAY="0.15")
    handle = await client.start_workflow("ts.helpers", "k", workflow_id="helpers-1")

    async def some_done() -> bool:
        return sum(s[2] is StepStatus.SUCCEEDED for s in await step_ids(client, "helpers-1")) >= 5

    await eventually(some_done, timeout=20, what="five recorded steps")
    await first.kill()
    acked = {s[0] for s in await step_ids(client, "helpers-1") if s[2] is StepStatus.SUCCEEDED}
    await ts_worker(STEP_DELAY="0.15")
    result = await handle.result(timeout=30)
    assert result == {
        "first": "k-first-done",
        "helpers": [[f"{i}.{j}" for j in range(3)] for i in range(4)],
        "last": "k-last-done",
    }
    assert (await handle.status()) is WorkflowStatus.SUCCEEDED
    runs = Counter(e.step_id for e in read_effects(effects))
    assert all(runs[step_id] == 1 for step_id in acked), runs
    assert {e.step_id for e in read_effects(effects) if e.worker == "ts-1"}.isdisjoint(acked)
    assert len(runs) == 14  # every step ran: "1", t1..t4 x 3, "6"


async def test_sleep_recv_and_events_survive_worker_kills(
    client: Client, ts_worker: TsWorkers, tmp_path: Path
) -> None:
    await ts_worker(SLEEP_MS="1500", SUSPEND_AFTER="never")
    answer = await client.start_workflow("ts.answer", workflow_id="answerer")
    assert await answer.result(timeout=20) is None
    handle = await client.start_workflow("ts.waits", "answerer", workflow_id="waits-1")

    async def sleeping() -> bool:
        return any(s[1] == "stepline.sleep" for s in await step_ids(client, "waits-1"))

    await eventually(sleeping, timeout=20, what="the sleep")
    # Kill the worker mid-sleep; the next one replays "before", sleeps only what is left
    # of the sleep, and goes on to the recv.
    await ts_worker.kill_all()
    await ts_worker(SLEEP_MS="1500", SUSPEND_AFTER="never")

    async def receiving() -> bool:
        return any(s[1] == "stepline.recv" for s in await step_ids(client, "waits-1"))

    await eventually(receiving, timeout=20, what="the recv")
    await ts_worker.kill_all()
    await client.send("waits-1", {"n": 7}, topic="inbox")  # no worker at all now
    await ts_worker(SUSPEND_AFTER="0")  # suspends every wait at once
    assert await client.get_event("waits-1", "progress", timeout=20) == {"got": {"n": 7}}
    assert await handle.result(timeout=30) == {
        "message": {"n": 7},
        "answer": "42",
        "missing": None,
        "at": True,
    }
    runs = Counter(e.what for e in read_effects(tmp_path / "effects.tsv") if e.workflow_id == "waits-1")
    assert runs == {"before": 1, "slept": 1, "after": 1}
    kinds = [s[1] for s in await step_ids(client, "waits-1")]
    assert kinds.count("stepline.sleep") == 1
    assert kinds.count("stepline.recv") == 2


async def test_code_changed_between_runs_is_reported_as_non_determinism(
    client: Client, ts_worker: TsWorkers
) -> None:
    first = await ts_worker(VARIANT="a", SUSPEND_AFTER="never")
    handle = await client.start_workflow("ts.variant", workflow_id="variant-1")

    async def waiting() -> bool:
        return any(s[1] == "stepline.recv" for s in await step_ids(client, "variant-1"))

    await eventually(waiting, timeout=20, what="the recv")
    await first.kill()
    await ts_worker(VARIANT="b")

    async def paused() -> bool:
        return (await handle.status()) is WorkflowStatus.PAUSED

    await eventually(paused, timeout=20, what="PAUSED")
    info = await handle.info()
    assert info.error is not None
    assert info.error.type == "stepline.NonDeterminismError"
    assert "'1'" in info.error.message
    assert "'original'" in info.error.message
    assert "'renamed'" in info.error.message
    # The replay did not run the renamed step.
    assert [s[1] for s in await step_ids(client, "variant-1")] == ["original", "stepline.recv"]


async def test_python_parent_starts_a_child_served_by_typescript(
    client: Client, address: str, ts_worker: TsWorkers, tmp_path: Path
) -> None:
    await ts_worker()
    parents, _ = await spawn(
        ["-m", "tests.e2e.programs.ts_parents"],
        tmp_path / "parents.log",
        {"STEPLINE_ADDRESS": address},
        "worker ready",
    )
    try:
        handle = await client.start_workflow("e2e.ts_parent", 21, workflow_id="py-parent")
        child_id, result = await handle.result(timeout=30)
        assert child_id == "py-parent/1"
        assert result == {"doubled": 42, "parent": "py-parent/1"}
        child = await client.get_workflow(child_id)
        assert (child.parent_workflow_id, child.status) == ("py-parent", WorkflowStatus.SUCCEEDED)
    finally:
        await parents.kill()


async def test_typescript_client_against_typescript_and_python_workflows(
    address: str, ts_worker: TsWorkers, worker: WorkerFactory, tmp_path: Path
) -> None:
    await ts_worker()
    await worker(SIDE_EFFECTS=str(tmp_path / "py-effects.tsv"))
    seen = await run_ts_client(address, "tour")
    assert seen["output"] == {"greeting": "hello ada", "shout": "HELLO ADA", "workflowId": "tour-greet"}
    assert seen["created"] == [True, False]
    assert seen["steps"] == [["1", "greet", "SUCCEEDED", "STEP"], ["2", "shout", "SUCCEEDED", "STEP"]]
    assert [w["id"] for w in seen["listed"]] == ["tour-greet"]
    assert seen["listed"][0]["input"] == {"args": ["ada"], "kwargs": {}}
    assert seen["failed"] == {
        "name": "WorkflowFailedError",
        "status": "FAILED",
        "errorType": "TypeError",
        "errorMessage": "no such thing",
    }
    assert seen["notFound"]["name"] == "WorkflowNotFoundError"
    assert seen["conflict"]["name"] == "WorkflowConflictError"
    assert seen["finished"]["name"] == "WorkflowFinishedError"
    assert seen["python"] == [f"tour-seq-{i}-done" for i in range(10)] + [
        f"tour-par-{i}-done" for i in range(10)
    ]
    assert seen["pythonFailure"]["errorType"] == "builtins.TypeError"
    assert seen["parent"]["python"] == 30
    assert seen["parent"]["ts"] == 6
    assert seen["cancelled"][1] == "CANCELLED"
    assert seen["cancelledResult"]["errorType"] == "stepline.WorkflowCancelledError"
    assert seen["timeout"]["name"] == "ResultTimeoutError"
    assert seen["noEvent"] is None
    assert seen["badInput"]["name"] == "SerializationError"
    assert seen["sendToFinished"]["errorType"] == "stepline.WorkflowFinishedError"


async def test_api_key(database_url: str, tmp_path: Path) -> None:
    process, address = await start_coordinator(database_url, tmp_path / "auth.log", api_key="sesame")
    try:
        seen = await run_ts_client(address, "auth", STEPLINE_TEST_KEY="sesame", STEPLINE_API_KEY="")
    finally:
        await process.stop()
    assert seen["without"]["name"] == "AuthenticationError"
    assert seen["wrong"]["name"] == "AuthenticationError"
    assert seen["right"] == 0
    assert seen["workerWrong"]["name"] == "AuthenticationError"


async def test_worker_reconnects_to_a_restarted_coordinator(cluster: ClusterFactory, tmp_path: Path) -> None:
    """The coordinator is SIGKILLed mid-workflow and restarted on the same port: the TS
    worker reconnects (with backoff), registers what it still holds, resends what was not
    acknowledged, and finishes the workflow; no acknowledged step runs again."""
    c = await cluster()
    workers = TsWorkers(c.address, tmp_path)
    await workers(STEP_DELAY="0.1")
    try:
        async with Client(c.address) as client:
            await client.start_workflow("ts.helpers", "r", workflow_id="reconnect-1")

            async def some_done() -> bool:
                return sum(s[2] is StepStatus.SUCCEEDED for s in await step_ids(client, "reconnect-1")) >= 4

            await eventually(some_done, timeout=20, what="four recorded steps")
            acked = {s[0] for s in await step_ids(client, "reconnect-1") if s[2] is StepStatus.SUCCEEDED}
        await c.kill_coordinator()
        await c.start_coordinator()
        async with Client(c.address) as client:
            result = await client.get_handle("reconnect-1").result(timeout=30)
            assert result["last"] == "r-last-done"
        runs = Counter(e.step_id for e in read_effects(tmp_path / "effects.tsv"))
        assert all(runs[step_id] == 1 for step_id in acked), runs
        assert len(runs) == 14
    finally:
        await workers.kill_all()


def test_the_typescript_unit_tests_pass() -> None:
    """The SDK's own node:test suite (step IDs, retries, conversions), run by `./dev test` too."""
    import subprocess

    from tests.e2e.typescript import TS

    unit = sorted(str(p.relative_to(TS)) for p in (TS / "dist" / "test" / "unit").glob("*.test.js"))
    assert unit, "the build made no unit tests"
    done = subprocess.run(["node", "--test", *unit], cwd=TS, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
