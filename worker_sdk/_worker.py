"""The Worker: one stream to the coordinator, the executions it was given, and the lease.

The worker holds nothing recovery needs: everything it learns comes with an Assignment
and everything it does is reported to the coordinator, which decides what is durable.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from worker_sdk import _serde, _transport, errors
from worker_sdk._context import WORKER, install_task_factory
from worker_sdk._decorators import Workflow
from worker_sdk._definitions import WorkflowDefinition
from worker_sdk._execution import Abandoned, Execution
from worker_sdk._messages import (
    Abandon,
    Assignment,
    Drain,
    Heartbeat,
    HeartbeatAck,
    Incoming,
    Outgoing,
    Register,
    Registered,
    Rejected,
    Release,
    StartResult,
    StartWorkflow,
    StepAck,
    StepResult,
    StepStart,
    WorkflowAck,
)
from worker_sdk._models import ErrorInfo, WorkflowStatus

log = logging.getLogger("worker_sdk")

# Errors on which reconnecting cannot help while nothing changes on the coordinator side.
_FATAL_CODES = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class Worker:
    """Runs the given workflows for the coordinator at ``address``.

    ``async with Worker(...)`` connects, registers and serves assignments until the block
    ends; inside it, calling a workflow function runs it durably in this process.
    """

    def __init__(
        self,
        address: str = "127.0.0.1:7420",
        *,
        workflows: Iterable[Workflow[Any, Any]],
        worker_id: str | None = None,
        capacity: int = 100,
        api_key: str | None = None,
        connect_timeout: float = 30.0,
        shutdown_grace: float = 10.0,
    ) -> None:
        self._definitions: dict[str, WorkflowDefinition] = {}
        for w in workflows:
            if not isinstance(w, Workflow):
                raise TypeError(f"{w!r} is not a @workflow function")
            if w.name in self._definitions and self._definitions[w.name] is not w.definition:
                raise ValueError(f"two workflows are named {w.name!r}")
            self._definitions[w.name] = w.definition
        if not self._definitions:
            raise ValueError("a Worker needs at least one workflow")
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.address = address
        self.worker_id = (
            worker_id
            or os.environ.get("STEPLINE_WORKER_ID")
            or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.capacity = capacity
        self.max_payload_bytes: int | None = None
        self._api_key = _transport.api_key_or_env(api_key)
        self._connect_timeout = connect_timeout
        self.shutdown_grace = shutdown_grace
        self._draining = False
        self._bodies_running = 0
        self._progress = asyncio.Event()
        self._executions: dict[str, Execution] = {}
        self._starts: dict[str, tuple[StartWorkflow, asyncio.Future[StartResult]]] = {}
        self._outbox: list[Outgoing] = []
        self._wake = asyncio.Event()
        self._registered = asyncio.Event()
        self._lease = 3.0
        self._heartbeat_every = 1.0
        self._lease_deadline = 0.0
        self._lease_renewed = asyncio.Event()
        self._heartbeats_sent: dict[int, float] = {}
        self._fatal: errors.SteplineError | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._calls: _transport.ClientCalls | None = None
        self._uninstall: Callable[[], None] = _nothing
        self._token: contextvars.Token[Worker | None] | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} at {self.address}>"

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Worker:
        await self.start()
        self._token = WORKER.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._token is not None:
            WORKER.reset(self._token)
            self._token = None
        await self.stop()

    async def start(self) -> None:
        """Connects and registers; raises if the coordinator refuses or cannot be reached."""
        self._uninstall = install_task_factory(asyncio.get_running_loop())
        self._channel = _transport.channel(self.address)
        self._calls = _transport.ClientCalls(self._channel, self._api_key)
        self._task = asyncio.create_task(self._maintain(), name=f"stepline-worker-{self.worker_id}")
        try:
            await asyncio.wait_for(self._registered.wait(), self._connect_timeout)
        except TimeoutError:
            await self.stop()
            raise errors.CoordinatorUnavailableError(
                f"could not register with the coordinator at {self.address} within {self._connect_timeout} s"
            ) from None
        if self._fatal is not None:
            await self.stop()
            raise self._fatal

    async def stop(self, grace: float | None = None) -> None:
        """Shuts down gracefully, then disconnects.

        The worker takes no more work and starts no more step bodies; step bodies already
        running get up to ``grace`` seconds (default ``shutdown_grace``) to finish and have
        their results made durable. Then the stream closes and the coordinator hands the
        executions to other workers at once, where they resume from their last recorded
        step.
        """
        if self._stopping:
            return
        self._draining = True
        if self._registered.is_set() and self._fatal is None:
            self.send(Drain())
            grace = self.shutdown_grace if grace is None else grace
            try:
                await asyncio.wait_for(self._settle(), grace)
            except TimeoutError:
                log.warning("worker %s: in-flight steps did not finish within %.1f s", self.worker_id, grace)
        self._stopping = True
        for ex in list(self._executions.values()):
            if ex.task is not None:
                ex.task.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        tasks = [ex.task for ex in self._executions.values() if ex.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executions.clear()
        if self._channel is not None:
            await self._channel.close()
        self._uninstall()

    async def serve_forever(self) -> None:
        """Serves assignments until SIGTERM or SIGINT (or cancellation).

        Leave the ``async with`` block afterwards and the worker shuts down gracefully.
        """
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or no signal support: run until cancelled
        try:
            await stop.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def _settle(self) -> None:
        """Returns when no step body runs and every result sent is acknowledged."""
        while self._bodies_running or not all(ex.settled for ex in self._executions.values()):
            self._progress.clear()
            await self._progress.wait()

    # --- direct calls -----------------------------------------------------------------

    async def run_workflow(
        self, defn: WorkflowDefinition, args: tuple[Any, ...], kwargs: dict[str, Any], workflow_id: str | None
    ) -> Any:
        """Runs a workflow in this process, recorded centrally; returns or raises its outcome."""
        if self._definitions.get(defn.name) is not defn:
            raise errors.SteplineError(f"workflow {defn.name!r} is not one this Worker was given")
        data = _serde.encode_input(
            args, kwargs, f"the input of workflow {defn.name!r}", self.max_payload_bytes
        )
        request = StartWorkflow(uuid.uuid4().hex, defn.name, workflow_id or "", data)
        future: asyncio.Future[StartResult] = asyncio.get_running_loop().create_future()
        self._starts[request.request_id] = (request, future)
        self.send(request)
        result = await future
        if result.workflow is None:
            raise _transport.translate_code(result.error_code, result.error_message)
        info = result.workflow
        execution = self._executions.get(info.workflow_id)
        if execution is not None:
            try:
                status, output, error = await asyncio.shield(execution.outcome)
            except Abandoned:
                pass  # taken over by another worker: its result arrives through the coordinator
            else:
                return _unwrap(
                    info.workflow_id, status, _serde.decode(output) if output is not None else None, error
                )
        while not info.status.done:
            assert self._calls is not None
            info, _ = await self._calls.await_workflow(info.workflow_id, 30.0)
        return _unwrap(info.workflow_id, info.status, info.output, info.error)

    # --- the link executions use --------------------------------------------------------

    def send(self, event: Outgoing) -> None:
        """Queues an event; what is queued in one event-loop turn leaves as one frame."""
        if not self._outbox:
            self._wake.set()
        self._outbox.append(event)

    def lease_current(self) -> bool:
        """Whether a step body may start right now (no await on the common path)."""
        return not self._draining and time.monotonic() < self._lease_deadline

    async def lease_held(self) -> None:
        """Returns at once while the lease is current; otherwise waits until it is renewed.

        The deadline counts from when the last acknowledged heartbeat was *sent*, so it
        never runs past the coordinator's own view of the lease: a worker cut off from the
        coordinator stops starting step bodies before its work can be handed to another.
        """
        while self._draining or time.monotonic() >= self._lease_deadline:
            self._lease_renewed.clear()
            await self._lease_renewed.wait()

    def body_started(self) -> None:
        self._bodies_running += 1

    def body_finished(self) -> None:
        self._bodies_running -= 1
        self._progress.set()

    def progressed(self) -> None:
        self._progress.set()

    def _renew_lease(self, sent_at: float) -> None:
        deadline = sent_at + self._lease
        if deadline > self._lease_deadline:
            self._lease_deadline = deadline
            self._lease_renewed.set()

    # --- the stream ---------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Keeps a session open, reconnecting with jittered backoff."""
        delay = 0.05
        while not self._stopping:
            assert self._channel is not None
            stream = _transport.WorkerStream(self._channel, self._api_key)
            try:
                if await self._session(stream):
                    delay = 0.05
            except grpc.aio.AioRpcError as exc:
                error = _transport.translate(exc)
                if exc.code() in _FATAL_CODES and not self._registered.is_set():
                    self._fatal = error
                    self._registered.set()
                    return
                log.warning("worker %s: stream to %s ended: %s", self.worker_id, self.address, error)
            except asyncio.CancelledError:
                stream.cancel()
                raise
            finally:
                stream.cancel()
            if self._stopping:
                return
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)

    async def _session(self, stream: _transport.WorkerStream) -> bool:
        """One stream, from Register to its end. Returns whether it registered."""
        live = [ex for ex in self._executions.values() if not ex.abandoned]
        register = Register(
            self.worker_id,
            tuple(self._definitions),
            self.capacity,
            tuple((ex.workflow_id, ex.epoch) for ex in live),
        )
        # Everything not yet acknowledged goes in the same frame, right after Register: the
        # coordinator re-attaches what is still ours and then takes these results, and
        # refuses (fenced by epoch) those of executions that were reassigned meanwhile.
        resend: list[Outgoing] = [register]
        for ex in live:
            resend.extend(ex.pending_events())
        resend.extend(request for request, _ in self._starts.values())
        sent_at = time.monotonic()
        await stream.send(resend)
        first = await stream.receive()
        if not first or not isinstance(first[0], Registered):
            return False
        registered = first[0]
        self._lease = registered.lease_ms / 1000
        self._heartbeat_every = registered.heartbeat_interval_ms / 1000
        self.max_payload_bytes = registered.max_payload_bytes
        self._renew_lease(sent_at)
        self._registered.set()
        log.info("worker %s registered (session %s)", self.worker_id, registered.session_id[:8])
        writer = asyncio.create_task(self._write(stream))
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            self._handle(first[1:])
            while (events := await stream.receive()) is not None:
                self._handle(events)
        finally:
            writer.cancel()
            heartbeat.cancel()
            await asyncio.gather(writer, heartbeat, return_exceptions=True)
        return True

    async def _write(self, stream: _transport.WorkerStream) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            events, self._outbox = self._outbox, []
            await stream.send(_coalesce(events))

    async def _heartbeat(self) -> None:
        sequence = 0
        while True:
            await asyncio.sleep(self._heartbeat_every)
            sequence += 1
            self._heartbeats_sent[sequence] = time.monotonic()
            self.send(Heartbeat(sequence))

    def _handle(self, events: list[Incoming]) -> None:
        for ev in events:
            kind = type(ev)
            if kind is StepAck:
                ex = self._executions.get(ev.workflow_id)  # type: ignore[union-attr]
                if ex is not None and ex.epoch == ev.epoch:  # type: ignore[union-attr]
                    ex.step_acked(ev.step_id)  # type: ignore[union-attr]
            elif kind is Assignment:
                self._assign(ev)  # type: ignore[arg-type]
            else:
                self._handle_other(ev)

    def _handle_other(self, ev: Incoming) -> None:
        if isinstance(ev, HeartbeatAck):
            sent_at = self._heartbeats_sent.pop(ev.sequence, None)
            if sent_at is not None:
                self._renew_lease(sent_at)
            for stale in [s for s in self._heartbeats_sent if s < ev.sequence]:
                del self._heartbeats_sent[stale]
        elif isinstance(ev, WorkflowAck):
            ex = self._executions.get(ev.workflow_id)
            if ex is not None and ex.epoch == ev.epoch:
                del self._executions[ev.workflow_id]
                ex.workflow_acked(ev.status)
                self._progress.set()
        elif isinstance(ev, StartResult):
            pending = self._starts.pop(ev.request_id, None)
            if pending is not None and not pending[1].done():
                pending[1].set_result(ev)
        elif isinstance(ev, Abandon):
            ex = self._executions.get(ev.workflow_id)
            if ex is not None and ex.epoch == ev.epoch:
                del self._executions[ev.workflow_id]
                ex.abandon(f"{ev.reason}: {ev.message}")
                self._progress.set()
        elif isinstance(ev, Rejected):
            ex = self._executions.get(ev.workflow_id)
            if ex is not None and ex.epoch == ev.epoch:
                ex.rejected(ev.step_id, ev.message)
            else:
                log.warning("coordinator rejected an event: %s", ev.message)

    def _assign(self, a: Assignment) -> None:
        definition = self._definitions.get(a.workflow_name)
        if definition is None:  # the coordinator only sends registered names
            log.error("assigned unknown workflow %r; giving it back", a.workflow_name)
            self.send(Release(a.workflow_id, a.epoch))
            return
        previous = self._executions.get(a.workflow_id)
        if previous is not None:
            previous.abandon(f"reassigned to this worker under epoch {a.epoch}")
        execution = Execution(a, definition, self)
        self._executions[a.workflow_id] = execution
        # A fresh context per execution: no scope until run() sets the root one.
        context = contextvars.Context()
        context.run(WORKER.set, self)
        execution.task = asyncio.get_running_loop().create_task(execution.run(), context=context)
        execution.task.add_done_callback(_report_crash)


def _coalesce(events: list[Outgoing]) -> list[Outgoing]:
    """Drops the StepStart of a step whose result leaves in the same frame: the result says
    all the start would have, and the coordinator writes the step once instead of twice."""
    finished = {(e.workflow_id, e.step_id) for e in events if type(e) is StepResult}
    if not finished:
        return events
    return [e for e in events if type(e) is not StepStart or (e.workflow_id, e.step_id) not in finished]


def _nothing() -> None:
    pass


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("execution task crashed", exc_info=task.exception())


def _unwrap(workflow_id: str, status: WorkflowStatus, output: Any, error: ErrorInfo | None) -> Any:
    """A direct call's outcome: the value, or the workflow's own error re-raised."""
    if status is WorkflowStatus.SUCCEEDED:
        return output
    if status is WorkflowStatus.FAILED and error is not None:
        raise _serde.rebuild(error)
    raise errors.WorkflowFailedError(
        workflow_id, error.type if error else status.value, error.message if error else status.value
    )
