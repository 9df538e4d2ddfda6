"""The Client: start workflows by name from anywhere, and follow them through handles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

import grpc

from worker_sdk import _serde, _tracing, _transport, errors
from worker_sdk._coalesce import Awaiter, Batcher
from worker_sdk._decorators import Workflow
from worker_sdk._messages import Limits
from worker_sdk._models import StepInfo, WorkerInfo, WorkflowCount, WorkflowInfo, WorkflowStatus


class Client:
    """Talks to the coordinator's client-facing service. Safe to share across tasks."""

    def __init__(
        self,
        address: str = "127.0.0.1:7420",
        *,
        api_key: str | None = None,
        tls: _transport.TLS | None = None,
    ) -> None:
        """``api_key``: the token to send (default STEPLINE_API_KEY); ``tls``: for a
        coordinator that serves TLS (default from STEPLINE_TLS_CA/_CERT/_KEY, else plain)."""
        self.address = address
        self._api_key = _transport.api_key_or_env(api_key)
        self._tls = tls if tls is not None else _transport.TLS.from_env()
        self._channel: grpc.aio.Channel | None = None
        self._calls_: _transport.ClientCalls | None = None
        self._starts_: Batcher[_transport.Start, tuple[WorkflowInfo, bool]] | None = None
        self._awaiter_: Awaiter | None = None
        self._limits_: asyncio.Future[Limits] | None = None

    @property
    def _calls(self) -> _transport.ClientCalls:
        # Created on first use, inside the running event loop.
        if self._calls_ is None:
            self._channel = _transport.channel(self.address, self._tls)
            self._calls_ = _transport.ClientCalls(self._channel, self._api_key)
        return self._calls_

    async def _limits(self) -> Limits:
        """The coordinator's limits, asked for once (GetServerInfo) and remembered."""
        if self._limits_ is None or (self._limits_.done() and self._limits_.exception() is not None):
            self._limits_ = asyncio.ensure_future(self._calls.limits())
        return await asyncio.shield(self._limits_)

    async def _starts(self) -> Batcher[_transport.Start, tuple[WorkflowInfo, bool]]:
        if self._starts_ is None:
            limit = (await self._limits()).max_starts_per_call
            self._starts_ = self._starts_ or Batcher(self._calls.start_workflows, limit)
        return self._starts_

    async def _awaiter(self) -> Awaiter:
        if self._awaiter_ is None:
            limit = (await self._limits()).max_awaited_per_call
            self._awaiter_ = self._awaiter_ or Awaiter(self._calls.await_workflows, limit)
        return self._awaiter_

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._awaiter_ is not None:
            await self._awaiter_.close()
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._calls_ = self._starts_ = self._awaiter_ = self._limits_ = None

    async def start_workflow(
        self,
        workflow: str | Workflow[Any, Any],
        /,
        *args: Any,
        workflow_id: str | None = None,
        timeout: float | None = None,
        deadline: datetime | None = None,
        **kwargs: Any,
    ) -> WorkflowHandle:
        """Starts a workflow by name (or function) with the given arguments.

        With ``workflow_id`` the start is idempotent: starting an existing ID starts nothing
        and returns a handle to that workflow (WorkflowConflictError if its name differs).
        With ``timeout`` (seconds from now) or ``deadline`` (an aware datetime), the
        coordinator ends the workflow TIMED_OUT if it has not finished by then, whether or
        not a worker runs it.
        """
        name = workflow.name if isinstance(workflow, Workflow) else workflow
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must not be negative")
        if deadline is not None and deadline.tzinfo is None:
            raise ValueError("deadline must be an aware datetime (with a tzinfo)")
        data = _serde.encode_input(args, kwargs, f"the input of workflow {name!r}")
        # Starts made in the same event-loop turn leave together in one StartWorkflows call.
        starts = await self._starts()
        with _tracing.start_span(name) as traceparent:
            start = _transport.Start(name, workflow_id or "", data, timeout, deadline, traceparent)
            info, _ = await starts.submit(start)
        return WorkflowHandle(self, info.workflow_id)

    async def send(
        self, workflow_id: str, message: Any, topic: str | None = None, idempotency_key: str | None = None
    ) -> None:
        """Sends ``message`` to a workflow's mailbox, for its ``recv(topic)`` to take.

        Messages sent before the workflow reaches its recv are kept for it. With an
        ``idempotency_key``, sending the same key to the same workflow again changes
        nothing, so a send can be retried safely. Raises WorkflowNotFoundError, or
        WorkflowFinishedError when the workflow has finished (nothing would read it).
        """
        data = _serde.encode(message, f"the message to workflow {workflow_id!r}")
        await self._calls.send(workflow_id, topic or "", data, idempotency_key or "")

    async def get_event(self, workflow_id: str, key: str, timeout: float = 60.0) -> Any:
        """The value of a workflow's event, waiting up to ``timeout`` seconds for it to be
        set (longer waits ask again every minute); None if it was not."""
        deadline = asyncio.get_running_loop().time() + max(timeout, 0.0)
        while True:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
            value = await self._calls.get_event(workflow_id, key, min(remaining, 60.0))
            if value is not None:
                return _serde.decode(value.data, value.encoding)
            if remaining <= 60.0:
                return None

    async def cancel(self, workflow_id: str, reason: str | None = None) -> list[str]:
        """Cancels a workflow that has not finished, and its unfinished descendants: each
        ends CANCELLED at once, whether or not a worker runs it (a running step body may
        finish; the workflow stops at its next durable call). Returns the IDs cancelled
        (empty if it had finished). Raises WorkflowNotFoundError for an unknown ID."""
        return await self._calls.cancel(workflow_id, reason or "")

    async def resume(self, workflow_id: str, *, version: str | None = None) -> WorkflowHandle:
        """Runs a FAILED, CANCELLED, TIMED_OUT, PAUSED (non-determinism) or
        MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow again under its ID: recorded steps return
        their records, step bodies that failed run again. With ``version`` (a worker's
        ``Worker.version``: the fixed code) only workers of that version take it from now on;
        without, those of the version it recorded. Raises WorkflowNotFoundError, or
        SteplineError for a workflow in another status."""
        info = await self._calls.resume(workflow_id, version)
        return WorkflowHandle(self, info.workflow_id)

    async def fork(
        self,
        workflow_id: str,
        from_step: str | int,
        *,
        new_workflow_id: str | None = None,
        version: str | None = None,
    ) -> WorkflowHandle:
        """A new run of a workflow (same name and input) that reuses its finished steps
        first started before ``from_step`` (a step ID it recorded) and runs the rest: on
        workers of ``version`` if given (the way to move a run to new code), else on the
        first worker that serves the name. Returns the new run's handle."""
        info = await self._calls.fork(workflow_id, str(from_step), new_workflow_id or "", version)
        return WorkflowHandle(self, info.workflow_id)

    async def list_workers(self) -> list[WorkerInfo]:
        """The connected workers, on every coordinator of the database, by worker ID."""
        return await self._calls.list_workers()

    async def count_workflows(
        self,
        by: Iterable[str] = ("version",),
        *,
        status: WorkflowStatus | Iterable[WorkflowStatus] | None = None,
        name: str | None = None,
    ) -> list[WorkflowCount]:
        """How many workflows there are per group of ``by`` (any of "name", "version",
        "status"), largest group first; by default the open ones (ENQUEUED, RUNNING,
        PAUSED): ``count_workflows(by=["version"])`` shows which versions still have runs
        before their workers are retired."""
        statuses = [status] if isinstance(status, WorkflowStatus) else list(status or ())
        return await self._calls.count_workflows(list(by), statuses, name)

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle to an existing workflow (not checked until used)."""
        return WorkflowHandle(self, workflow_id)

    async def get_workflow(self, workflow_id: str) -> WorkflowInfo:
        return await self._calls.get_workflow(workflow_id)

    async def list_workflows(
        self,
        *,
        name: str | None = None,
        status: WorkflowStatus | Iterable[WorkflowStatus] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        page_token: str = "",
        descending: bool = False,
        include_payloads: bool = False,
        version: str | None = None,
    ) -> tuple[list[WorkflowInfo], str]:
        """One page of workflows, oldest first; returns it and the next page's token ("" at the end).
        ``version``: only runs recorded under that worker version."""
        statuses = [status] if isinstance(status, WorkflowStatus) else list(status or ())
        return await self._calls.list_workflows(
            name=name,
            statuses=statuses,
            created_after=created_after,
            created_before=created_before,
            page_size=limit,
            page_token=page_token,
            descending=descending,
            include_payloads=include_payloads,
            version=version,
        )

    async def iter_workflows(self, **filters: Any) -> AsyncIterator[WorkflowInfo]:
        """Every workflow matching the filters of ``list_workflows``, page by page."""
        token = filters.pop("page_token", "")
        while True:
            page, token = await self.list_workflows(page_token=token, **filters)
            for info in page:
                yield info
            if not token:
                return

    async def list_steps(self, workflow_id: str) -> list[StepInfo]:
        """The workflow's recorded steps, in the order they started."""
        return await self._calls.list_steps(workflow_id)


