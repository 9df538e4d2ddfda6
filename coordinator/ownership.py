"""Which connected worker runs which execution: the one owner of that, in memory.

PostgreSQL holds the truth (``workflows.owner_id`` and ``epoch``, changed only by the
fenced statements in ``store/``). This mirrors it for the workers connected to this
coordinator, so that capacity, replies and waits need no query. Nothing else changes it,
and every change is one of these transitions, made when the statement that makes it true
in PostgreSQL has committed (``assign``: right before the Assignment is sent):

    =========  ==============================================  =========================
    assign     a claimed or newly started workflow goes to a   claim, insert with owner
               session
    reattach   a reconnecting worker keeps what it still runs  workflows.reattach
               under the same epoch; its old session's other
               executions are gone
    release    the worker gave one execution back              workflows.release_one
    suspend    the worker gave back an execution that waits    waits.suspend
    abandon    a write was refused as stale or final; the      (the refusal)
               worker was told to stop
    finish     the workflow's final result is durable, or it   workflows.complete,
               timed out                                       timers.time_out
    end        the session closed: everything it held goes,    workflows.release
               handed off if the worker drained
    =========  ==============================================  =========================

Within a held execution, the durable waits it has open (``wait_began``/``wait_ended``)
and whether it is ``idle`` (blocked on those waits only, as the worker said): an idle
execution does not count against its worker's capacity until it is ``active`` again.

A transition that frees a slot calls ``on_room`` so that the dispatcher looks for work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from coordinator.models import ExecutionRef
from coordinator.sessions import Session


class Held:
    """One execution held by a session here."""

    __slots__ = ("epoch", "idle", "session", "waits")

    def __init__(self, session: Session, epoch: int) -> None:
        self.session = session
        self.epoch = epoch
        self.idle = False
        # Step IDs of the durable waits it has open.
        self.waits: set[str] = set()


class Ownership:
    def __init__(self, on_room: Callable[[], None]) -> None:
        self._on_room = on_room
        # workflow_id -> every execution held by a session here.
        self._holders: dict[str, Held] = {}
        # session -> {workflow_id: Held}: the same, by session.
        self._held: dict[Session, dict[str, Held]] = {}
        # session -> how many of its executions are idle.
        self._idle: dict[Session, int] = {}

    # --- questions ----------------------------------------------------------------------

    def holder(self, workflow_id: str) -> tuple[Session, int] | None:
        """The session that runs the workflow here, and under which epoch; None if none does."""
        held = self._holders.get(workflow_id)
        return (held.session, held.epoch) if held is not None else None

    def held_count(self) -> int:
        """Executions held by any session here."""
        return len(self._holders)

    def count(self, session: Session) -> int:
        return len(self._held.get(session, ()))

    def free_slots(self, session: Session) -> int:
        """How many more workflows the session may be given (none while it drains or is
        closed); idle executions take no slot."""
        if session.draining or session.closed.is_set():
            return 0
        return session.capacity - self.count(session) + self._idle.get(session, 0)

    def open_waits(self) -> list[tuple[str, str]]:
        """(workflow_id, step_id) of every open wait of an execution held here."""
        return [(w, s) for w, held in self._holders.items() for s in held.waits]

    # --- transitions --------------------------------------------------------------------

    def assign(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._put(session, workflow_id, epoch)

    def reattach(self, session: Session, previous: Session | None, refs: Iterable[ExecutionRef]) -> None:
        """``session`` keeps ``refs``; whatever ``previous`` (the session it replaces) held
        besides them was released when the worker registered again."""
        if previous is not None:
            for workflow_id in list(self._held.get(previous, ())):
                self._drop(previous, workflow_id)
            self._held.pop(previous, None)
        for ref in refs:
            self._put(session, ref.workflow_id, ref.epoch)

    def release(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._drop_if(session, workflow_id, epoch)

    def suspend(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._drop_if(session, workflow_id, epoch)

    def abandon(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._drop_if(session, workflow_id, epoch)

    def finish(self, session: Session | None, workflow_id: str, epoch: int | None = None) -> None:
        """The workflow finished; ``session`` and ``epoch`` None: whoever holds it here."""
        held = self._holders.get(workflow_id)
        if held is not None and session is None:
            session, epoch = held.session, held.epoch
        if session is not None and epoch is not None:
            self._drop_if(session, workflow_id, epoch)

    def end(self, session: Session) -> list[str]:
        """The session closed; returns the workflows it held."""
        held = list(self._held.pop(session, {}))
        self._idle.pop(session, None)
        for workflow_id in held:
            del self._holders[workflow_id]
        if held:
            self._on_room()
        return held

    def wait_began(self, workflow_id: str, epoch: int, step_id: str) -> None:
        held = self._holders.get(workflow_id)
        if held is not None and held.epoch == epoch:
            held.waits.add(step_id)

    def wait_ended(self, workflow_id: str, step_id: str) -> None:
        """The wait ended: the execution has work to do again."""
        held = self._holders.get(workflow_id)
        if held is not None:
            held.waits.discard(step_id)
            self._set_idle(held, False)

    def idle(self, session: Session, workflow_id: str, epoch: int) -> None:
        held = self._holders.get(workflow_id)
        mine = held is not None and held.session.worker_id == session.worker_id and held.epoch == epoch
        if held is not None and mine and not held.idle:
            self._set_idle(held, True)
            self._on_room()

    def active(self, workflow_id: str) -> None:
        """The execution does something again (a step starts): it takes its slot back."""
        if self._idle:
            held = self._holders.get(workflow_id)
            if held is not None:
                self._set_idle(held, False)

    # --- internals ----------------------------------------------------------------------

    def _set_idle(self, held: Held, idle: bool) -> None:
        if held.idle is idle:
            return
        held.idle = idle
        count = self._idle.get(held.session, 0) + (1 if idle else -1)
        if count:
            self._idle[held.session] = count
        else:
            self._idle.pop(held.session, None)

    def _put(self, session: Session, workflow_id: str, epoch: int) -> None:
        current = self._holders.get(workflow_id)
        if current is not None:
            self._drop(current.session, workflow_id)
        held = Held(session, epoch)
        self._holders[workflow_id] = held
        self._held.setdefault(session, {})[workflow_id] = held

    def _drop_if(self, session: Session, workflow_id: str, epoch: int) -> None:
        """Drops the execution if ``session``, or the worker's session that replaced it,
        holds it under ``epoch``."""
        current = self._holders.get(workflow_id)
        if current is None or current.epoch != epoch or current.session.worker_id != session.worker_id:
            return
        self._drop(current.session, workflow_id)
        self._on_room()

    def _drop(self, session: Session, workflow_id: str) -> None:
        held = self._holders.pop(workflow_id)
        self._set_idle(held, False)
        by_session = self._held.get(session)
        if by_session is not None:
            by_session.pop(workflow_id, None)
            if not by_session:
                del self._held[session]
