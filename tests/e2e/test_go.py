"""The Go SDK (sdks/go) against a real coordinator on embedded PostgreSQL: Go workers
started, SIGKILLed and replaced as processes, driven by the Python Client, and a Go client
starting a Python workflow. The Go programs are built once per session (golang.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import ClusterFactory, WorkerFactory
from tests.e2e.golang import build, run_go_client, start_go_worker
from tests.e2e.processes import Process, eventually, read_effects
from worker_sdk import (
    Client,
    StepKind,
    StepStatus,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStatus,
)

GoWorkerFactory = Callable[..., Awaitable[Process]]


@pytest.fixture(scope="session")
def go_binaries() -> Iterator[Path]:
    out = Path(tempfile.mkdtemp(prefix="stepline-go-"))
    yield build(out)
    shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def effects_file(tmp_path: Path) -> Path:
    return tmp_path / "effects.tsv"


@pytest.fixture
async def go_worker(
    address: str, tmp_path: Path, go_binaries: Path, effects_file: Path
) -> AsyncIterator[GoWorkerFactory]:
    """Starts Go worker processes (keyword arguments become environment variables)."""
    started: list[Process] = []

    async def start(**env: str) -> Process:
        name = f"go-{len(started)}"
        env = {"SIDE_EFFECTS": str(effects_file), "WORKER_NAME": name, "SUSPEND_AFTER": "never", **env}
        process = await start_go_worker(go_binaries, address, tmp_path / f"{name}.log", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


def ran(effects_file: Path, workflow_id: str) -> Counter[str]:
    """How often each step ID's body ran."""
    return Counter(e.step_id for e in read_effects(effects_file) if e.workflow_id == workflow_id)


async def succeeded_steps(client: Client, workflow_id: str) -> set[str]:
    return {s.step_id for s in await client.list_steps(workflow_id) if s.status is StepStatus.SUCCEEDED}


async def step_in(client: Client, workflow_id: str, kind: StepKind, status: StepStatus) -> bool:
    try:
        steps = await client.list_steps(workflow_id)
    except WorkflowNotFoundError:
        return False  # not started yet
    return any(s.kind is kind and s.status is status for s in steps)


async def test_a_go_workflow_started_by_name_from_python_finishes_with_its_steps_recorded(
    client: Client, go_worker: GoWorkerFactory, effects_file: Path
) -> None:
    await go_worker()
    handle = await client.start_workflow("go.greet", {"name": "ada"}, workflow_id="g")
    assert await handle.result(timeout=30) == {"greeting": "HELLO ADA", "workflow": "g"}
    steps = await client.list_steps("g")
    assert [(s.step_id, s.step_name, s.kind, s.status, s.output) for s in steps] == [
        ("1", "greet.hello", StepKind.STEP, StepStatus.SUCCEEDED, "hello ada"),
        ("2", "greet.shout", StepKind.STEP, StepStatus.SUCCEEDED, "HELLO ADA"),
    ]
    assert ran(effects_file, "g") == Counter({"1": 1, "2": 1})


async def test_fan_out_with_go_helpers_is_deterministic_when_replayed_on_another_worker(
    client: Client, go_worker: GoWorkerFactory, effects_file: Path
) -> None:
    first = await go_worker(STEP_DELAY="0.15")
    handle = await client.start_workflow("go.fanout", 4, workflow_id="fan")
    await eventually(lambda: _at_least(client, "fan", 5), what="some helper steps done")
    await first.kill()
    acked = await succeeded_steps(client, "fan")
    await go_worker(STEP_DELAY="0.15")

    assert await handle.result(timeout=30) == [[f"{i}.{j}-done" for j in range(3)] for i in range(4)]
    steps = {s.step_id: s.step_name for s in await client.list_steps("fan")}
    expected = {"1": "fan.main"} | {f"t{i + 1}/{j + 1}": "fan.part" for i in range(4) for j in range(3)}
    assert steps == expected
    # Each helper's step j is the j-th it called, whatever order the helpers ran in.
    by_id = {e.step_id: e.what for e in read_effects(effects_file) if e.workflow_id == "fan"}
    assert all(by_id[f"t{i + 1}/{j + 1}"] == f"{i}.{j}" for i in range(4) for j in range(3))
    counts = ran(effects_file, "fan")
    assert set(counts) == set(expected)
    assert all(counts[s] == 1 for s in acked), f"acknowledged steps ran again: {counts}"


