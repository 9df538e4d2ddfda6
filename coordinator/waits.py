"""Durable waits, messages and events: Wait, Send, SetEvent, Idle and Suspend from workers,
Send from clients, and the firing of due timers.

Everything that arrives together is written in one transaction (``Batcher``): the
workflows concerned are locked first (``store/waits.py`` says why), each operation is
fenced by its execution's epoch and owner against the locked row, and the outcome of an
operation is sent (StepDone) only after the commit; a batch of clients' sends alone is
one call of a function in PostgreSQL that does the same (``migrations/0011_sends.sql``),
one round trip instead of five. An operation whose step ID is already
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
import time
from collections.abc import Sequence

import orjson

from coordinator import hints as hint
from coordinator.deliveries import Deliveries, Effects, Pending, done_from_record
from coordinator.errors import CoordinatorError, FailedPrecondition, NotFound
from coordinator.models import (
    UNFINISHED,
    ErrorInfo,
    Idle,
    Payload,
    Send,
    SetEvent,
    StartChild,
    StepDone,
    StepKind,
    StepStatus,
    Suspend,
    Wait,
    WorkflowStatus,
)
from coordinator.sessions import Session
from coordinator.store import children, mailboxes, timers, waits
from coordinator.store.database import Connection
from coordinator.store.waits import Locked

log = logging.getLogger(__name__)


class Waits(Deliveries):
    # --- worker events (never block) ------------------------------------------------------

    def wait(self, session: Session, ev: Wait) -> None:
        ev.received = time.monotonic()
        self.batcher.add(Pending(ev, session))

    def send(self, session: Session, ev: Send) -> None:
        self.batcher.add(Pending(ev, session))

    def set_event(self, session: Session, ev: SetEvent) -> None:
        self.batcher.add(Pending(ev, session))

    def suspend(self, session: Session, ev: Suspend) -> None:
        self.batcher.add(Pending(ev, session))

    def start_child(self, session: Session, ev: StartChild) -> None:
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
        if all(item.session is None for item in items):
            return await self._client_sends(items)
        fx = Effects()
        ids: set[str] = set()
        for item in items:
            if item.session is not None:
                ids.add(item.op.workflow_id)
            if isinstance(item.op, Send):
                ids.add(item.op.destination)
            elif isinstance(item.op, StartChild):
                ids.add(item.op.child_id)
            elif isinstance(item.op, Wait) and item.op.kind is StepKind.AWAIT_WORKFLOW:
                ids.add(item.op.target)  # locked, so that it cannot finish unseen meanwhile
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
            # Children first: a wait for one started in the same batch finds it.
            started = await self._start_children(
                conn, [o for o in fresh if isinstance(o[0].op, StartChild)], fx
            )
            begin = [o for o in fresh if isinstance(o[0].op, Wait)]
            await self._begin_waits(conn, begin, locked, started, boxes, ending, fx)
            await self._send(conn, [*sends, *(i for i, _ in fresh if isinstance(i.op, Send))], boxes, fx)
            await self._set_events(conn, [o for o in fresh if isinstance(o[0].op, SetEvent)], ending, fx)
            await self._record_done(conn, [o for o in fresh if isinstance(o[0].op, Send | SetEvent)], fx)
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
            assert isinstance(op, Wait | Send | SetEvent | StartChild)
            assert item.session is not None
            kind = _kind(op)
            if found is None or (found.kind is kind and found.status is StepStatus.WAITING):
                fresh.append((item, row))
            elif found.kind is not kind:
                message = f"step {op.step_id!r} was recorded as {found.name!r}, now {kind.step_name!r}"
                fx.rejected.append((item, "non-determinism: " + message))
            else:
                fx.done.append((item.session, done_from_record(op, found)))
        return fresh

    async def _begin_waits(
        self,
        conn: Connection,
        ops: list[tuple[Pending, Locked]],
        locked: dict[str, Locked],
        started: set[str],
        boxes: set[tuple[int, str, str]],
        ending: list[tuple[int, str, Payload | None, bool]],
        fx: Effects,
    ) -> None:
        if not ops:
            return
        now = time.monotonic()
        new = [
            waits.NewWait(
                row.seq,
                ev.step_id,
                ev.kind,
                item.session.worker_id,
                ev.epoch,
                ev.until,
                _since(ev.seconds if ev.kind is StepKind.SLEEP else ev.timeout, ev.received, now),
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
        awaited: set[str] = set()
        finished: list[tuple[int, str, str, str]] = []  # awaits of finished (or no) workflows
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
            elif ev.kind is StepKind.AWAIT_WORKFLOW and _over(locked.get(ev.target), ev.target in started):
                finished.append((row.seq, row.workflow_id, ev.step_id, ev.target))
            else:
                if ev.kind is StepKind.AWAIT_WORKFLOW:
                    awaited.add(ev.target)
                fx.waiting.append(ev)
        await children.mark_awaited(conn, awaited)
        fx.ended += await children.end_finished(conn, finished)

    async def _send(
        self, conn: Connection, items: list[Pending], boxes: set[tuple[int, str, str]], fx: Effects
    ) -> None:
        """Client sends and workflow sends alike: into the mailboxes, and paired below."""
        sent = await mailboxes.send(conn, [_message(item) for item in items])
        for item, outcome in zip(items, sent, strict=True):
            ev = item.op
            assert isinstance(ev, Send)
            # A PAUSED workflow keeps its messages for when it is resumed: its recvs are
            # sent again then, and take them.
            if outcome.outcome == "sent" and outcome.seq is not None and outcome.status in UNFINISHED:
                boxes.add((outcome.seq, ev.destination, ev.topic))
            self._sent(item, _answer(ev, outcome), fx)

    async def _client_sends(self, items: list[Pending]) -> None:
        """A batch of clients' sends alone: one round trip to PostgreSQL, with no
        transaction of its own around it (migrations/0011_sends.sql), since most of the
        time between a send and the recv it wakes went to the round trips of one."""
        fx = Effects()
        messages = [_message(item) for item in items]
        held = sorted({m[0] for m in messages if self._ownership.holder(m[0]) is not None})
        async with self._db.connection() as conn:
            sent, fx.ended, fx.woken = await mailboxes.client_send(
                conn, messages, held, hint.CHANNEL, self._hints.coordinator_id
            )
        for item, outcome in zip(items, sent, strict=True):
            assert isinstance(item.op, Send)
            self._sent(item, _answer(item.op, outcome), fx)
        self._deliver(fx)

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

    async def _start_children(
        self, conn: Connection, ops: list[tuple[Pending, Locked]], fx: Effects
    ) -> set[str]:
        """Records the children that are new (ready to be handed out) and the parents'
        START_CHILD steps; a child ID taken by a workflow of another name is a conflict.
        Returns the IDs of the children recorded now."""
        if not ops:
            return set()
        starts = [item.op for item, _ in ops]
        assert all(isinstance(op, StartChild) for op in starts)
        new = [children.NewChild(op.workflow_id, op.step_id, op.child_id, op.name, op.input) for op in starts]  # type: ignore[union-attr]
        inserted, existing = await children.start(conn, new)
        done = []
        for (item, row), c in zip(ops, new, strict=True):
            assert item.session is not None
            error = None
            if c.child_id in inserted:
                fx.woken.append(c.name)
            elif existing.get(c.child_id, c.name) != c.name:
                error = ErrorInfo(
                    "stepline.WorkflowConflictError",
                    f"workflow {c.child_id!r} exists already as a {existing[c.child_id]!r}, not a {c.name!r}",
                )
            op = item.op
            # The output is the child's ID, so that a replay (or a fork) finds that child.
            output = None if error else Payload(orjson.dumps(c.child_id), "json")
            worker = item.session.worker_id
            done.append(waits.Done(row.seq, c.step_id, StepKind.START_CHILD, worker, op.epoch, error, output))
            fx.done.append((item.session, StepDone(c.parent_id, op.epoch, c.step_id, output, error, False)))
        await waits.record_done(conn, done)
        return inserted

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


def _since(seconds: float | None, received: float, now: float) -> float | None:
    """What is left ``now`` of ``seconds`` counted from ``received`` (a wait queued behind a
    burst of writes must not end that much later: bench (h))."""
    if seconds is None or not received:
        return seconds
    return max(0.0, seconds - (now - received))


def _over(target: Locked | None, started_now: bool) -> bool:
    """Whether a workflow waited for has finished, or does not exist (a PAUSED one may
    still be resumed: its waiters go on waiting)."""
    if target is None:
        return not started_now
    return target.status.done and target.status is not WorkflowStatus.PAUSED


def _kind(op: Wait | Send | SetEvent | StartChild) -> StepKind:
    if isinstance(op, Wait):
        return op.kind
    return {Send: StepKind.SEND, SetEvent: StepKind.SET_EVENT, StartChild: StepKind.START_CHILD}[type(op)]


def _step_id(item: Pending) -> str:
    op = item.op
    assert isinstance(op, Wait | Send | SetEvent | StartChild)
    return op.step_id


def _message(item: Pending) -> mailboxes.Message:
    ev = item.op
    assert isinstance(ev, Send)
    return (ev.destination, ev.topic, ev.message, ev.idempotency_key)


def _answer(ev: Send, sent: mailboxes.Sent) -> bool | CoordinatorError:
    """A send's outcome: whether it was a duplicate, or why it was refused."""
    if sent.outcome == "missing":
        return NotFound(f"workflow {ev.destination!r} does not exist")
    if sent.outcome == "finished":
        assert sent.status is not None
        return FailedPrecondition(
            f"workflow {ev.destination!r} is already {sent.status.value}; nothing would read the message"
        )
    return sent.outcome == "duplicate"


def _error(exc: CoordinatorError) -> ErrorInfo:
    kind = "WorkflowNotFoundError" if isinstance(exc, NotFound) else "WorkflowFinishedError"
    return ErrorInfo(f"stepline.{kind}", str(exc))
