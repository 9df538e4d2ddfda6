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
    abandon    a write was refused as stale or final; the      (the refusal)
               worker was told to stop
    finish     the workflow's final result is durable          workflows.complete
    end        the session closed: everything it held goes,    workflows.release
               handed off if the worker drained
    =========  ==============================================  =========================

A transition that frees a slot calls ``on_room`` so that the dispatcher looks for work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from coordinator.models import ExecutionRef
from coordinator.sessions import Session


class Ownership:
    def __init__(self, on_room: Callable[[], None]) -> None:
        self._on_room = on_room
        # workflow_id -> (session, epoch) of every execution held by a session here.
        self._holders: dict[str, tuple[Session, int]] = {}
        # session -> {workflow_id: epoch}: the same, by session.
        self._held: dict[Session, dict[str, int]] = {}

    # --- questions ----------------------------------------------------------------------

    def holder(self, workflow_id: str) -> tuple[Session, int] | None:
        """The session that runs the workflow here, and under which epoch; None if none does."""
        return self._holders.get(workflow_id)

    def holds(self, session: Session, workflow_id: str, epoch: int) -> bool:
        return self._holders.get(workflow_id) == (session, epoch)

    def count(self, session: Session) -> int:
        return len(self._held.get(session, ()))

    def free_slots(self, session: Session) -> int:
        """How many more workflows the session may be given (none while it drains or is closed)."""
        if session.draining or session.closed.is_set():
            return 0
        return session.capacity - self.count(session)

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

    def abandon(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._drop_if(session, workflow_id, epoch)

    def finish(self, session: Session, workflow_id: str, epoch: int) -> None:
        self._drop_if(session, workflow_id, epoch)

    def end(self, session: Session) -> list[str]:
        """The session closed; returns the workflows it held."""
        held = list(self._held.pop(session, {}))
        for workflow_id in held:
            del self._holders[workflow_id]
        if held:
            self._on_room()
        return held

    # --- internals ----------------------------------------------------------------------

    def _put(self, session: Session, workflow_id: str, epoch: int) -> None:
        current = self._holders.get(workflow_id)
        if current is not None and current[0] is not session:
            self._held.get(current[0], {}).pop(workflow_id, None)
        self._holders[workflow_id] = (session, epoch)
        self._held.setdefault(session, {})[workflow_id] = epoch

    def _drop_if(self, session: Session, workflow_id: str, epoch: int) -> None:
        """Drops the execution if ``session``, or the worker's session that replaced it,
        holds it under ``epoch``."""
        current = self._holders.get(workflow_id)
        if current is None or current[1] != epoch or current[0].worker_id != session.worker_id:
            return
        self._drop(current[0], workflow_id)
        self._on_room()

    def _drop(self, session: Session, workflow_id: str) -> None:
        del self._holders[workflow_id]
        held = self._held.get(session)
        if held is not None:
            held.pop(workflow_id, None)
            if not held:
                del self._held[session]
