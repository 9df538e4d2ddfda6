"""What the transactions of the waits write path did, told once they have committed.

``Effects`` collects what one transaction did; ``Deliveries`` publishes the hints other
coordinators need (in the transaction) and, after the commit, tells the executions, the
dispatcher, the timer service and the callers concerned. It also acts on the hints other
coordinators, and PostgreSQL itself (see ``migrations/0006_children.sql``), publish: a
wait that ended elsewhere is delivered to the execution holding it here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime

from coordinator import hints as hint
from coordinator.batcher import Batcher
from coordinator.dispatch import Dispatcher
from coordinator.errors import Code, CoordinatorError
from coordinator.hints import Hints
from coordinator.models import (
    Abandon,
    AbandonReason,
    ErrorInfo,
    Payload,
    Send,
    SetEvent,
    StartChild,
    StepDone,
    StepRecord,
    Suspend,
    Wait,
    WorkflowRecord,
)
from coordinator.ownership import Ownership
from coordinator.replies import Replies
from coordinator.sessions import Session
from coordinator.stats import Stats
from coordinator.store import waits
from coordinator.store.database import Connection, Database
from coordinator.store.waits import Ended, Locked
from coordinator.timers import Timers
from coordinator.waiters import Waiters

log = logging.getLogger(__name__)


Op = Wait | Send | SetEvent | Suspend | StartChild


@dataclass(slots=True)
class Pending:
    op: Op
    # The worker that sent it; None for a client's Send.
    session: Session | None
    # A client's Send: answered with whether it was a duplicate.
    future: asyncio.Future[bool] | None = None


@dataclass
class Effects:
    """What one transaction did that must be told once it has committed."""

    done: list[tuple[Session, StepDone]] = field(default_factory=list)
    refused: list[tuple[Pending, Locked | None]] = field(default_factory=list)
    rejected: list[tuple[Pending, str]] = field(default_factory=list)
    waiting: list[Wait] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)
    timers: list[datetime] = field(default_factory=list)
    events: list[tuple[str, str, Payload]] = field(default_factory=list)
    suspended: list[tuple[Session, Suspend, str, bool]] = field(default_factory=list)
    answers: list[tuple[asyncio.Future[bool], bool | CoordinatorError]] = field(default_factory=list)
    timed_out: list[tuple[str | None, WorkflowRecord]] = field(default_factory=list)


def done_from_record(ev: Wait | Send | SetEvent | StartChild, step: StepRecord) -> StepDone:
    """The recorded outcome of an operation, as its StepDone."""
    return StepDone(ev.workflow_id, ev.epoch, ev.step_id, step.output, step.error, step.timed_out)


class Deliveries:
    """The delivery half of ``Waits`` (its base class)."""

    def __init__(
        self,
        db: Database,
        ownership: Ownership,
        replies: Replies,
        dispatcher: Dispatcher,
        timer_service: Timers,
        hints: Hints,
        workflow_waiters: Waiters[str, WorkflowRecord],
        *,
        stats: Stats | None = None,
    ) -> None:
        self._db = db
        self._stats = stats if stats is not None else Stats()
        self._ownership = ownership
        self._replies = replies
        self._dispatcher = dispatcher
        self._timers = timer_service
        self._hints = hints
        self._workflow_waiters = workflow_waiters
        # Callers of GetEvent, by (workflow_id, key).
        self.event_waiters: Waiters[tuple[str, str], Payload] = Waiters()
        # Up to 1000 a batch, like starts: a waits transaction costs a dozen round trips
        # whatever its size, and under a burst of waits (suspensions, sleeps) batches of 200
        # fell behind, so Waits and Suspends queued here by the ten thousand; that queue's
        # peak is memory the process keeps (bench (i): +42 MB RSS for a second 100k
        # suspended at 200, +0.8 MB at 1000, each 100k suspended in half the time).
        self.batcher: Batcher[Pending] = Batcher(
            "waits", self._flush, self._fail, max_batch=1000, stats=self._stats.batcher("waits")
        )
        # Deliveries after a hint, kept so that they are not collected while they run.
        self._deliveries: set[asyncio.Task[None]] = set()
        timer_service.firing_with(self.fire)
        hints.on(hint.WAKE, self._hinted_wake)
        hints.on(hint.READY, dispatcher.mark_ready)
        hints.on(hint.EVENT, self._hinted_events)
        hints.on(hint.DONE, self._hinted_done)
        hints.on_resync(self.recheck)
        hints.on_resync(timer_service.recheck)
        hints.on_resync(self.event_waiters.notify_all)

    async def _flush(self, items: list[Pending]) -> None:
        raise NotImplementedError  # the write path: Waits

    async def fire(self, limit: int) -> int:
        raise NotImplementedError  # due timers: Waits

    async def _publish(self, conn: Connection, fx: Effects) -> None:
        """Hints for other coordinators, in the same transaction."""
        remote = [
            [e.workflow_id, e.step_id] for e in fx.ended if self._ownership.holder(e.workflow_id) is None
        ]
        if remote:
            await self._hints.publish(conn, hint.WAKE, remote)
        if fx.woken:
            await self._hints.publish(conn, hint.READY, sorted(set(fx.woken)))
        if fx.events:
            await self._hints.publish(conn, hint.EVENT, [[w, k] for w, k, _ in fx.events])
        if fx.timed_out:
            await self._hints.publish(conn, hint.DONE, [r.workflow_id for _, r in fx.timed_out])

    def _deliver(self, fx: Effects) -> None:
        """Tells everyone concerned, once the transaction has committed."""
        for session, done in fx.done:
            self._replies.send(session, done)
        for item, row in fx.refused:
            assert item.session is not None
            op = item.op
            self._replies.refused(
                item.session,
                op.workflow_id,
                op.epoch,
                getattr(op, "step_id", ""),
                row.status if row is not None else None,
                row.epoch if row is not None else None,
            )
        for item, message in fx.rejected:
            assert item.session is not None
            op = item.op
            self._replies.reject(
                item.session,
                op.workflow_id,
                op.epoch,
                getattr(op, "step_id", ""),
                Code.FAILED_PRECONDITION,
                message,
            )
        for ev in fx.waiting:
            self._ownership.wait_began(ev.workflow_id, ev.epoch, ev.step_id)
        for e in fx.ended:
            self._wake(e.workflow_id, e.step_id, e.output, e.timed_out, e.error)
        for session, suspension, _name, _suspended in fx.suspended:
            self._ownership.suspend(session, suspension.workflow_id, suspension.epoch)
        if fx.woken:
            self._dispatcher.mark_ready(fx.woken)
        if fx.timers:
            self._timers.schedule(min(fx.timers))
        for workflow_id, key, value in fx.events:
            self.event_waiters.notify((workflow_id, key), value)
        for future, outcome in fx.answers:
            if not future.done():
                if isinstance(outcome, CoordinatorError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        for owner, record in fx.timed_out:
            self._timed_out(owner, record)

    def _wake(
        self,
        workflow_id: str,
        step_id: str,
        output: Payload | None,
        timed_out: bool,
        error: ErrorInfo | None = None,
    ) -> None:
        """A wait ended: the execution holding it here hears of it."""
        holder = self._ownership.holder(workflow_id)
        if holder is None:
            return
        session, epoch = holder
        self._ownership.wait_ended(workflow_id, step_id)
        self._replies.send(session, StepDone(workflow_id, epoch, step_id, output, error, timed_out))

    def _timed_out(self, owner: str | None, record: WorkflowRecord) -> None:
        self._stats.workflows_finished[record.status.value] += 1
        holder = self._ownership.holder(record.workflow_id)
        if holder is not None:
            session, epoch = holder
            self._ownership.finish(session, record.workflow_id, epoch)
            self._replies.send(session, _abandon_message(record.workflow_id, epoch))
        self._workflow_waiters.notify(record.workflow_id, record)

    def _fail(self, items: list[Pending], error: CoordinatorError) -> None:
        for item in items:
            if item.future is not None:
                if not item.future.done():
                    item.future.set_exception(error)
            elif item.session is not None:
                op = item.op
                self._replies.reject(
                    item.session, op.workflow_id, op.epoch, getattr(op, "step_id", ""), error.code, str(error)
                )

    # --- hints from other coordinators ------------------------------------------------------

    def _hinted_wake(self, items: list[list[str]]) -> None:
        held = [(w, s) for w, s in items if self._ownership.holder(w) is not None]
        if held:
            task = asyncio.get_running_loop().create_task(self._deliver_hinted(held))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver_hinted(self, keys: list[tuple[str, str]]) -> None:
        try:
            await self._deliver_ended(keys)
        except CoordinatorError as exc:
            log.info("could not deliver %d waits ended elsewhere (the resync will): %s", len(keys), exc)

    async def _deliver_ended(self, keys: list[tuple[str, str]]) -> None:
        async with self._db.connection() as conn:
            found = await waits.ended_among(conn, keys)
        for workflow_id, step in found:
            self._wake(workflow_id, step.step_id, step.output, step.timed_out, step.error)

    async def recheck(self) -> None:
        """Delivers waits held here that ended without this coordinator hearing of it."""
        open_waits = self._ownership.open_waits()
        if open_waits:
            await self._deliver_ended(open_waits)

    def _hinted_events(self, items: list[list[str]]) -> None:
        for workflow_id, key in items:
            self.event_waiters.notify((workflow_id, key))

    def _hinted_done(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            holder = self._ownership.holder(workflow_id)
            if holder is not None:
                session, epoch = holder
                self._ownership.finish(session, workflow_id, epoch)
                self._replies.send(session, _abandon_message(workflow_id, epoch))
            self._workflow_waiters.notify(workflow_id)


def _abandon_message(workflow_id: str, epoch: int) -> Abandon:
    return Abandon(workflow_id, epoch, AbandonReason.TIMED_OUT, f"workflow {workflow_id!r} timed out")
