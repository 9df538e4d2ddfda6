"""Control of workflows from outside their code: cancel.

A cancel is one transaction: the workflow and its unfinished descendants end CANCELLED
(``store/control.py``), and the waits for any of them end too (the trigger of migration
0006). After the commit, the executions held here are told to stop (Abandon, CANCELLED)
and callers waiting for the workflows here look again; a hint tells the other
coordinators to do the same for theirs.
"""

from __future__ import annotations

from coordinator import hints as hint
from coordinator.errors import NotFound
from coordinator.hints import Hints
from coordinator.models import Abandon, AbandonReason, WorkflowRecord
from coordinator.ownership import Ownership
from coordinator.replies import Replies
from coordinator.store import control, workflows
from coordinator.store.database import Database
from coordinator.waiters import Waiters


class Control:
    def __init__(
        self,
        db: Database,
        ownership: Ownership,
        replies: Replies,
        hints: Hints,
        workflow_waiters: Waiters[str, WorkflowRecord],
    ) -> None:
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

    def _stop_all(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            holder = self._ownership.holder(workflow_id)
            if holder is not None:
                session, epoch = holder
                self._ownership.finish(session, workflow_id, epoch)
                message = f"workflow {workflow_id!r} was cancelled"
                self._replies.send(session, Abandon(workflow_id, epoch, AbandonReason.CANCELLED, message))
            self._waiters.notify(workflow_id)
