"""Many concurrent client calls, few RPCs: starts and waits are coalesced per event-loop turn.

Every ``start_workflow`` made in one turn of the event loop leaves in one StartWorkflows
call (several when there are more than the coordinator's Limits allow per call). Every
``WorkflowHandle.result()`` is served by rolling AwaitWorkflows calls that cover all
workflows being waited for: a call returns as soon as one of them finishes, settles all
that finished, and the rest are asked for again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from worker_sdk import errors
from worker_sdk._models import WorkflowInfo

Req = TypeVar("Req")
Res = TypeVar("Res")

_POLL_SECONDS = 30.0


class Batcher(Generic[Req, Res]):
    """Collects the requests of one event-loop turn and sends them as one call."""

    def __init__(
        self, send: Callable[[list[Req]], Awaitable[list[Res | errors.SteplineError]]], limit: int
    ) -> None:
        self._send = send
        self._limit = limit
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: Req) -> Res:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Res] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((request, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), self._limit):
            task = asyncio.get_running_loop().create_task(self._call(pending[i : i + self._limit]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[Req, asyncio.Future[Res]]]) -> None:
        try:
            outcomes = await self._send([request for request, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


AwaitCall = Callable[[list[str], float], Awaitable[tuple[list[WorkflowInfo], list[str]]]]


class Awaiter:
    """Waits for many workflows at once with few AwaitWorkflows calls."""

    def __init__(self, call: AwaitCall, limit: int) -> None:
        self._call = call
        self._limit = limit
        self._waiting: dict[str, list[asyncio.Future[WorkflowInfo]]] = {}
        self._covered: set[str] = set()  # IDs an in-flight call is asking about
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def wait(self, workflow_id: str, timeout: float | None) -> WorkflowInfo:
        """The workflow once final; TimeoutError after ``timeout`` seconds."""
        future: asyncio.Future[WorkflowInfo] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(workflow_id, []).append(future)
        self._schedule()
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            futures = self._waiting.get(workflow_id)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[workflow_id]
            if not future.done():
                future.cancel()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._poll)

    def _poll(self) -> None:
        self._scheduled = False
        fresh = [i for i in self._waiting if i not in self._covered]
        for start in range(0, len(fresh), self._limit):
            ids = fresh[start : start + self._limit]
            self._covered.update(ids)
            task = asyncio.get_running_loop().create_task(self._ask(ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ask(self, ids: list[str]) -> None:
        try:
            done, not_found = await self._call(ids, _POLL_SECONDS)
        except errors.SteplineError as exc:
            for workflow_id in ids:
                self._settle(workflow_id, exc)
            done, not_found = [], []
        finally:
            self._covered.difference_update(ids)
        for info in done:
            self._settle(info.workflow_id, info)
        for workflow_id in not_found:
            self._settle(
                workflow_id, errors.WorkflowNotFoundError(f"workflow {workflow_id!r} does not exist")
            )
        if any(i in self._waiting for i in ids):
            self._schedule()  # the rest are asked for again at once

    def _settle(self, workflow_id: str, outcome: WorkflowInfo | BaseException) -> None:
        for future in self._waiting.pop(workflow_id, []):
            if not future.done():
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*self._tasks, return_exceptions=True)
