"""A worker process SIGKILLed mid-workflow; another worker process finishes the workflow."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from opentelemetry import trace

from tests import spans
from tests.e2e.conftest import WorkerFactory
from tests.e2e.processes import eventually, read_effects
from tests.spans import trace_here
from worker_sdk import Client, StepStatus, WorkflowFailedError, WorkflowStatus


def side_effects(path: Path) -> list[tuple[str, str, str]]:
    """(workflow_id, step_id, what) per step body that ran."""
    return [(e.workflow_id, e.step_id, e.what) for e in read_effects(path)]


async def succeeded(client: Client, workflow_id: str) -> int:
    return sum(s.status is StepStatus.SUCCEEDED for s in await client.list_steps(workflow_id))


@pytest.mark.parametrize("same_id", [False, True], ids=["another-worker", "same-worker-id"])
async def test_twenty_steps_resume_on_a_new_worker_and_recorded_steps_never_rerun(
    client: Client, worker: WorkerFactory, tmp_path: Path, same_id: bool
) -> None:
    effects = tmp_path / "effects"
    # The replacement is either a worker of its own or the killed one restarted under its
    # worker ID (the coordinator learns of the death from the closed stream either way).
    ids = {"STEPLINE_WORKER_ID": "restarted"} if same_id else {}
    first = await worker(SIDE_EFFECTS=str(effects), STEP_DELAY="0.05", **ids)
    handle = await client.start_workflow("twenty_steps", "job", workflow_id="twenty")
    await eventually(lambda: succeeded(client, "twenty"), what="a recorded step")
    await eventually(lambda: _at_least(client, "twenty", 5), what="five recorded steps")
    await first.kill()
    recorded_before = {
        s.step_id for s in await client.list_steps("twenty") if s.status is StepStatus.SUCCEEDED
    }
    assert 5 <= len(recorded_before) < 20, "the kill must land mid-workflow"

    second = await worker(SIDE_EFFECTS=str(effects), STEP_DELAY="0.05", **ids)
    assert (second.worker_id == first.worker_id) == same_id
    expected = [f"job-seq-{i}-done" for i in range(10)] + [f"job-par-{i}-done" for i in range(10)]
    assert await handle.result(timeout=60) == expected

    runs = Counter(step_id for _, step_id, _ in side_effects(effects))
    steps = await client.list_steps("twenty")
    assert len(steps) == 20
    assert all(s.status is StepStatus.SUCCEEDED for s in steps)
    for step_id in recorded_before:
        assert runs[step_id] == 1, (
            f"step {step_id} was recorded before the kill but ran {runs[step_id]} times"
        )
    assert all(1 <= runs[s.step_id] <= 2 for s in steps)  # at most the in-flight ones ran twice
    info = await handle.info()
    assert (info.status, info.epoch, info.recovery_attempts) == (WorkflowStatus.SUCCEEDED, 2, 1)


async def _at_least(client: Client, workflow_id: str, n: int) -> bool:
    return await succeeded(client, workflow_id) >= n


@pytest.mark.parametrize("name", ["helpers_gather", "helpers_task_group"])
async def test_helpers_with_random_delays_recover_with_the_same_ids(
    client: Client, worker: WorkerFactory, tmp_path: Path, name: str
) -> None:
    effects = tmp_path / "effects"
    # Steps of 0-0.2 s: the whole workflow takes about a second, so the kill, right after
    # the eighth of thirty steps is recorded, lands mid-way even on a loaded machine.
    first = await worker(SIDE_EFFECTS=str(effects), STEP_DELAY="0.1")
    handle = await client.start_workflow(name, workflow_id=name)
    await eventually(lambda: _at_least(client, name, 8), what="eight recorded steps")
    await first.kill()
    recorded_before = {s.step_id for s in await client.list_steps(name) if s.status is StepStatus.SUCCEEDED}
    assert len(recorded_before) < 30, "the kill must land mid-workflow"

    await worker(SIDE_EFFECTS=str(effects), STEP_DELAY="0.1")
    assert await handle.result(timeout=60) == [[f"{i}.{j}" for j in range(3)] for i in range(10)]

    ids_by_call: dict[str, set[str]] = defaultdict(set)
    for _, step_id, call in side_effects(effects):
        ids_by_call[call].add(step_id)
    # Helper i's j-th call has one ID in every run, and it is the task-scoped one.
    assert dict(ids_by_call) == {f"{i}.{j}": {f"t{i + 1}/{j + 1}"} for i in range(10) for j in range(3)}
    recorded = {s.step_id: s.output for s in await client.list_steps(name)}
    assert recorded == {f"t{i + 1}/{j + 1}": f"{i}.{j}" for i in range(10) for j in range(3)}
    runs = Counter(step_id for _, step_id, _ in side_effects(effects))
    assert all(runs[step_id] == 1 for step_id in recorded_before)


async def test_code_changed_between_runs_pauses_with_a_nondeterminism_error(
    client: Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    effects = tmp_path / "effects"
    first = await worker(SIDE_EFFECTS=str(effects), VARIANT="a")
    handle = await client.start_workflow("evolving", workflow_id="evolving")
    await eventually(lambda: succeeded(client, "evolving"), what="the first step")
    await first.kill()

    await worker(SIDE_EFFECTS=str(effects), VARIANT="b")  # step 1 is now `beta`, not `alpha`
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result(timeout=60)
    failure = caught.value
    assert failure.error_type == "stepline.NonDeterminismError"
    assert "step '1' was recorded as 'alpha' but the code now calls 'beta'" in failure.message
    info = await handle.info()
    assert info.status is WorkflowStatus.PAUSED  # stopped, resumable once the code is fixed
    assert info.error is not None
    assert info.error.type == "stepline.NonDeterminismError"
    steps = await client.list_steps("evolving")
    assert next((s.step_id, s.step_name, s.status) for s in steps) == ("1", "alpha", StepStatus.SUCCEEDED)
    assert [what for _, _, what in side_effects(effects)] == ["alpha"], "nothing ran after the mismatch"


async def test_a_recovered_workflow_continues_its_trace(
    client: Client, worker: WorkerFactory, tmp_path: Path
) -> None:
    exporter = trace_here()
    spans_file = tmp_path / "spans.jsonl"
    env = {
        "SIDE_EFFECTS": str(tmp_path / "effects"),
        "STEP_DELAY": "0.05",
        "STEPLINE_TEST_SPANS": str(spans_file),
    }
    first = await worker(**env)
    with trace.get_tracer("test").start_as_current_span("the caller") as caller:
        handle = await client.start_workflow("twenty_steps", "job", workflow_id="traced")
    await eventually(lambda: _at_least(client, "traced", 5), what="five recorded steps")
    await first.kill()
    second = await worker(**env)
    await handle.result(timeout=60)
    await second.stop()

    trace_id = caller.get_span_context().trace_id
    mine = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    assert sorted(s.name for s in mine) == ["stepline.start_workflow twenty_steps", "the caller"]
    exported = spans.read(spans_file)
    assert {s["trace_id"] for s in exported} == {trace_id}, "both executions continue the caller's trace"
    steps_by_process = Counter(s["pid"] for s in exported if s["name"] == "stepline.step record")
    assert set(steps_by_process) == {first.pid, second.pid}
    # The killed execution never ended its span; the recovery's did, as epoch 2.
    (execution,) = [s for s in exported if s["name"] == "stepline.workflow twenty_steps"]
    assert (execution["pid"], execution["attributes"]["epoch"]) == (second.pid, 2)
    assert execution["attributes"]["recovery_attempt"] == 1
