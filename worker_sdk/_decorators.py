"""``@workflow`` and ``@step``: module-level decorators, usable with and without arguments."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from worker_sdk import errors
from worker_sdk._context import SCOPE, WORKER
from worker_sdk._definitions import StepDefinition, WorkflowDefinition
from worker_sdk._execution import run_step
from worker_sdk._retry import RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")


class Workflow(Generic[P, R]):
    """A workflow function. Calling it inside ``async with Worker(...)`` runs it durably
    in this process, recorded by the coordinator; ``Client.start_workflow`` runs it on
    any worker that serves its name."""

    __slots__ = ("__dict__", "definition")

    def __init__(self, fn: Callable[P, Awaitable[R]], name: str, auto_upgrade: bool = False) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@workflow needs an async function; {fn.__qualname__} is not one")
        self.definition = WorkflowDefinition(name, fn, auto_upgrade)
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        """Inside a workflow: runs it as a child workflow (see ``start_child``) and returns
        its result. Elsewhere, in a process with a running Worker: runs it there."""
        if SCOPE.get() is not None:
            from worker_sdk._children import call_child

            return call_child(self, args, kwargs, None)
        return self._run(None, args, kwargs)

    def with_id(self, workflow_id: str) -> Callable[P, Coroutine[Any, Any, R]]:
        """The same direct call, under a chosen workflow ID (idempotent: one run per ID)."""

        def call(*args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
            if SCOPE.get() is not None:
                from worker_sdk._children import call_child

                return call_child(self, args, kwargs, workflow_id)
            return self._run(workflow_id, args, kwargs)

        return call

    async def _run(self, workflow_id: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        worker = WORKER.get()
        if worker is None:
            raise errors.NotInWorkerError(
                f"calling workflow {self.name!r} directly needs a running Worker: "
                f"`async with Worker(address, workflows=[{self.definition.fn.__name__}]): ...`, "
                "or start it with Client.start_workflow"
            )
        result: R = await worker.run_workflow(self.definition, args, kwargs, workflow_id)
        return result


class Step(Generic[P, R]):
    """A step function. Inside a workflow each call is recorded: it runs once, and replays
    return its recorded outcome. Outside workflows (and inside step bodies) a call simply
    runs the function."""

    __slots__ = ("__dict__", "definition")

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        name: str,
        retry: RetryPolicy | None,
        timeout: float | None = None,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"step {name!r}: timeout must be positive")
        self.definition = StepDefinition(name, fn, retry, inspect.iscoroutinefunction(fn), timeout)
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        scope = SCOPE.get()
        if scope is None:
            return self._plain(args, kwargs)
        # The ID is taken here, synchronously, at the call: see _context.py.
        coro: Coroutine[Any, Any, R] = run_step(
            scope.execution, self.definition, scope.next_step_id(), args, kwargs
        )
        return coro

    async def _plain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        fn = self.definition.fn
        if self.definition.is_coroutine:
            result: R = await fn(*args, **kwargs)
            return result
        return await asyncio.to_thread(fn, *args, **kwargs)


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> Workflow[P, R]: ...
@overload
def workflow(
    *, name: str | None = None, auto_upgrade: bool = False
) -> Callable[[Callable[P, Awaitable[R]]], Workflow[P, R]]: ...
def workflow(
    fn: Callable[P, Awaitable[R]] | None = None,
    /,
    *,
    name: str | None = None,
    auto_upgrade: bool = False,
) -> Workflow[P, R] | Callable[[Callable[P, Awaitable[R]]], Workflow[P, R]]:
    """Declares a workflow. Its name defaults to the function's ``__qualname__``.

    A run stays on the worker version that first ran it (``Worker(version=...)``): its
    recovery, wake-ups and resume go only to workers of that version. With
    ``auto_upgrade=True`` any version serving the name may take it, and the run moves to
    that version: say so only when the code replays older runs (``patched`` branches)."""

    def decorate(f: Callable[P, Awaitable[R]]) -> Workflow[P, R]:
        return Workflow(f, name or f.__qualname__, auto_upgrade)

    return decorate(fn) if fn is not None else decorate


class StepDecorator(Protocol):
    """What ``step(...)`` with arguments returns: a decorator for async or plain functions."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Step[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> Step[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *, name: str | None = None, retry: RetryPolicy | None = None, timeout: float | None = None
) -> StepDecorator: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Step[Any, Any] | StepDecorator:
    """Declares a step. Its name defaults to the function's ``__qualname__``.

    Async functions run on the event loop; plain functions run in a thread. Without a
    ``retry`` policy a failing step is not retried. With a ``timeout`` (seconds), an attempt
    that runs longer fails with TimeoutError, and the retry policy decides what follows (a
    plain function's thread cannot be stopped: it runs on, its result unused).
    """

    def decorate(f: Callable[..., Any]) -> Step[Any, Any]:
        return Step(f, name or f.__qualname__, retry, timeout)

    return decorate(fn) if fn is not None else decorate
