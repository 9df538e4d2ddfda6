"""Control of workflows from outside their code: cancel, resume, fork.

A cancel is one transaction: the workflow and its unfinished descendants end CANCELLED
(``store/control.py``), and the waits for any of them end too (the trigger of migration
0006). After the commit, the executions held here are told to stop (Abandon, CANCELLED)
and callers waiting for the workflows here look again; a hint tells the other
coordinators to do the same for theirs.

Resume and fork make a workflow ready to be handed out (again, or as a new run); the
dispatchers here hear of it at once, the others by a hint.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from coordinator import hints as hint
from coordinator.dispatch import Dispatcher
from coordinator.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from coordinator.hints import Hints
from coordinator.models import Abandon, AbandonReason, WorkflowRecord
from coordinator.ownership import Ownership
from coordinator.replies import Replies
from coordinator.store import control, workflows
from coordinator.store.database import Database
from coordinator.timers import Timers
from coordinator.waiters import Waiters


class Control:
    def __init__(
        self,
        db: Database,
        ownership: Ownership,
        replies: Replies,
        hints: Hints,
        workflow_waiters: Waiters[str, WorkflowRecord],
        dispatcher: Dispatcher,
        timer_service: Timers,
    ) -> None:
        self._dispatcher = dispatcher
        self._timers = timer_service
        self._db = db
        self._ownership = ownership
        self._replies = replies
        self._hints = hints
        self._waiters = workflow_waiters
        hints.on(hint.CANCELLED, self._stop_all)

    async def cancel(self, workflow_id: str, reason: str) -> tuple[WorkflowRecord, list[str]]:
        """Cancels the workflow and its unfinished descendants; returns the workflow as it
        is now and the IDs of those this call cancelled."""
        async with self._db.transaction() as conn:
            cancelled = await control.cancel(conn, workflow_id, reason or "cancelled")
            ids = [c.workflow_id for c in cancelled]
            if ids:
                await self._hints.publish(conn, hint.CANCELLED, ids)
            record = await workflows.get(conn, workflow_id)
        if record is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        self._stop_all(ids)
        return record, ids

    async def resume(self, workflow_id: str, version: str | None = None) -> WorkflowRecord:
        """Runs a FAILED, CANCELLED, TIMED_OUT, PAUSED or MAX_RECOVERY_ATTEMPTS_EXCEEDED
        workflow again: its recorded successes are replayed, its failed step bodies run
        again; on workers of ``version`` if given, else of the version it recorded."""
        async with self._db.transaction() as conn:
            found = await control.resume(conn, workflow_id, version)
            if found is None:
                raise NotFound(f"workflow {workflow_id!r} does not exist")
            name, status, resumed, due = found
            if not resumed:
                raise FailedPrecondition(
                    f"workflow {workflow_id!r} is {status}: only FAILED, CANCELLED, TIMED_OUT, PAUSED "
                    "and MAX_RECOVERY_ATTEMPTS_EXCEEDED workflows can be resumed"
                )
            await self._hints.publish(conn, hint.READY, [name])
            record = await workflows.get(conn, workflow_id)
        assert record is not None
        self._ready(name, due)
        return record

    async def fork(
        self, workflow_id: str, new_id: str | None, from_step: str, version: str | None = None
    ) -> WorkflowRecord:
        """A new run of the workflow (same name and input) that reuses its finished steps
        before ``from_step`` and runs the rest, on workers of ``version`` if given, else on
        whatever code serves the name now."""
        new_id = new_id or f"{workflow_id}-fork-{uuid.uuid4().hex[:12]}"
        async with self._db.transaction() as conn:
            forked = await control.fork(conn, workflow_id, new_id, from_step, version)
            if forked.source is None:
                raise NotFound(f"workflow {workflow_id!r} does not exist")
            if not forked.step_found:
                raise InvalidArgument(f"workflow {workflow_id!r} has no step {from_step!r} to fork from")
            name = forked.name
            if name is None:
                raise AlreadyExists(f"workflow {new_id!r} exists already")
            await self._hints.publish(conn, hint.READY, [name])
            record = await workflows.get(conn, new_id)
        assert record is not None
        self._ready(name, None)
        return record

    def _ready(self, name: str, due: datetime | None) -> None:
        self._dispatcher.mark_ready([name])
        if due is not None:
            self._timers.schedule(due)

    def _stop_all(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            holder = self._ownership.holder(workflow_id)
            if holder is not None:
                session, epoch = holder
                self._ownership.finish(session, workflow_id, epoch)
                message = f"workflow {workflow_id!r} was cancelled"
                self._replies.send(session, Abandon(workflow_id, epoch, AbandonReason.CANCELLED, message))
            self._waiters.notify(workflow_id)
