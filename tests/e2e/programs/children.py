"""Parent and child workflows for the e2e tests of child workflows (effects: see flows.py).

The parent starts its child by name, so a worker that serves only the children (SERVES=
children) runs it, and one that serves only the parents (SERVES=parents) runs the parent.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.programs.waiting import stamp
from worker_sdk import ChildHandle, Workflow, recv, start_child, workflow


@workflow(name="e2e.child")
async def child(x: int) -> int:
    """Runs a step, then waits for a "go" message before it returns ``10 * x``."""
    await stamp(f"child {x} ran")
    await recv("go")
    return 10 * x


@workflow(name="e2e.parent")
async def parent(x: int) -> list[Any]:
    await stamp("parent began")
    handle: ChildHandle[int] = await start_child("e2e.child", x)
    await stamp("parent started its child")
    result = await handle.result()
    await stamp("parent got the result")
    return [handle.workflow_id, result]


PARENTS: list[Workflow[Any, Any]] = [parent]
CHILDREN: list[Workflow[Any, Any]] = [child]
