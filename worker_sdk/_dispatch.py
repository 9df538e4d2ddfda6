"""The executions this worker runs, and what the coordinator says about them.

Each kind of event from the coordinator has one handler here (``Dispatch._handlers``):
an Assignment starts an execution in a task of its own; acknowledgements, abandons and
rejections go to the execution they concern. The worker holds nothing recovery needs:
everything it learns comes with an Assignment, and everything it does is reported.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from worker_sdk._context import WORKER
from worker_sdk._definitions import WorkflowDefinition
from worker_sdk._execution import Execution
from worker_sdk._messages import (
    Abandon,
    Assignment,
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
    StepDone,
    WorkflowAck,
)

if TYPE_CHECKING:
    from worker_sdk._session import Session
    from worker_sdk._worker import Worker

log = logging.getLogger("worker_sdk")


class Dispatch:
    """Runs assignments and routes the coordinator's answers; the link executions use."""

    def __init__(
        self,
        worker: Worker,
        definitions: dict[str, WorkflowDefinition],
        capacity: int,
        suspend_after: float | None = None,
    ) -> None:
        self._worker = worker
        self._definitions = definitions
        self._capacity = capacity
        self.suspend_after = suspend_after
        self.session: Session | None = None
        self.executions: dict[str, Execution] = {}
        # Every execution task still running, held or not (a cancelled one finishing a step).
        self.tasks: set[asyncio.Task[None]] = set()
        # In-process starts waiting for their StartResult, by request ID.
        self.starts: dict[str, tuple[StartWorkflow, asyncio.Future[StartResult]]] = {}
        self._bodies_running = 0
        self._progress = asyncio.Event()
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            StepAck: self._step_ack,
            Assignment: self._assign,
            WorkflowAck: self._workflow_ack,
            StartResult: self._start_result,
            Abandon: self._abandon,
            Rejected: self._rejected,
            HeartbeatAck: self._heartbeat_ack,
            Registered: lambda ev: None,  # only ever first, and taken by the session
            StepDone: self._step_done,
        }

    # --- the link executions use --------------------------------------------------------

    @property
    def max_payload_bytes(self) -> int | None:
        limits = self.session.limits if self.session is not None else None
        return limits.max_payload_bytes if limits is not None else None

    def send(self, event: Outgoing) -> None:
        assert self.session is not None
        self.session.send(event)

    def lease_current(self) -> bool:
        return self.session is not None and self.session.lease_current()

    async def lease_held(self) -> None:
        assert self.session is not None
        await self.session.lease_held()

    def body_started(self) -> None:
        self._bodies_running += 1

    def body_finished(self) -> None:
        self._bodies_running -= 1
        self._progress.set()

    def progressed(self) -> None:
        self._progress.set()

    def suspended(self, execution: Execution) -> None:
        if self.executions.get(execution.workflow_id) is execution:
            del self.executions[execution.workflow_id]
        self._progress.set()

    # --- for the session ----------------------------------------------------------------

    def opening(self) -> tuple[Register, list[Outgoing]]:
        """What opens every stream: Register with what this worker still runs, and every
        result, in-process start and wait not yet acknowledged."""
        live = [ex for ex in self.executions.values() if not ex.abandoned]
        assert self.session is not None
        register = Register(
            self.session.worker_id,
            tuple(self._definitions),
            self._capacity,
            tuple((ex.workflow_id, ex.epoch) for ex in live),
            self._worker.version,
            tuple(name for name, d in self._definitions.items() if d.auto_upgrade),
        )
        resend: list[Outgoing] = []
        for ex in live:
            resend.extend(ex.pending_events())
        resend.extend(request for request, _ in self.starts.values())
        return register, resend

    def handle(self, events: list[Incoming]) -> None:
        handlers = self._handlers
        for ev in events:
            handlers[type(ev)](ev)

    async def settle(self) -> None:
        """Returns when no step body runs and every result sent is acknowledged."""
        while self._bodies_running or not all(ex.settled for ex in self.executions.values()):
            self._progress.clear()
            await self._progress.wait()

    async def cancel_all(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.executions.clear()

    # --- handlers -----------------------------------------------------------------------

    def _current(self, workflow_id: str, epoch: int) -> Execution | None:
        ex = self.executions.get(workflow_id)
        return ex if ex is not None and ex.epoch == epoch else None

    def _step_ack(self, ev: StepAck) -> None:
        ex = self._current(ev.workflow_id, ev.epoch)
        if ex is not None:
            ex.step_acked(ev.step_id)

    def _step_done(self, ev: StepDone) -> None:
        ex = self._current(ev.workflow_id, ev.epoch)
        if ex is not None:
            ex.step_done(ev)

    def _workflow_ack(self, ev: WorkflowAck) -> None:
        ex = self._current(ev.workflow_id, ev.epoch)
        if ex is not None:
            del self.executions[ev.workflow_id]
            ex.workflow_acked(ev.status)
            self._progress.set()

    def _start_result(self, ev: StartResult) -> None:
        pending = self.starts.pop(ev.request_id, None)
        if pending is not None and not pending[1].done():
            pending[1].set_result(ev)

    def _abandon(self, ev: Abandon) -> None:
        ex = self._current(ev.workflow_id, ev.epoch)
        if ex is not None:
            del self.executions[ev.workflow_id]
            if ev.reason == "ABANDON_REASON_CANCELLED":
                ex.cancel(ev.message)
            else:
                ex.abandon(f"{ev.reason}: {ev.message}")
            self._progress.set()

    def _rejected(self, ev: Rejected) -> None:
        ex = self._current(ev.workflow_id, ev.epoch)
        if ex is not None:
            ex.rejected(ev.step_id, ev.message)
        else:
            log.warning("coordinator rejected an event: %s", ev.message)

    def _heartbeat_ack(self, ev: HeartbeatAck) -> None:
        if self.session is not None:
            self.session.heartbeat_acked(ev)

    def _assign(self, a: Assignment) -> None:
        definition = self._definitions.get(a.workflow_name)
        if definition is None:  # the coordinator only sends registered names
            log.error("assigned unknown workflow %r; giving it back", a.workflow_name)
            self.send(Release(a.workflow_id, a.epoch))
            return
        previous = self.executions.get(a.workflow_id)
        if previous is not None:
            previous.abandon(f"reassigned to this worker under epoch {a.epoch}")
        execution = Execution(a, definition, self)
        self.executions[a.workflow_id] = execution
        # A fresh context per execution: no scope until run() sets the root one.
        context = contextvars.Context()
        context.run(WORKER.set, self._worker)
        execution.task = asyncio.get_running_loop().create_task(execution.run(), context=context)
        execution.task.add_done_callback(_report_crash)
        self.tasks.add(execution.task)
        execution.task.add_done_callback(self.tasks.discard)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("execution task crashed", exc_info=task.exception())
