"""The per-step write path: step starts, step results and workflow results, group-committed.

Everything the workers report in one batch is written in one transaction (one statement
when only steps are in it), fenced by epoch and owner in the statements themselves. Only
then are StepAck and WorkflowAck sent. A write that was not applied is explained from the
database and answered: an idempotent repeat is acknowledged again, a stale execution is
told to Abandon, a name clash is Rejected.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator.batcher import Batcher
from coordinator.errors import Code, CoordinatorError
from coordinator.interest import Interest
from coordinator.models import (
    AbandonReason,
    Rejected,
    StepAck,
    StepResult,
    StepStart,
    StepStatus,
    WorkflowAck,
    WorkflowRecord,
    WorkflowResult,
    WorkflowStatus,
)
from coordinator.ownership import Ownership
from coordinator.replies import Replies
from coordinator.sessions import Session, Sessions
from coordinator.stats import Stats
from coordinator.store import steps, workflows
from coordinator.store.database import Database
from coordinator.store.steps import StepWrite
from coordinator.store.workflows import Outcome
from coordinator.waiters import Waiters

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PendingStep:
    session: Session
    write: StepWrite
    # A result is acknowledged once durable; a start is not.
    ack: bool


@dataclass(slots=True)
class PendingOutcome:
    session: Session
    outcome: Outcome


Pending = PendingStep | PendingOutcome


# The error an SDK reports when a workflow's code left its history (see WORKFLOW_STATUS_PAUSED).
NON_DETERMINISM = "stepline.NonDeterminismError"


class Recorder:
    def __init__(
        self,
        db: Database,
        sessions: Sessions,
        ownership: Ownership,
        replies: Replies,
        waiters: Waiters[str, WorkflowRecord],
        interest: Interest,
        *,
        stats: Stats | None = None,
    ) -> None:
        self._db = db
        self._stats = stats if stats is not None else Stats()
        self._sessions = sessions
        self._ownership = ownership
        self._replies = replies
        self._waiters = waiters
        self._interest = interest
        self.batcher: Batcher[Pending] = Batcher(
            "steps", self._flush, self._fail, stats=self._stats.batcher("steps")
        )

    def step_start(self, session: Session, ev: StepStart) -> None:
        self._ownership.active(ev.workflow_id)  # a step starts: an idle execution is not any more
        write = StepWrite(
            ev.workflow_id,
            ev.epoch,
            session.worker_id,
            ev.step_id,
            ev.name,
            StepStatus.RUNNING,
            None,
            None,
            ev.attempt,
        )
        self.batcher.add(PendingStep(session, write, False))

    def step_result(self, session: Session, ev: StepResult) -> None:
        status = StepStatus.FAILED if ev.error is not None else StepStatus.SUCCEEDED
        write = StepWrite(
            ev.workflow_id,
            ev.epoch,
            session.worker_id,
            ev.step_id,
            ev.name,
            status,
            ev.output,
            ev.error,
            ev.attempt,
        )
        self.batcher.add(PendingStep(session, write, True))

    def workflow_result(self, session: Session, ev: WorkflowResult) -> None:
        status = WorkflowStatus.FAILED if ev.error is not None else WorkflowStatus.SUCCEEDED
        if ev.error is not None and ev.error.type == NON_DETERMINISM:
            status = WorkflowStatus.PAUSED  # resumable on fixed code, not failed
        at = datetime.now(UTC)
        outcome = Outcome(ev.workflow_id, ev.epoch, session.worker_id, status, ev.output, ev.error, at)
        self.batcher.add(PendingOutcome(session, outcome))

    async def _flush(self, items: list[Pending]) -> None:
        step_items: dict[tuple[str, str], PendingStep] = {}
        outcome_items: list[PendingOutcome] = []
        for item in items:
            if isinstance(item, PendingStep):
                key = (item.write.workflow_id, item.write.step_id)
                earlier = step_items.get(key)
                step_items[key] = item if earlier is None else _merge(earlier, item)
            else:
                outcome_items.append(item)
        # Sorted, so that batches written at the same time (by several coordinators) take
        # conflicting keys in the same order and do not deadlock.
        writes = [step_items[k].write for k in sorted(step_items)]
        outcomes = sorted((p.outcome for p in outcome_items), key=lambda o: o.workflow_id)
        if writes and outcomes:
            async with self._db.writer() as conn, conn.transaction():
                refused = await steps.upsert(conn, writes)
                completed = await workflows.complete(conn, outcomes)
        else:
            async with self._db.writer() as conn:
                refused = await steps.upsert(conn, writes) if writes else set()
                completed = await workflows.complete(conn, outcomes) if outcomes else {}
        for key, item in step_items.items():
            if item.ack and key not in refused:
                w = item.write
                self._reply(item.session).send(StepAck(w.workflow_id, w.epoch, w.step_id))
        if refused:
            await self._answer_refused_steps({k: step_items[k] for k in refused})
        unfinished = [p for p in outcome_items if p.outcome.workflow_id not in completed]
        for p in outcome_items:
            record = completed.get(p.outcome.workflow_id)
            if record is not None:
                self._finished(p.session, p.outcome.workflow_id, p.outcome.epoch, p.outcome.status, record)
        if unfinished:
            await self._answer_refused_outcomes(unfinished)

    def _reply(self, session: Session) -> Session:
        return self._sessions.current(session)

    def _finished(
        self,
        session: Session,
        workflow_id: str,
        epoch: int,
        status: WorkflowStatus,
        record: WorkflowRecord | None = None,
    ) -> None:
        self._ownership.finish(session, workflow_id, epoch)
        if record is not None:
            self._stats.workflows_finished[record.status.value] += 1
        self._reply(session).send(WorkflowAck(workflow_id, epoch, status))
        self._waiters.notify(workflow_id, record)
        self._interest.finished(workflow_id)

    def _abandon(
        self, session: Session, workflow_id: str, epoch: int, reason: AbandonReason, msg: str
    ) -> None:
        self._replies.abandon(session, workflow_id, epoch, reason, msg)

    async def _answer_refused_steps(self, refused: dict[tuple[str, str], PendingStep]) -> None:
        async with self._db.connection() as conn:
            found = await steps.explain(conn, list(refused))
        for key, item in refused.items():
            w, f = item.write, found[key]
            if f.workflow_status is None:
                self._reply(item.session).send(
                    Rejected(
                        w.workflow_id,
                        w.epoch,
                        w.step_id,
                        Code.NOT_FOUND,
                        f"workflow {w.workflow_id!r} does not exist",
                    )
                )
            elif f.step is not None and f.step.epoch == w.epoch and f.step.status is not StepStatus.RUNNING:
                # A result resent after a reconnect, already durable: acknowledge it again.
                if item.ack and f.step.name == w.name:
                    self._reply(item.session).send(StepAck(w.workflow_id, w.epoch, w.step_id))
            elif f.workflow_epoch != w.epoch or f.owner_id != w.worker_id:
                self._abandon(
                    item.session,
                    w.workflow_id,
                    w.epoch,
                    AbandonReason.STALE_EPOCH,
                    f"epoch {w.epoch} is stale; the workflow is at epoch {f.workflow_epoch}",
                )
            elif f.workflow_status != WorkflowStatus.RUNNING.value:
                self._abandon(
                    item.session,
                    w.workflow_id,
                    w.epoch,
                    AbandonReason.FINISHED,
                    f"workflow {w.workflow_id!r} is already {f.workflow_status}",
                )
            elif f.step is not None and f.step.name != w.name:
                self._reply(item.session).send(
                    Rejected(
                        w.workflow_id,
                        w.epoch,
                        w.step_id,
                        Code.FAILED_PRECONDITION,
                        f"non-determinism: step {w.step_id!r} was recorded as {f.step.name!r}, "
                        f"now reported as {w.name!r}",
                    )
                )
            else:
                assert f.step is not None
                self._reply(item.session).send(
                    Rejected(
                        w.workflow_id,
                        w.epoch,
                        w.step_id,
                        Code.FAILED_PRECONDITION,
                        f"step {w.step_id!r} already has a final outcome from epoch {f.step.epoch}",
                    )
                )

    async def _answer_refused_outcomes(self, refused: list[PendingOutcome]) -> None:
        async with self._db.connection() as conn:
            found = await workflows.get_many(conn, [p.outcome.workflow_id for p in refused])
        for p in refused:
            o, record = p.outcome, found.get(p.outcome.workflow_id)
            if record is None:
                self._reply(p.session).send(
                    Rejected(
                        o.workflow_id,
                        o.epoch,
                        "",
                        Code.NOT_FOUND,
                        f"workflow {o.workflow_id!r} does not exist",
                    )
                )
            elif record.epoch == o.epoch and record.status.done:
                # Resent after a reconnect (or retried after an unanswered commit) and
                # already final under this epoch: acknowledge with the recorded status.
                self._finished(p.session, o.workflow_id, o.epoch, record.status, record)
            elif record.status.done:
                self._abandon(
                    p.session,
                    o.workflow_id,
                    o.epoch,
                    AbandonReason.FINISHED,
                    f"workflow {o.workflow_id!r} is already {record.status.value}",
                )
            else:
                self._abandon(
                    p.session,
                    o.workflow_id,
                    o.epoch,
                    AbandonReason.STALE_EPOCH,
                    f"epoch {o.epoch} is stale; the workflow is at epoch {record.epoch}",
                )

    def _fail(self, items: list[Pending], error: CoordinatorError) -> None:
        for item in items:
            if isinstance(item, PendingStep):
                w = item.write
                self._reply(item.session).send(
                    Rejected(w.workflow_id, w.epoch, w.step_id, error.code, str(error))
                )
            else:
                o = item.outcome
                self._reply(item.session).send(Rejected(o.workflow_id, o.epoch, "", error.code, str(error)))


def _merge(earlier: PendingStep, later: PendingStep) -> PendingStep:
    """One write per step per batch: the later event wins, with the most attempts seen."""
    a, b = earlier.write, later.write
    if a.attempts > b.attempts:
        b = dataclasses.replace(b, attempts=a.attempts)
    return PendingStep(later.session, b, earlier.ack or later.ack)
