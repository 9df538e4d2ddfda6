"""Durable waits, messages and events: Wait, Send, SetEvent, Idle and Suspend from workers,
Send from clients, and the firing of due timers.

Everything that arrives together is written in one transaction (``Batcher``): the
workflows concerned are locked first (``store/waits.py`` says why), each operation is
fenced by its execution's epoch and owner against the locked row, and the outcome of an
operation is sent (StepDone) only after the commit. An operation whose step ID is already
recorded (resent after a reconnect, or reached again on a replay) changes nothing and is
answered with the recorded outcome.

A wait that ends because of something else (a message, an event, a timer) is delivered
to the execution holding it here; held by a worker of another coordinator, that one is
told by a hint; suspended, the workflow becomes ready and the dispatchers are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from coordinator import hints as hint
from coordinator.batcher import Batcher
from coordinator.dispatch import Dispatcher
from coordinator.errors import Code, CoordinatorError, FailedPrecondition, NotFound
from coordinator.hints import Hints
from coordinator.models import (
    Abandon,
    AbandonReason,
    ErrorInfo,
    Idle,
    Payload,
    Send,
    SetEvent,
    StepDone,
    StepKind,
    StepRecord,
    StepStatus,
    Suspend,
    Wait,
    WorkflowRecord,
)
from coordinator.ownership import Ownership
from coordinator.replies import Replies
from coordinator.sessions import Session
from coordinator.store import mailboxes, timers, waits
from coordinator.store.database import Connection, Database
from coordinator.store.waits import Ended, Locked
from coordinator.timers import Timers
from coordinator.waiters import Waiters

log = logging.getLogger(__name__)

Op = Wait | Send | SetEvent | Suspend


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


def _done(ev: Wait | Send | SetEvent, step: StepRecord) -> StepDone:
    """The recorded outcome of an operation, as its StepDone."""
    return StepDone(ev.workflow_id, ev.epoch, ev.step_id, step.output, step.error, step.timed_out)


class Waits:
    def __init__(
        self,
        db: Database,
        ownership: Ownership,
        replies: Replies,
        dispatcher: Dispatcher,
        timer_service: Timers,
        hints: Hints,
        workflow_waiters: Waiters[str, WorkflowRecord],
    ) -> None:
        self._db = db
        self._ownership = ownership
        self._replies = replies
        self._dispatcher = dispatcher
        self._timers = timer_service
        self._hints = hints
        self._workflow_waiters = workflow_waiters
        # Callers of GetEvent, by (workflow_id, key).
        self.event_waiters: Waiters[tuple[str, str], Payload] = Waiters()
        self.batcher: Batcher[Pending] = Batcher("waits", self._flush, self._fail)
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

    # --- worker events (never block) ------------------------------------------------------

    def wait(self, session: Session, ev: Wait) -> None:
        self.batcher.add(Pending(ev, session))

    def send(self, session: Session, ev: Send) -> None:
        self.batcher.add(Pending(ev, session))

    def set_event(self, session: Session, ev: SetEvent) -> None:
        self.batcher.add(Pending(ev, session))

    def suspend(self, session: Session, ev: Suspend) -> None:
        self.batcher.add(Pending(ev, session))

    def idle(self, session: Session, ev: Idle) -> None:
        self._ownership.idle(session, ev.workflow_id, ev.epoch)

    # --- clients --------------------------------------------------------------------------

    async def client_send(self, ev: Send) -> bool:
        """Appends a client's message; returns whether it was a duplicate (idempotency key)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.batcher.add(Pending(ev, None, future))
        return await future

    async def get_event(self, workflow_id: str, key: str, timeout: float) -> Payload | None:
        """The event's value, waiting up to ``timeout`` seconds for it to be set."""
        with self.event_waiters.watching([(workflow_id, key)]) as watch:
            async with self._db.connection() as conn:
                value = await mailboxes.event(conn, workflow_id, key)
                if value is None and not await waits.exists(conn, workflow_id):
                    raise NotFound(f"workflow {workflow_id!r} does not exist")
            if value is not None or timeout <= 0:
                return value
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), timeout)
            value = watch.done.get((workflow_id, key))
        if value is None:  # a hint (re-read), or the wait ended: the last word is PostgreSQL's
            async with self._db.connection() as conn:
                value = await mailboxes.event(conn, workflow_id, key)
        return value

    # --- the write path -------------------------------------------------------------------

    async def _flush(self, items: list[Pending]) -> None:
        """Writes a batch in one transaction, a few statements per kind of operation."""
        fx = Effects()
        ids: set[str] = set()
        for item in items:
            if item.session is not None:
                ids.add(item.op.workflow_id)
            if isinstance(item.op, Send):
                ids.add(item.op.destination)
        async with self._db.transaction() as conn:
            locked = await waits.lock(conn, ids)
            ops: list[tuple[Pending, Locked]] = []  # fenced workflow operations
            sends: list[Pending] = []  # client sends
            suspends: list[Pending] = []
            for item in items:
                if isinstance(item.op, Suspend):
                    suspends.append(item)
                elif item.session is None:
                    sends.append(item)
                elif (row := self._fenced(item, locked, fx)) is not None:
                    ops.append((item, row))
            fresh = await self._answer_recorded(conn, ops, fx)
            boxes: set[tuple[int, str, str]] = set()  # mailboxes (seq, workflow_id, topic) to pair
            ending: list[tuple[int, str, Payload | None, bool]] = []
            await self._begin_waits(conn, [o for o in fresh if isinstance(o[0].op, Wait)], boxes, ending, fx)
            await self._send(
                conn, [*sends, *(i for i, _ in fresh if isinstance(i.op, Send))], locked, boxes, fx
            )
            await self._set_events(conn, [o for o in fresh if isinstance(o[0].op, SetEvent)], ending, fx)
            await self._record_done(conn, [o for o in fresh if not isinstance(o[0].op, Wait)], fx)
            await self._end(conn, ending, fx)
            paired, woken = await mailboxes.pair(conn, sorted(boxes))
            fx.ended += paired
            fx.woken += woken
            if suspends:
                await self._suspend(conn, suspends, locked, fx)
            await self._publish(conn, fx)
        over = {(e.workflow_id, e.step_id) for e in fx.ended}
        fx.waiting = [w for w in fx.waiting if (w.workflow_id, w.step_id) not in over]
        self._deliver(fx)

    def _fenced(self, item: Pending, locked: dict[str, Locked], fx: Effects) -> Locked | None:
        """The locked row, if the execution that sent ``item`` is current; else it is refused."""
        assert item.session is not None
        row = locked.get(item.op.workflow_id)
        if row is not None and row.held_by(item.session.worker_id, item.op.epoch):
            return row
        fx.refused.append((item, row))
        return None

    async def _answer_recorded(
        self, conn: Connection, ops: list[tuple[Pending, Locked]], fx: Effects
    ) -> list[tuple[Pending, Locked]]:
        """Answers the operations whose step ID is recorded (sent again after a reconnect,
        or reached again on a replay) from the record; returns the others, and open waits
        asked for again (whose condition is looked at once more)."""
        recorded = await waits.steps(conn, [(row.seq, _step_id(item)) for item, row in ops])
        fresh = []
        for item, row in ops:
            found = recorded.get((row.seq, _step_id(item)))
            op = item.op
            assert isinstance(op, Wait | Send | SetEvent)
            assert item.session is not None
            kind = _kind(op)
            if found is None or (found.kind is kind and found.status is StepStatus.WAITING):
                fresh.append((item, row))
            elif found.kind is not kind:
                message = f"step {op.step_id!r} was recorded as {found.name!r}, now {kind.step_name!r}"
                fx.rejected.append((item, "non-determinism: " + message))
            else:
                fx.done.append((item.session, _done(op, found)))
        return fresh

    async def _begin_waits(
        self,
        conn: Connection,
        ops: list[tuple[Pending, Locked]],
        boxes: set[tuple[int, str, str]],
        ending: list[tuple[int, str, Payload | None, bool]],
        fx: Effects,
    ) -> None:
        if not ops:
            return
        new = [
            waits.NewWait(
                row.seq,
                ev.step_id,
                ev.kind,
                item.session.worker_id,
                ev.epoch,
                ev.until,
                ev.seconds if ev.kind is StepKind.SLEEP else ev.timeout,
                ev.topic if ev.kind is not StepKind.SLEEP else None,
                ev.target or None,
            )
            for item, row in ops
            if isinstance(ev := item.op, Wait) and item.session is not None
        ]
        begun = await waits.begin_waits(conn, new)
        asked_again = [(w.seq, w.step_id) for w in new if (w.seq, w.step_id) not in begun]
        for wake_at, _ in begun.values():
            if wake_at is not None:
                fx.timers.append(wake_at)
        # Open waits asked for again keep their first wake time: is it past by now?
        again = await waits.steps(conn, asked_again)
        due = await waits.due(conn, [(k[0], k[1], r.wake_at) for k, r in again.items() if r.wake_at])
        due |= {k for k, (_, passed) in begun.items() if passed}
        events = await mailboxes.events(
            conn,
            [(ev.target, ev.topic) for item, _ in ops if (ev := item.op).kind is StepKind.GET_EVENT],  # type: ignore[union-attr]
        )
        recvs = [
            (row, ev) for item, row in ops if isinstance(ev := item.op, Wait) and ev.kind is StepKind.RECV
        ]
        unread = await mailboxes.unread(conn, [(row.seq, ev.topic) for row, ev in recvs])
        for item, row in ops:
            ev = item.op
            assert isinstance(ev, Wait)
            key = (row.seq, ev.step_id)
            if ev.kind is StepKind.RECV and (row.seq, ev.topic) in unread:
                boxes.add((row.seq, row.workflow_id, ev.topic))  # paired below, in step order
                fx.waiting.append(ev)
            elif ev.kind is StepKind.GET_EVENT and (ev.target, ev.topic) in events:
                ending.append((row.seq, ev.step_id, events[(ev.target, ev.topic)], False))
            elif key in due:
                ending.append((row.seq, ev.step_id, None, ev.kind is not StepKind.SLEEP))
            else:
                fx.waiting.append(ev)

    async def _send(
        self,
        conn: Connection,
        items: list[Pending],
        locked: dict[str, Locked],
        boxes: set[tuple[int, str, str]],
        fx: Effects,
    ) -> None:
        """Client sends and workflow sends alike: into the mailboxes, and paired below."""
        deliver: list[tuple[Pending, Locked]] = []
        seen: set[tuple[int, str]] = set()
        duplicate_in_batch: set[int] = set()
        for item in items:
            ev = item.op
            assert isinstance(ev, Send)
            dest = locked.get(ev.destination)
            if dest is None:
                self._sent(item, NotFound(f"workflow {ev.destination!r} does not exist"), fx)
            elif dest.status.done and not (
                ev.idempotency_key and await mailboxes.has_key(conn, dest.seq, ev.idempotency_key)
            ):
                self._sent(
                    item,
                    FailedPrecondition(
                        f"workflow {ev.destination!r} is already {dest.status.value}; "
                        "nothing would read the message"
                    ),
                    fx,
                )
            else:
                if ev.idempotency_key:
                    if (dest.seq, ev.idempotency_key) in seen:
                        duplicate_in_batch.add(id(item))
                    seen.add((dest.seq, ev.idempotency_key))
                deliver.append((item, dest))
        dropped = await mailboxes.send(
            conn,
            [(dest.seq, item.op.topic, item.op.message, item.op.idempotency_key) for item, dest in deliver],  # type: ignore[union-attr]
        )
        for (item, dest), duplicate in zip(deliver, dropped, strict=True):
            ev = item.op
            assert isinstance(ev, Send)
            duplicate = duplicate or id(item) in duplicate_in_batch
            if not duplicate and not dest.status.done:
                boxes.add((dest.seq, dest.workflow_id, ev.topic))
            self._sent(item, duplicate, fx)

    def _sent(self, item: Pending, outcome: bool | CoordinatorError, fx: Effects) -> None:
        """A send's outcome: for a client its answer, for a workflow its recorded step."""
        if item.session is None:
            assert item.future is not None
            fx.answers.append((item.future, outcome))
            return
        ev = item.op
        assert isinstance(ev, Send)
        error = _error(outcome) if isinstance(outcome, CoordinatorError) else None
        fx.done.append((item.session, StepDone(ev.workflow_id, ev.epoch, ev.step_id, None, error, False)))

    async def _set_events(
        self,
        conn: Connection,
        ops: list[tuple[Pending, Locked]],
        ending: list[tuple[int, str, Payload | None, bool]],
        fx: Effects,
    ) -> None:
        if not ops:
            return
        latest: dict[tuple[int, str], tuple[str, Payload]] = {}  # the last one of a batch wins
        for item, row in ops:
            ev = item.op
            assert isinstance(ev, SetEvent)
            assert item.session is not None
            latest[(row.seq, ev.key)] = (row.workflow_id, ev.value)
            fx.done.append((item.session, StepDone(ev.workflow_id, ev.epoch, ev.step_id, None, None, False)))
        await mailboxes.set_events(conn, [(seq, key, value) for (seq, key), (_, value) in latest.items()])
        values = {(workflow_id, key): value for (_, key), (workflow_id, value) in latest.items()}
        waiters = await mailboxes.event_waiters(conn, list(values))
        if waiters:
            # Locked after the setters: a rare deadlock with other setters is retried.
            await waits.lock_seqs(conn, {w[0] for w in waiters})
            ending.extend(
                (seq, step_id, values[(target, key)], False) for seq, step_id, target, key in waiters
            )
        fx.events.extend((workflow_id, key, value) for (workflow_id, key), value in values.items())

    async def _record_done(self, conn: Connection, ops: list[tuple[Pending, Locked]], fx: Effects) -> None:
        """Records the send and set_event steps with the outcomes just given them."""
        errors = {(d.workflow_id, d.step_id): d.error for _, d in fx.done}
        done = []
        for item, row in ops:
            op = item.op
            assert isinstance(op, Send | SetEvent)
            assert item.session is not None
            error = errors.get((op.workflow_id, op.step_id))
            done.append(waits.Done(row.seq, op.step_id, _kind(op), item.session.worker_id, op.epoch, error))
        await waits.record_done(conn, done)

    async def _suspend(
        self, conn: Connection, items: list[Pending], locked: dict[str, Locked], fx: Effects
    ) -> None:
        by_seq: dict[int, tuple[Pending, set[str]]] = {}
        for item in items:
            ev = item.op
            assert isinstance(ev, Suspend)
            assert item.session is not None
            row = locked.get(ev.workflow_id)
            if row is not None and row.held_by(item.session.worker_id, ev.epoch):
                by_seq[row.seq] = (item, set(ev.waiting_on))
            # A stale suspension is dropped: the worker forgot the execution already.
        if not by_seq:
            return
        result = await waits.suspend(conn, {seq: ids for seq, (_, ids) in by_seq.items()})
        by_id = {item.op.workflow_id: item for item, _ in by_seq.values()}
        for workflow_id, name, suspended in result:
            item = by_id[workflow_id]
            assert isinstance(item.op, Suspend)
            assert item.session is not None
            fx.suspended.append((item.session, item.op, name, suspended))
            if not suspended:
                fx.woken.append(name)

    async def _end(
        self, conn: Connection, ending: Sequence[tuple[int, str, Payload | None, bool]], fx: Effects
    ) -> None:
        ended, woken = await waits.end_waits(conn, ending)
        fx.ended.extend(ended)
        fx.woken.extend(woken)

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
            self._wake(e.workflow_id, e.step_id, e.output, e.timed_out)
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

    def _wake(self, workflow_id: str, step_id: str, output: Payload | None, timed_out: bool) -> None:
        """A wait ended: the execution holding it here hears of it."""
        holder = self._ownership.holder(workflow_id)
        if holder is None:
            return
        session, epoch = holder
        self._ownership.wait_ended(workflow_id, step_id)
        self._replies.send(session, StepDone(workflow_id, epoch, step_id, output, None, timed_out))

    def _timed_out(self, owner: str | None, record: WorkflowRecord) -> None:
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

    # --- timers ---------------------------------------------------------------------------

    async def fire(self, limit: int) -> int:
        """Takes up to ``limit`` due timers and applies them, in one transaction; returns
        how many it took (another coordinator may have taken some of those it saw)."""
        fx = Effects()
        async with self._db.transaction() as conn:
            due = await timers.due(conn, limit)
            if not due:
                return 0
            await waits.lock_seqs(conn, {seq for seq, _ in due})
            taken, ended, woken = await timers.take(conn, due)
            fx.ended.extend(ended)
            fx.woken.extend(woken)
            deadlines = [seq for seq, step_id in taken if not step_id]
            if deadlines:
                fx.timed_out = await timers.time_out(conn, deadlines)
            await self._publish(conn, fx)
        self._deliver(fx)
        return len(taken)

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
            self._wake(workflow_id, step.step_id, step.output, step.timed_out)

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


def _kind(op: Wait | Send | SetEvent) -> StepKind:
    return op.kind if isinstance(op, Wait) else StepKind.SEND if isinstance(op, Send) else StepKind.SET_EVENT


def _step_id(item: Pending) -> str:
    op = item.op
    assert isinstance(op, Wait | Send | SetEvent)
    return op.step_id


def _abandon_message(workflow_id: str, epoch: int) -> Abandon:
    return Abandon(workflow_id, epoch, AbandonReason.TIMED_OUT, f"workflow {workflow_id!r} timed out")


def _error(exc: CoordinatorError) -> ErrorInfo:
    kind = "WorkflowNotFoundError" if isinstance(exc, NotFound) else "WorkflowFinishedError"
    return ErrorInfo(f"stepline.{kind}", str(exc))
