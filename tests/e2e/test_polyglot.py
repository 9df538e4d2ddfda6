"""One Python workflow, two children: one served by the TypeScript worker, one by the Go
worker, their results used by the parent; each child recorded as the parent's."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.e2e.golang import build as build_go
from tests.e2e.golang import start_go_worker
from tests.e2e.processes import read_effects, spawn
from tests.e2e.typescript import build as build_ts
from tests.e2e.typescript import start_ts_worker
from worker_sdk import Client, WorkflowStatus


async def test_a_python_parent_uses_a_typescript_child_and_a_go_child(
    client: Client, address: str, tmp_path: Path
) -> None:
    build_ts()
    binaries = build_go(Path(tempfile.mkdtemp(prefix="stepline-go-")))
    effects = str(tmp_path / "effects.tsv")
    started = [
        await start_ts_worker(address, tmp_path / "ts.log", SIDE_EFFECTS=effects, WORKER_NAME="ts"),
        await start_go_worker(binaries, address, tmp_path / "go.log", SIDE_EFFECTS=effects, WORKER_NAME="go"),
    ]
    parents, _ = await spawn(
        ["-m", "tests.e2e.programs.polyglot"],
        tmp_path / "py.log",
        {"STEPLINE_ADDRESS": address},
        "worker ready",
    )
    started.append(parents)
    try:
        handle = await client.start_workflow("e2e.polyglot_parent", 21, "polyglot", workflow_id="poly")
        result = await handle.result(timeout=60)
    finally:
        for process in started:
            await process.kill()
        shutil.rmtree(binaries, ignore_errors=True)
    assert result["ts"] == {"doubled": 42, "parent": "poly/1"}
    assert result["go"] == {"greeting": "HELLO POLYGLOT", "workflow": "poly/2"}
    assert result["both"] == "HELLO POLYGLOT x42"
    assert result["children"] == ["poly/1", "poly/2"]
    for child_id in result["children"]:
        child = await client.get_workflow(child_id)
        assert (child.parent_workflow_id, child.status) == ("poly", WorkflowStatus.SUCCEEDED)
    languages = {e.worker for e in read_effects(Path(effects))}
    assert languages == {"ts", "go"}, "each child's step ran in its own language's worker"
