"""The gRPC servicers: requests in, records through the engine, responses out.

This is where CoordinatorErrors become gRPC statuses, and the only module besides
``convert.py`` that touches generated code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from stepline.v1 import client_pb2 as cpb
from stepline.v1 import client_pb2_grpc as cpb_grpc
from stepline.v1 import worker_pb2 as wpb
from stepline.v1 import worker_pb2_grpc as wpb_grpc

from coordinator import __version__, convert, frames, logs, validation
from coordinator.engine import Engine
from coordinator.errors import CoordinatorError, Unavailable
from coordinator.sessions import Session
from coordinator.status import abort

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]


def _statuses(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Answers a CoordinatorError with its gRPC status and message."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]) -> Resp:
        try:
            return await method(self, request, context)
        except CoordinatorError as exc:
            await abort(context, exc)
            raise  # unreachable: abort raises

    return wrapper


class WorkflowService(cpb_grpc.WorkflowServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._max = engine.settings.max_payload_bytes

    @_statuses
    async def StartWorkflow(
        self, request: cpb.StartWorkflowRequest, context: Any
    ) -> cpb.StartWorkflowResponse:
        record, created = await self._engine.start_workflow(convert.start_request(request, self._max))
        return cpb.StartWorkflowResponse(workflow=convert.workflow_info(record), created=created)

    @_statuses
    async def GetWorkflow(self, request: cpb.GetWorkflowRequest, context: Any) -> cpb.GetWorkflowResponse:
        record = await self._engine.get_workflow(_workflow_id(request.workflow_id))
        return cpb.GetWorkflowResponse(workflow=convert.workflow_info(record))

    @_statuses
    async def AwaitWorkflow(
        self, request: cpb.AwaitWorkflowRequest, context: Any
    ) -> cpb.AwaitWorkflowResponse:
        record = await self._engine.await_workflow(
            _workflow_id(request.workflow_id), _wait(request.timeout_ms, context)
        )
        return cpb.AwaitWorkflowResponse(workflow=convert.workflow_info(record), done=record.status.done)

    @_statuses
    async def ListWorkflows(
        self, request: cpb.ListWorkflowsRequest, context: Any
    ) -> cpb.ListWorkflowsResponse:
        f = convert.workflow_filter(request)
        records = await self._engine.list_workflows(f)
        token = convert.encode_page_token(records[-1].seq) if len(records) == f.limit else ""
        return cpb.ListWorkflowsResponse(
            workflows=[convert.workflow_info(r) for r in records], next_page_token=token
        )

    @_statuses
    async def StartWorkflows(
        self, request: cpb.StartWorkflowsRequest, context: Any
    ) -> cpb.StartWorkflowsResponse:
        parsed = convert.start_requests(request, self._max)
        valid = [r for r in parsed if not isinstance(r, CoordinatorError)]
        started = iter(await self._engine.start_workflows(valid))
        outcomes = [r if isinstance(r, CoordinatorError) else next(started) for r in parsed]
        return cpb.StartWorkflowsResponse(outcomes=[convert.start_outcome(o) for o in outcomes])

    @_statuses
    async def AwaitWorkflows(
        self, request: cpb.AwaitWorkflowsRequest, context: Any
    ) -> cpb.AwaitWorkflowsResponse:
        done, not_found = await self._engine.await_workflows(
            convert.awaited_ids(request), _wait(request.timeout_ms, context)
        )
        return cpb.AwaitWorkflowsResponse(done=[convert.workflow_info(r) for r in done], not_found=not_found)

    async def GetServerInfo(
        self, request: cpb.GetServerInfoRequest, context: Any
    ) -> cpb.GetServerInfoResponse:
        return cpb.GetServerInfoResponse(
            server_version=__version__,
            protocol_versions=sorted(convert.PROTOCOL_VERSIONS),
            limits=convert.limits_out(self._engine.settings.limits),
        )

    @_statuses
    async def Send(self, request: cpb.SendRequest, context: Any) -> cpb.SendResponse:
        duplicate = await self._engine.send(convert.send_request(request, self._max))
        return cpb.SendResponse(duplicate=duplicate)

    @_statuses
    async def GetEvent(self, request: cpb.GetEventRequest, context: Any) -> cpb.GetEventResponse:
        value = await self._engine.get_event(
            _workflow_id(request.workflow_id),
            validation.identifier("key", request.key),
            _wait(request.timeout_ms, context),
        )
        return cpb.GetEventResponse(found=value is not None, value=convert.payload_out(value))

    @_statuses
    async def CancelWorkflow(
        self, request: cpb.CancelWorkflowRequest, context: Any
    ) -> cpb.CancelWorkflowResponse:
        record, cancelled = await self._engine.cancel(
            _workflow_id(request.workflow_id), validation.text("reason", request.reason)
        )
        return cpb.CancelWorkflowResponse(workflow=convert.workflow_info(record), cancelled=cancelled)

    @_statuses
    async def ResumeWorkflow(
        self, request: cpb.ResumeWorkflowRequest, context: Any
    ) -> cpb.ResumeWorkflowResponse:
        record = await self._engine.resume(
            _workflow_id(request.workflow_id), convert.optional_version(request)
        )
        return cpb.ResumeWorkflowResponse(workflow=convert.workflow_info(record))

    @_statuses
    async def ForkWorkflow(self, request: cpb.ForkWorkflowRequest, context: Any) -> cpb.ForkWorkflowResponse:
        new_id = validation.identifier("new_workflow_id", request.new_workflow_id, optional=True)
        record = await self._engine.fork(
            _workflow_id(request.workflow_id),
            new_id or None,
            validation.identifier("from_step", request.from_step),
            convert.optional_version(request),
        )
        return cpb.ForkWorkflowResponse(workflow=convert.workflow_info(record))

    @_statuses
    async def CountWorkflows(
        self, request: cpb.CountWorkflowsRequest, context: Any
    ) -> cpb.CountWorkflowsResponse:
        by, statuses, name = convert.count_request(request)
        found = await self._engine.count_workflows(by, statuses, name)
        return cpb.CountWorkflowsResponse(counts=[convert.workflow_count(c) for c in found])

    @_statuses
    async def ListWorkers(self, request: cpb.ListWorkersRequest, context: Any) -> cpb.ListWorkersResponse:
        found = await self._engine.list_workers()
        return cpb.ListWorkersResponse(workers=[convert.worker_info(w) for w in found])

    @_statuses
    async def ListSteps(self, request: cpb.ListStepsRequest, context: Any) -> cpb.ListStepsResponse:
        found = await self._engine.list_steps(_workflow_id(request.workflow_id))
        return cpb.ListStepsResponse(steps=[convert.step_info(s) for s in found])


def _wait(timeout_ms: int, context: Any) -> float:
    """Seconds to wait: as asked, but ending a little before the caller's deadline."""
    timeout: float = timeout_ms / 1000
    remaining = context.time_remaining()
    if remaining is not None:
        timeout = min(timeout, max(remaining - 0.05, 0.0))
    return timeout


