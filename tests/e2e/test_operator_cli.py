"""`stepline workflows list|show` and `stepline workers list` as an operator runs them,
against a live coordinator and a worker process."""

from __future__ import annotations

import json

from tests.e2e.cluster import Cluster
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import eventually
from tests.e2e.test_cli import run
from worker_sdk import StepStatus


async def stepline(c: Cluster, *args: str) -> tuple[int, str]:
    return await run(*args, "--address", c.address)


async def test_workflows_list_and_show_tell_what_ran_and_where(cluster: ClusterFactory) -> None:
    c = await cluster()
    worker = await c.start_worker("w0", STEPLINE_WORKER_VERSION="build-7")
    done = await c.client.start_workflow("helpers_gather", workflow_id="gathered")
    await done.result(timeout=30)
    await c.client.start_workflow("inbox", 1, "m", workflow_id="waiting")
    await eventually(lambda: _waiting(c, "waiting"), what="the recv")

    code, out = await stepline(c, "workflows", "list")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["WORKFLOW", "ID", "NAME", "STATUS", "VERSION", "CREATED", "WORKER"]
    assert lines[1].split()[:4] == ["waiting", "inbox", "RUNNING", "build-7"]  # newest first
    assert lines[1].split()[-1] == worker.worker_id
    assert lines[2].split()[:4] == ["gathered", "helpers_gather", "SUCCEEDED", "build-7"]

    code, out = await stepline(c, "workflows", "list", "--status", "succeeded", "--json")
    assert code == 0, out
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(w["workflow_id"], w["status"], w["version"]) for w in listed] == [
        ("gathered", "SUCCEEDED", "build-7")
    ]

    code, out = await stepline(c, "workflows", "show", "gathered")
    assert code == 0, out
    assert "status:    SUCCEEDED" in out
    assert "steps:     30" in out
    # The tree: each helper's scope, then its three steps under it.
    scope = out.splitlines().index("  t1/  (concurrent scope)")
    assert [line.split()[0] for line in out.splitlines()[scope + 1 : scope + 4]] == ["t1/1", "t1/2", "t1/3"]
    assert f"({worker.worker_id}, epoch 1)" in out

    code, out = await stepline(c, "workflows", "show", "gathered", "--json")
    doc = json.loads(out)
    assert (doc["status"], len(doc["steps"]), doc["steps"][0]["status"]) == ("SUCCEEDED", 30, "SUCCEEDED")

    code, out = await stepline(c, "workflows", "show", "nobody")
    assert code == 1
    assert "workflow 'nobody' does not exist" in out

    code, out = await stepline(c, "workflows", "list", "--status", "sleepy")
    assert (code, "unknown status sleepy" in out) == (2, True), out


async def test_workers_list_shows_language_version_load_and_heartbeat(cluster: ClusterFactory) -> None:
    c = await cluster()
    worker = await c.start_worker("w0", STEPLINE_WORKER_VERSION="build-7", CAPACITY="8")
    await c.client.start_workflow("inbox", 1, "m", workflow_id="held")
    await eventually(lambda: _waiting(c, "held"), what="the recv")

    code, out = await stepline(c, "workers", "list")
    assert code == 0, out
    header, row = out.splitlines()
    assert header.split() == ["WORKER", "ID", "LANGUAGE", "VERSION", "IN", "FLIGHT", "HEARD", "SERVES"]
    cells = row.split()
    assert cells[:5] == [worker.worker_id, "python", "0.1.0", "build-7", "1/8"]

    code, out = await stepline(c, "workers", "list", "--json")
    doc = json.loads(out)
    assert (doc["worker_id"], doc["local"], doc["in_flight"], doc["capacity"]) == (
        worker.worker_id,
        True,
        1,
        8,
    )
    assert "inbox" in doc["workflow_names"]
    assert 0 <= doc["heartbeat_age_s"] < 10

    await worker.kill()
    await c.kill_coordinator()
    code, out = await stepline(c, "workers", "list")
    assert code == 2
    assert "stepline workers list:" in out


async def _waiting(c: Cluster, workflow_id: str) -> bool:
    return any(s.status is StepStatus.WAITING for s in await c.client.list_steps(workflow_id))
