"""Child workflows: ``await child_workflow(...)`` and ``start_child`` inside a workflow.

Starting a child is a durable operation of the parent (a START_CHILD step): the
coordinator records the child and the step in one transaction, so a replay of the parent
re-attaches to the child it started instead of starting another. The child's ID, unless
given, is ``"<parent ID>/<step ID>"``: the same on every run, as the step ID is taken
synchronously at the call. Waiting for a workflow to finish is a durable wait (an
AWAIT_WORKFLOW step) whose recorded outcome is the child's: its output, or its error
raised again. A parent waiting for a child is suspended like any waiting workflow.

The child is an ordinary workflow: any worker that serves its name runs it, in any
language. ``await child_workflow(x)`` takes two step IDs at the call (the start and the
wait), so that concurrent calls (``asyncio.gather``) stay deterministic.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from worker_sdk import _serde
from worker_sdk._context import STEP_CODES, Scope
from worker_sdk._messages import StartChild, Wait
from worker_sdk._models import StepKind
from worker_sdk._operations import _operate, _scope, _value

if TYPE_CHECKING:
    from worker_sdk._decorators import Workflow

R = TypeVar("R")


class ChildHandle(Generic[R]):
    """A workflow started by this workflow with ``start_child``."""

    __slots__ = ("workflow_id",)

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"ChildHandle({self.workflow_id!r})"

    def result(self) -> Coroutine[Any, Any, R]:
        """Waits durably for the child to finish; returns its output or raises its error
        (for a child that timed out or was cancelled, the SDK's error for that)."""
        return await_workflow(self.workflow_id)


def await_workflow(workflow_id: str) -> Coroutine[Any, Any, Any]:
    """Waits durably for any workflow to finish; returns its output or raises its error.
    Recorded: a replay returns the same without asking again."""
    return _await(
        _scope("await_workflow", "use Client.get_handle(...).result() outside workflows"), workflow_id
    )


def start_child(
    workflow: Workflow[Any, R] | str, /, *args: Any, workflow_id: str | None = None, **kwargs: Any
) -> Coroutine[Any, Any, ChildHandle[R]]:
    """Starts a child workflow (a ``@workflow`` function, or a workflow name served by
    any worker, in any language) and returns its handle once the start is recorded; await
    ``handle.result()`` for its outcome, or let it run on (it is not cancelled when the
    parent finishes). Exactly once: a replay returns a handle to the same child."""
    scope = _scope("start_child", "use Client.start_workflow outside workflows")
    return _started(_start(scope, workflow, args, kwargs, workflow_id))


def call_child(
    workflow: Workflow[Any, R], args: tuple[Any, ...], kwargs: dict[str, Any], workflow_id: str | None
) -> Coroutine[Any, Any, R]:
    """``await workflow(...)`` inside a workflow: start it as a child and wait for it."""
    scope = _scope("a child workflow call", "")
    start = _start(scope, workflow, args, kwargs, workflow_id)
    assert isinstance(start.op, StartChild)
    wait = _wait_op(scope, start.op.child_id)
    return _started_and_awaited(start, wait, scope)


class _Start:
    __slots__ = ("op", "scope")

    def __init__(self, scope: Scope, op: StartChild) -> None:
        self.scope, self.op = scope, op


def _start(
    scope: Scope,
    workflow: Workflow[Any, Any] | str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    child_id: str | None,
) -> _Start:
    ex = scope.execution
    name = workflow if isinstance(workflow, str) else workflow.name
    step_id = scope.next_step_id()
    data = _serde.encode_input(
        args, kwargs, f"the input of child workflow {name!r}", ex.link.max_payload_bytes
    )
    return _Start(
        scope,
        StartChild(ex.workflow_id, ex.epoch, step_id, child_id or f"{ex.workflow_id}/{step_id}", name, data),
    )


def _wait_op(scope: Scope, workflow_id: str) -> Wait:
    ex = scope.execution
    op = Wait(ex.workflow_id, ex.epoch, scope.next_step_id(), StepKind.AWAIT_WORKFLOW)
    op.target = workflow_id
    return op


def _await(scope: Scope, workflow_id: str) -> Coroutine[Any, Any, Any]:
    return _value(_operate(scope.execution, _wait_op(scope, workflow_id)))


async def _child_id(start: _Start) -> str:
    """Starts (or replays the start of) the child; its ID as recorded, which a forked run
    shares with the run it was forked from."""
    recorded, _ = await _operate(start.scope.execution, start.op)
    return recorded if isinstance(recorded, str) else start.op.child_id


async def _started(start: _Start) -> ChildHandle[Any]:
    return ChildHandle(await _child_id(start))


async def _started_and_awaited(start: _Start, wait: Wait, scope: Scope) -> Any:
    wait.target = await _child_id(start)
    return await _value(_operate(scope.execution, wait))


# Tasks that wrap one of these calls take no scope of their own (as for steps).
STEP_CODES.update({_started.__code__, _started_and_awaited.__code__})
