"""`--log-format json`: every coordinator line is one JSON object carrying workflow_id,
step_id, worker_id and epoch; the lines about a lost lease and a stale write name them."""

from __future__ import annotations

import json
from pathlib import Path

from conformance import runner
from tests.e2e.conftest import ClusterFactory
from tests.e2e.test_conformance import PYTHON, SCENARIOS


async def test_json_lines_name_the_worker_workflow_and_epoch(cluster: ClusterFactory, tmp_path: Path) -> None:
    c = await cluster(lease_ms="500", log_format="json")
    # A worker frozen mid-step loses its lease; the one that replaces it finishes; the old
    # one, thawed, writes with its stale epoch and is refused.
    outcome = await runner.run(
        SCENARIOS["stale-epoch"],
        "normal",
        PYTHON,
        client=c.client,
        address=c.address,
        directory=tmp_path,
    )
    assert outcome.passed, str(outcome)
    assert c.coordinator is not None
    await c.coordinator.stop()

    lines = [json.loads(line) for line in c.coordinator_log.read_text().splitlines() if line.strip()]
    assert lines, "the coordinator logged nothing"
    for doc in lines:
        assert {"time", "level", "logger", "message", "workflow_id", "step_id", "worker_id", "epoch"} <= set(
            doc
        )
    connected = [d["worker_id"] for d in lines if " connected (" in d["message"]]
    assert len(connected) == 2, lines
    assert all(connected), "a connect line without its worker ID"
    expired = [d["worker_id"] for d in lines if "lease expired" in d["message"]]
    assert expired, lines
    assert set(expired) == {connected[0]}, "the frozen (first) worker's lease lines name it"
