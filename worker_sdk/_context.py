"""Deterministic step IDs: task-scoped, hierarchical, taken synchronously at the call.

asyncio starts tasks in the order they were created, and a step takes its ID the moment
the workflow code calls it, before anything is awaited. So the n-th step called by a piece
of workflow code always gets the same ID. To make that hold for concurrent helpers too,
every asyncio task created inside a workflow (by ``gather``, ``create_task``,
``TaskGroup``, ...) gets its own scope, numbered from its parent's task counter at the
moment of creation. A step's ID is the path of task numbers plus its own number in its
task: ``"3"`` is the third step the workflow's own task called, ``"t2/1"`` the first step
called by the second task the workflow created, ``"t2/t1/4"`` deeper still. Each task's
own sequence of calls is deterministic, whatever order the tasks finish in, so IDs are
the same on every run, including replays where recorded steps return at once.

Tasks that merely wrap a step call (``gather(step_a(), step_b())``) take no scope: the
step already took its ID, in the caller's scope, when it was called. Steps and task
scopes count separately, so an extra internal task (``asyncio.wait_for`` makes one on some
Python versions) does not shift the IDs of the steps around it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from types import CodeType
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from worker_sdk._execution import Execution
    from worker_sdk._worker import Worker


class Scope:
    """The step and task counters of one asyncio task inside one workflow execution."""

    __slots__ = ("_steps", "_tasks", "execution", "prefix")

    def __init__(self, execution: Execution, prefix: str = "") -> None:
        self.execution = execution
        self.prefix = prefix
        self._steps = 0
        self._tasks = 0

    def next_step_id(self) -> str:
        self._steps += 1
        return f"{self.prefix}{self._steps}"

    def peek_step_id(self) -> str:
        """The step ID the next call will take (taking none)."""
        return f"{self.prefix}{self._steps + 1}"

    def child(self) -> Scope:
        self._tasks += 1
        return Scope(self.execution, f"{self.prefix}t{self._tasks}/")


# The scope of the running task; None outside workflows and inside step bodies (a step
# called from a step body runs as a plain function call).
SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("stepline_scope", default=None)


class StepContext(NamedTuple):
    """What a step body can know about itself (see ``current_step``)."""

    workflow_id: str
    step_id: str
    step_name: str
    attempt: int


# The step whose body is running, if any.
STEP: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("stepline_step", default=None)
# The Worker entered with ``async with`` in this task, for direct workflow calls.
WORKER: contextvars.ContextVar[Worker | None] = contextvars.ContextVar("stepline_worker", default=None)

# Code objects of the coroutines that run one step call: tasks wrapping them take no scope.
STEP_CODES: set[CodeType] = set()


def install_task_factory(loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
    """Gives tasks created inside workflows their scopes; returns a function that undoes it."""
    previous: Any = loop.get_task_factory()
    if getattr(previous, "_stepline", False):
        return lambda: None

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        context: contextvars.Context | None = kwargs.pop("context", None)
        scope = SCOPE.get() if context is None else context.get(SCOPE)
        if scope is not None and getattr(coro, "cr_code", None) not in STEP_CODES:
            context = contextvars.copy_context() if context is None else context.copy()
            context.run(SCOPE.set, scope.child())
        if context is not None:
            kwargs["context"] = context
        if previous is not None:
            task: asyncio.Task[Any] = previous(loop, coro, **kwargs)
            return task
        return asyncio.Task(coro, loop=loop, **kwargs)

    factory._stepline = True  # type: ignore[attr-defined]
    loop.set_task_factory(factory)  # type: ignore[arg-type]

    def uninstall() -> None:
        if loop.get_task_factory() is factory:
            loop.set_task_factory(previous)

    return uninstall


def workflow_id() -> str | None:
    """The ID of the workflow whose code (or step) is running, or None outside workflows."""
    scope = SCOPE.get()
    if scope is not None:
        return scope.execution.workflow_id
    step = STEP.get()
    return step.workflow_id if step is not None else None


def current_step() -> StepContext | None:
    """Inside a step body: its workflow ID, step ID, name and attempt. None elsewhere."""
    return STEP.get()