class WorkflowHandle:
    """A started workflow."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self.client = client
        self.workflow_id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id}>"

    async def info(self) -> WorkflowInfo:
        return await self.client.get_workflow(self.workflow_id)

    async def status(self) -> WorkflowStatus:
        return (await self.info()).status

    async def steps(self) -> list[StepInfo]:
        return await self.client.list_steps(self.workflow_id)

    async def result(self, timeout: float | None = None) -> Any:
        """Waits for the workflow to finish and returns its output.

        Raises WorkflowFailedError (with the rebuilt original error as ``__cause__``) if it
        failed, and TimeoutError if it is still running after ``timeout`` seconds.
        """
        try:
            awaiter = await self.client._awaiter()
            info = await awaiter.wait(self.workflow_id, timeout)
        except TimeoutError:
            raise TimeoutError(f"workflow {self.workflow_id!r} is still running after {timeout} s") from None
        return _outcome(info)


def _outcome(info: WorkflowInfo) -> Any:
    if info.status is WorkflowStatus.SUCCEEDED:
        return info.output
    error = info.error
    failure = errors.WorkflowFailedError(
        info.workflow_id,
        error.type if error else info.status.value,
        error.message if error else f"workflow ended {info.status.value}",
        error.traceback if error else "",
    )
    if error is not None:
        raise failure from _serde.rebuild(error)
    raise failure