async def _at_least(client: Client, workflow_id: str, n: int) -> bool:
    return len(await succeeded_steps(client, workflow_id)) >= n


async def test_a_killed_go_worker_s_workflow_is_finished_by_another_with_no_acked_step_run_again(
    client: Client, go_worker: GoWorkerFactory, effects_file: Path
) -> None:
    first = await go_worker(STEP_DELAY="0.2")
    handle = await client.start_workflow("go.sequence", 8, workflow_id="seq")
    await eventually(lambda: _at_least(client, "seq", 3), what="three steps done")
    await first.kill()
    acked = await succeeded_steps(client, "seq")
    await go_worker(STEP_DELAY="0.05")

    assert await handle.result(timeout=30) == [f"s{i}-done" for i in range(8)]
    counts = ran(effects_file, "seq")
    assert set(counts) == {str(i + 1) for i in range(8)}
    assert all(counts[s] == 1 for s in acked), f"acknowledged steps ran again: {counts}"
    # Only a step in flight at the kill may have run twice.
    assert sum(n - 1 for n in counts.values()) <= 1
    info = await client.get_workflow("seq")
    assert info.recovery_attempts == 1


async def test_a_python_workflow_starts_a_child_served_by_the_go_worker_and_uses_its_result(
    client: Client, worker: WorkerFactory, go_worker: GoWorkerFactory, effects_file: Path
) -> None:
    await worker(SERVES="parents", SIDE_EFFECTS=str(effects_file))
    go = await go_worker()
    handle = await client.start_workflow("e2e.parent", 7, workflow_id="p")
    await eventually(
        lambda: step_in(client, "p/2", StepKind.RECV, StepStatus.WAITING), what="the Go child waiting"
    )
    child = await client.get_workflow("p/2")
    assert (child.workflow_name, child.parent_workflow_id, child.owner_worker_id) == (
        "e2e.child",
        "p",
        go.worker_id,
    )
    await client.send("p/2", "go", topic="go")
    assert await handle.result(timeout=30) == ["p/2", 70]
    assert Counter(e.what for e in read_effects(effects_file)) == Counter(
        {"parent began": 1, "parent started its child": 1, "child 7 ran": 1, "parent got the result": 1}
    )


async def test_a_go_client_starts_a_python_workflow_and_awaits_its_result(
    address: str, worker: WorkerFactory, go_binaries: Path, effects_file: Path
) -> None:
    await worker(SIDE_EFFECTS=str(effects_file))
    outcome = await run_go_client(go_binaries, address, "sequence", [3], "py-seq")
    assert outcome == {"workflow_id": "py-seq", "output": ["s0-done", "s1-done", "s2-done"]}
    assert ran(effects_file, "py-seq") == Counter({"1": 1, "2": 1, "3": 1})


async def test_a_go_client_sees_a_go_workflow_s_recorded_error_after_its_step_retries(
    address: str, client: Client, go_worker: GoWorkerFactory, go_binaries: Path, effects_file: Path
) -> None:
    await go_worker()
    outcome = await run_go_client(go_binaries, address, "go.retrying", [], "r")
    assert outcome == {
        "workflow_id": "r",
        "status": "FAILED",
        "error_type": "test.Declined",
        "error_message": "declined: card succeeded on attempt 3",
    }
    flaky, charge = await client.list_steps("r")
    assert (flaky.attempts, flaky.status, charge.attempts, charge.status) == (
        3,
        StepStatus.SUCCEEDED,
        1,
        StepStatus.FAILED,
    )
    assert [e.what for e in read_effects(effects_file)] == ["attempt 1", "attempt 2", "attempt 3", "charge"]


