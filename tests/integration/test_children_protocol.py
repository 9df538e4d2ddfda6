"""Child workflows driven through the generated stubs alone (no SDK on the worker side):
StartChild and a Wait on a WorkflowCondition, as a worker in another language sends them."""

from __future__ import annotations

import grpc
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import common_pb2 as pb
from stepline.v1 import worker_pb2 as wpb

from tests.protocol import RawWorker, workflow_output


def start_child(parent: str, step_id: str, child: str, name: str = "child") -> wpb.WorkerEvent:
    return wpb.WorkerEvent(
        start_child=wpb.StartChild(
            workflow_id=parent,
            epoch=1,
            step_id=step_id,
            child_workflow_id=child,
            workflow_name=name,
            input=pb.Payload(data=b'{"args": [1], "kwargs": {}}', encoding="json"),
        )
    )


def await_workflow(parent: str, step_id: str, target: str) -> wpb.WorkerEvent:
    condition = wpb.WorkflowCondition(workflow_id=target)
    return wpb.WorkerEvent(wait=wpb.Wait(workflow_id=parent, epoch=1, step_id=step_id, workflow=condition))


async def test_a_child_is_started_once_and_its_outcome_ends_the_parents_wait(
    channel: grpc.aio.Channel,
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    parents = RawWorker(channel, "parents", names=["parent"])
    children = RawWorker(channel, "children", names=["child"])
    await parents.register()
    await children.register()
    await stub.StartWorkflow(cpb.StartWorkflowRequest(workflow_name="parent", workflow_id="p"))
    assert (await parents.next_of("assignment")).assignment.workflow_id == "p"

    await parents.send(start_child("p", "1", "p/1"))
    done = (await parents.next_of("step_done")).step_done
    assert (done.step_id, done.output.data) == ("1", b'"p/1"')  # the child's ID
    assignment = (await children.next_of("assignment")).assignment
    assert (assignment.workflow_id, assignment.workflow_name, assignment.input.data) == (
        "p/1",
        "child",
        b'{"args": [1], "kwargs": {}}',
    )
    info = (await stub.GetWorkflow(cpb.GetWorkflowRequest(workflow_id="p/1"))).workflow
    assert (info.parent_workflow_id, info.parent_step_id) == ("p", "1")

    # Sent again (a replay): answered from the record, no second child.
    await parents.send(start_child("p", "1", "p/1"))
    assert (await parents.next_of("step_done")).step_done.step_id == "1"
    listed = await stub.ListWorkflows(cpb.ListWorkflowsRequest(workflow_name="child"))
    assert [w.workflow_id for w in listed.workflows] == ["p/1"]

    await parents.send(await_workflow("p", "2", "p/1"))
    await children.send(workflow_output("p/1", b"10"))
    done = (await parents.next_of("step_done")).step_done
    assert (done.step_id, done.output.data) == ("2", b"10")
    steps = (await stub.ListSteps(cpb.ListStepsRequest(workflow_id="p"))).steps
    assert sorted((s.step_id, s.kind, s.status) for s in steps) == [
        ("1", pb.STEP_KIND_START_CHILD, pb.STEP_STATUS_SUCCEEDED),
        ("2", pb.STEP_KIND_AWAIT_WORKFLOW, pb.STEP_STATUS_SUCCEEDED),
    ]
    parents.close()
    children.close()


async def test_a_failed_child_fails_the_wait_with_its_error_and_a_self_wait_is_rejected(
    channel: grpc.aio.Channel,
) -> None:
    stub = cpb_grpc.WorkflowServiceStub(channel)
    worker = RawWorker(channel, "both", names=["parent", "child"])
    await worker.register()
    await stub.StartWorkflow(cpb.StartWorkflowRequest(workflow_name="parent", workflow_id="q"))
    await worker.next_of("assignment")
    await worker.send(start_child("q", "1", "q/1"), await_workflow("q", "2", "q/1"))
    # The start's StepDone and the child's assignment, in either order.
    got: dict[str, wpb.CoordinatorEvent] = {}
    while len(got) < 2:
        ev = await worker.next_any()
        got.setdefault(ev.WhichOneof("kind") or "", ev)
    assert (got["step_done"].step_done.step_id, got["assignment"].assignment.workflow_id) == ("1", "q/1")
    await worker.send(
        wpb.WorkerEvent(
            workflow_result=wpb.WorkflowResult(
                workflow_id="q/1", epoch=1, error=pb.ErrorInfo(type="builtins.ValueError", message="bad")
            )
        )
    )
    done = (await worker.next_of("step_done")).step_done
    assert (done.step_id, done.error.type, done.error.message) == ("2", "builtins.ValueError", "bad")

    await worker.send(await_workflow("q", "3", "q"))
    rejected = (await worker.next_of("rejected")).rejected
    assert rejected.step_id == "3"
    assert "cannot wait for itself" in rejected.status.message
    worker.close()