def _workflow_id(value: str) -> str:
    return validation.identifier("workflow_id", value)


class WorkerService(wpb_grpc.WorkerServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._max = engine.settings.max_payload_bytes

    async def Connect(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[wpb.WorkerFrame],
        context: grpc.aio.ServicerContext[wpb.WorkerFrame, wpb.CoordinatorFrame],
    ) -> None:
        try:
            first = await anext(request_iterator)
            registration, rest = frames.registration(first)
            session = await self._engine.register(registration)
        except StopAsyncIteration:
            return
        except CoordinatorError as exc:
            await abort(context, exc)
        self._take(session, rest)
        with logs.bound(worker_id=session.worker_id):  # the stream's tasks inherit it
            reader = asyncio.create_task(self._read(session, request_iterator))
            writer = asyncio.create_task(self._write(session, context))
        closed = asyncio.create_task(session.closed.wait())
        reason = "stream closed by the worker"
        ended_here = False
        try:
            done, _ = await asyncio.wait({reader, writer, closed}, return_when=asyncio.FIRST_COMPLETED)
            ended_here = closed in done
            if ended_here:
                reason = session.close_reason
            elif writer in done and writer.exception() is not None:
                reason = f"write failed: {writer.exception()}"
        finally:
            for task in (reader, writer, closed):
                task.cancel()
            # Not awaited here: the worker's executions are released by a task of the
            # engine's own, so that neither a stream task stuck on a dead peer nor a second
            # cancellation of this handler can keep them owned by a worker that is gone.
            self._engine.end_session(session, reason)
        if ended_here:
            await abort(context, Unavailable(f"session ended: {reason}"))

    def _take(self, session: Session, events: Any) -> None:
        converted, rejected = frames.worker_events(events, self._max)
        for r in rejected:
            session.send(r)
        self._engine.handle(session, converted)

    async def _read(self, session: Session, frames: AsyncIterator[wpb.WorkerFrame]) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            async for frame in frames:
                self._take(session, frame)

    async def _write(self, session: Session, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        while True:
            events = await session.next_events()
            await context.write(frames.coordinator_frame(events))