async def test_sleep_recv_and_events_survive_go_worker_kills_and_suspension(
    client: Client, go_worker: GoWorkerFactory, effects_file: Path
) -> None:
    first = await go_worker()
    handle = await client.start_workflow("go.waits", 1.5, workflow_id="w")
    await eventually(lambda: step_in(client, "w", StepKind.SLEEP, StepStatus.WAITING), what="the sleep")
    await first.kill()
    # The second worker suspends the workflow as soon as it only waits.
    second = await go_worker(SUSPEND_AFTER="0")
    await eventually(lambda: step_in(client, "w", StepKind.RECV, StepStatus.WAITING), what="the recv")
    assert await client.get_event("w", "phase", timeout=10) == "slept"
    await eventually(lambda: _suspended(client, "w"), what="the workflow suspended")
    await second.kill()
    await client.send("w", "hi", topic="go")  # while no worker is alive
    await go_worker(SUSPEND_AFTER="0")

    assert await handle.result(timeout=30) == {"message": "hi", "second_recv_found": False}
    steps = await client.list_steps("w")
    assert [(s.step_id, s.kind) for s in steps] == [
        ("1", StepKind.STEP),
        ("2", StepKind.SLEEP),
        ("3", StepKind.SET_EVENT),
        ("4", StepKind.RECV),
        ("5", StepKind.RECV),
        ("6", StepKind.STEP),
    ]
    assert steps[4].timed_out
    assert not steps[3].timed_out
    assert steps[1].wake_at is not None
    assert steps[1].started_at is not None
    assert abs((steps[1].wake_at - steps[1].started_at).total_seconds() - 1.5) < 0.2
    assert Counter(e.what for e in read_effects(effects_file)) == Counter({"before": 1, "got hi": 1})


async def _suspended(client: Client, workflow_id: str) -> bool:
    return (await client.get_workflow(workflow_id)).suspended


async def test_code_changed_between_runs_pauses_the_run_with_a_non_determinism_error(
    client: Client, go_worker: GoWorkerFactory
) -> None:
    first = await go_worker(VARIANT="a")
    await client.start_workflow("go.evolving", workflow_id="e")
    await eventually(lambda: _at_least(client, "e", 1), what="alpha recorded")
    await eventually(lambda: step_in(client, "e", StepKind.STEP, StepStatus.RUNNING), what="hang running")
    await first.kill()
    await go_worker(VARIANT="b")

    async def paused() -> bool:
        return (await client.get_workflow("e")).status is WorkflowStatus.PAUSED

    await eventually(paused, what="the run paused")
    info = await client.get_workflow("e")
    assert info.error is not None
    assert info.error.type == "stepline.NonDeterminismError"
    assert all(word in info.error.message for word in ('"1"', "alpha", "beta")), info.error.message


async def test_a_step_called_from_a_goroutine_without_a_scope_fails_the_workflow(
    client: Client, go_worker: GoWorkerFactory
) -> None:
    await go_worker()
    handle = await client.start_workflow("go.misuse", workflow_id="m")
    with pytest.raises(WorkflowFailedError) as failure:
        await handle.result(timeout=30)
    assert failure.value.error_type == "stepline.ScopeError"
    assert await client.list_steps("m") == []


async def test_a_go_worker_reconnects_to_a_restarted_coordinator_and_finishes_what_it_holds(
    cluster: ClusterFactory, tmp_path: Path, go_binaries: Path, effects_file: Path
) -> None:
    c = await cluster(lease_ms="2000")
    env = {
        "SIDE_EFFECTS": str(effects_file),
        "WORKER_NAME": "go",
        "SUSPEND_AFTER": "never",
        "STEP_DELAY": "0.3",
    }
    go = await start_go_worker(go_binaries, c.address, tmp_path / "go.log", **env)
    try:
        handle = await c.client.start_workflow("go.sequence", 6, workflow_id="rc")
        await eventually(lambda: _at_least(c.client, "rc", 2), what="two steps done")
        await c.kill_coordinator()
        await c.start_coordinator()
        assert await handle.result(timeout=30) == [f"s{i}-done" for i in range(6)]
        counts = ran(effects_file, "rc")
        assert set(counts) == {str(i + 1) for i in range(6)}
        assert sum(n - 1 for n in counts.values()) <= 1
        assert {s.worker_id for s in await c.client.list_steps("rc")} == {go.worker_id}
    finally:
        await go.kill()


def test_the_go_unit_tests_pass() -> None:
    """The SDK's own `go test ./...` (step IDs, retry policy, conversions), run by `./dev test` too."""
    import subprocess

    from tests.e2e.golang import GO_MODULE

    done = subprocess.run(["go", "test", "./..."], cwd=GO_MODULE, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
