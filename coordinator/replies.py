"""Answers to a worker about its executions that more than one part of the core gives.

An answer goes to the worker's current session (a worker that reconnected resends what a
dead session lost), and an execution the worker is told to stop leaves ``Ownership``.
"""

from __future__ import annotations

import logging

from coordinator import logs
from coordinator.errors import Code
from coordinator.models import Abandon, AbandonReason, CoordinatorEvent, Rejected, WorkflowStatus
from coordinator.ownership import Ownership
from coordinator.sessions import Session, Sessions
from coordinator.stats import Stats

log = logging.getLogger(__name__)


class Replies:
    def __init__(self, sessions: Sessions, ownership: Ownership, stats: Stats) -> None:
        self._sessions = sessions
        self._ownership = ownership
        self._stats = stats

    def send(self, session: Session, event: CoordinatorEvent) -> None:
        self._sessions.current(session).send(event)

    def reject(
        self, session: Session, workflow_id: str, epoch: int, step_id: str, code: Code, msg: str
    ) -> None:
        """The event was refused as sent; nothing of it was written."""
        self.send(session, Rejected(workflow_id, epoch, step_id, code, msg))

    def abandon(
        self, session: Session, workflow_id: str, epoch: int, reason: AbandonReason, msg: str
    ) -> None:
        """A write was refused because the execution is no longer current: it must stop."""
        self._stats.stale_writes_rejected += 1
        log.info(
            "write refused: workflow %s epoch %d from %s: %s",
            workflow_id,
            epoch,
            session.worker_id,
            msg,
            extra=logs.about(workflow_id, epoch, worker_id=session.worker_id),
        )
        self._ownership.abandon(session, workflow_id, epoch)
        self.send(session, Abandon(workflow_id, epoch, reason, msg))

    def refused(
        self,
        session: Session,
        workflow_id: str,
        epoch: int,
        step_id: str,
        status: WorkflowStatus | None,
        current_epoch: int | None,
    ) -> None:
        """Explains a fenced write that matched nothing, from the workflow as it is now."""
        if status is None:
            self.reject(
                session,
                workflow_id,
                epoch,
                step_id,
                Code.NOT_FOUND,
                f"workflow {workflow_id!r} does not exist",
            )
        elif status.done:
            self.abandon(
                session,
                workflow_id,
                epoch,
                AbandonReason.FINISHED,
                f"workflow {workflow_id!r} is already {status.value}",
            )
        else:
            self.abandon(
                session,
                workflow_id,
                epoch,
                AbandonReason.STALE_EPOCH,
                f"epoch {epoch} is stale; the workflow is at epoch {current_epoch}",
            )
