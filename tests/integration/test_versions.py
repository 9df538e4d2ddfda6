"""Worker versions through a real coordinator and PostgreSQL, with workers in this process:
what each run records, who may take it, auto-upgrade with patched, counts by version."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import pytest
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc

from tests.e2e.processes import eventually
from tests.e2e.test_cli import run as stepline_command
from tests.ids import unique
from worker_sdk import Client, Worker, WorkflowCount, WorkflowStatus, patched, recv, step, workflow
from worker_sdk._build import derive_version
from worker_sdk._definitions import WorkflowDefinition

ran: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    ran.clear()


@step()
async def old_way() -> str:
    ran["old"] += 1
    return "old"


@step()
async def new_way() -> str:
    ran["new"] += 1
    return "new"


@workflow(name="versions.flow")
async def flow() -> list[str]:
    """The first release."""
    middle = await old_way()
    return [middle, await recv("go")]


@workflow(name="versions.flow", auto_upgrade=True)
async def upgraded_flow() -> list[str]:
    """The next one: a new step where the old one was, behind a patch marker."""
    middle = await (new_way() if await patched("new-way") else old_way())
    return [middle, await recv("go")]


async def test_a_run_records_its_first_workers_version_and_only_that_version_takes_it(
    address: str, client: Client
) -> None:
    workflow_id = unique("pinned")
    async with Worker(address, workflows=[flow], version="v1", suspend_after=0) as v1:
        handle = await client.start_workflow(flow, workflow_id=workflow_id)
        await eventually(lambda: _suspended(client, workflow_id), what="the run suspended on v1")
    assert (await client.get_workflow(workflow_id)).version == "v1"
    listed, _ = await client.list_workflows(name="versions.flow", version="v1")
    assert [w.workflow_id for w in listed] == [workflow_id]
    assert await client.list_workflows(name="versions.flow", version="v2") == ([], "")

    async with Worker(address, workflows=[flow], version="v2") as v2:
        await client.send(workflow_id, "go", topic="go")  # wakes it: nobody of v1 is there
        other = await client.start_workflow(flow, workflow_id=unique("fresh"))
        await client.send(other.workflow_id, "go", topic="go")
        assert await other.result(timeout=10) == ["old", "go"]  # v2 serves, and looked at it
        assert (await client.get_workflow(workflow_id)).owner_worker_id is None
        assert (await client.get_workflow(other.workflow_id)).version == "v2"
        counts = await client.count_workflows(["version"], name="versions.flow")
        assert counts == [WorkflowCount(1, version="v1")]
    async with Worker(address, workflows=[flow], version=v1.version):
        assert await handle.result(timeout=10) == ["old", "go"]
    assert v2.version == "v2"
    assert ran == Counter({"old": 2})


async def test_an_auto_upgrading_worker_takes_an_older_run_and_patched_keeps_the_old_path(
    address: str, client: Client
) -> None:
    workflow_id = unique("upgraded")
    async with Worker(address, workflows=[flow], version="v1", suspend_after=0):
        handle = await client.start_workflow(flow, workflow_id=workflow_id)
        await eventually(lambda: _suspended(client, workflow_id), what="the run suspended on v1")
    async with Worker(address, workflows=[upgraded_flow], version="v2"):
        await client.send(workflow_id, "go", topic="go")
        # patched answers false: the history holds the old step where the new one would be.
        assert await handle.result(timeout=10) == ["old", "go"]
        fresh = await client.start_workflow(upgraded_flow, workflow_id=unique("fresh"))
        await client.send(fresh.workflow_id, "go", topic="go")
        assert await fresh.result(timeout=10) == ["new", "go"]
    assert ran == Counter({"old": 1, "new": 1})  # the old step did not run again
    # The upgrade moved it: from its wake-up on, it ran as v2.
    assert (await client.get_workflow(workflow_id)).version == "v2"
    assert "patch:new-way" not in {s.step_id for s in await client.list_steps(workflow_id)}
    steps = {s.step_id: s.step_name for s in await client.list_steps(fresh.workflow_id)}
    assert steps["patch:new-way"] == "stepline.patched"


async def test_an_unversioned_worker_pins_nothing(address: str, client: Client) -> None:
    workflow_id = unique("unpinned")
    async with Worker(address, workflows=[flow], version="", suspend_after=0):
        handle = await client.start_workflow(flow, workflow_id=workflow_id)
        await eventually(lambda: _suspended(client, workflow_id), what="the run suspended")
    assert (await client.get_workflow(workflow_id)).version is None
    async with Worker(address, workflows=[flow], version="v9"):
        await client.send(workflow_id, "go", topic="go")
        assert await handle.result(timeout=10) == ["old", "go"]
    assert (await client.get_workflow(workflow_id)).version == "v9"


async def test_counts_group_by_name_version_and_status(address: str, client: Client) -> None:
    ids = [unique("count") for _ in range(3)]
    async with Worker(address, workflows=[flow], version="v1", suspend_after=0):
        for workflow_id in ids:
            await client.start_workflow(flow, workflow_id=workflow_id)
        await client.send(ids[0], "go", topic="go")
        await client.get_handle(ids[0]).result(timeout=10)
        await eventually(lambda: _suspended(client, *ids[1:]), what="two runs suspended")
    assert await client.count_workflows(["name", "version"]) == [WorkflowCount(2, "versions.flow", "v1")]
    everything = await client.count_workflows(["version", "status"], status=list(WorkflowStatus))
    assert sorted(everything, key=lambda c: c.count) == [
        WorkflowCount(1, version="v1", status=WorkflowStatus.SUCCEEDED),
        WorkflowCount(2, version="v1", status=WorkflowStatus.RUNNING),
    ]
    assert await client.count_workflows([]) == [WorkflowCount(2)]
    with pytest.raises(ValueError, match="cannot count by 'owner'"):
        await client.count_workflows(["owner"])

    # The command operators run before retiring v1's workers.
    code, out = await stepline_command("workflows", "count", "--by", "version", "--address", address)
    assert (code, out.split()) == (0, ["VERSION", "COUNT", "v1", "2"])
    code, out = await stepline_command(
        "workflows", "count", "--by", "name,status", "--json", "--address", address
    )
    assert (code, out.strip()) == (0, '{"name": "versions.flow", "status": "RUNNING", "count": 2}')
    code, out = await stepline_command("workflows", "count", "--by", "owner", "--address", address)
    assert code == 2
    assert "cannot count by owner; choose from name, version, status" in out


async def test_bad_counts_are_invalid_argument(channel: grpc.aio.Channel) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    for request, message in [
        (cpb.CountWorkflowsRequest(group_by=[9]), "unknown group_by field 9"),  # type: ignore[list-item]
        (
            cpb.CountWorkflowsRequest(group_by=[cpb.WORKFLOW_FIELD_NAME, cpb.WORKFLOW_FIELD_NAME]),
            "group_by names name twice",
        ),
        (cpb.CountWorkflowsRequest(statuses=[99]), "unknown workflow status 99"),  # type: ignore[list-item]
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CountWorkflows(request)
        assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_the_default_version_follows_the_workflow_code(tmp_path: Path) -> None:
    here = derive_version([flow.definition])
    assert here == derive_version([flow.definition]) == Worker("x", workflows=[flow]).version
    assert here.startswith("py-")
    assert here != derive_version([flow.definition, WorkflowDefinition("other", flow.definition.fn)])

    def version_of(source: str) -> str:
        path = tmp_path / f"app{abs(hash(source))}.py"
        path.write_text(source)
        namespace: dict[str, object] = {}
        exec(compile(source, str(path), "exec"), namespace)
        return derive_version([WorkflowDefinition("app", namespace["app"])])  # type: ignore[arg-type]

    v1 = version_of("async def app():\n    return 1\n")
    assert v1 == version_of("async def app():\n    return 1\n")  # same code elsewhere: same version
    assert v1 != version_of("async def app():\n    return 2\n")


async def _suspended(client: Client, *workflow_ids: str) -> bool:
    for workflow_id in workflow_ids:
        if not (await client.get_workflow(workflow_id)).suspended:
            return False
    return True
