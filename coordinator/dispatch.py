"""Hands unowned workflows to workers with room: the ENQUEUED backlog and recoveries.

The dispatcher is woken by events, never by a timer: a worker registers (its names may
have a backlog), a workflow is recorded with no worker to take it, executions are
released, or a worker finishes one and has room again. It claims with
``FOR UPDATE SKIP LOCKED`` so that several coordinators can share a database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from coordinator import hints, logs
from coordinator.errors import CoordinatorError, Unavailable
from coordinator.hints import Hints
from coordinator.models import Assignment, StepRecord, WorkflowRecord
from coordinator.ownership import Ownership
from coordinator.sessions import Session, Sessions
from coordinator.stats import Stats
from coordinator.store import steps, workflows
from coordinator.store.database import Connection, Database
from coordinator.waiters import Waiters

log = logging.getLogger(__name__)


def assignment(record: WorkflowRecord, history: list[StepRecord]) -> Assignment:
    assert record.input is not None
    return Assignment(
        workflow_id=record.workflow_id,
        name=record.name,
        epoch=record.epoch,
        input=record.input,
        steps=tuple(history),
        recovery_attempt=record.recovery_attempts,
        traceparent=record.traceparent,
    )


async def load_history(conn: Connection, records: list[WorkflowRecord]) -> dict[int, list[StepRecord]]:
    """Recorded steps of the claimed workflows that ran before (a first epoch has none)."""
    return await steps.history(conn, [r.seq for r in records if r.epoch > 1])


class Dispatcher:
    def __init__(
        self,
        db: Database,
        sessions: Sessions,
        ownership: Ownership,
        waiters: Waiters[str, WorkflowRecord],
        max_recovery_attempts: int,
        stats: Stats,
        hints: Hints,
    ) -> None:
        self._db = db
        self._stats = stats
        self._hints = hints
        # Names to tell the other coordinators about (one hint per event-loop turn).
        self._announced: set[str] = set()
        self._announcing: asyncio.Task[None] | None = None
        self._sessions = sessions
        self._ownership = ownership
        self._waiters = waiters
        self._max_recovery_attempts = max_recovery_attempts
        # Names that may have unowned workflows, with a generation number each: a name
        # marked again while a claim for it runs must not be forgotten when that claim
        # comes back short.
        self._ready: dict[str, int] = {}
        self._generation = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None

    def announce(self, names: Iterable[str]) -> None:
        """Workflows of these names became ready outside a transaction that said so: look
        for them here, and hint the other coordinators (whose workers may serve them)."""
        names = set(names)
        if not names:
            return
        self.mark_ready(names)
        self._announced |= names
        if self._announcing is None or self._announcing.done():
            self._announcing = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        await asyncio.sleep(0)  # what else becomes ready in this turn goes in the same hint
        names, self._announced = sorted(self._announced), set()
        try:
            async with self._db.connection() as conn:
                await self._hints.publish(conn, hints.READY, names)
        except CoordinatorError as exc:
            log.info("could not hint %d ready names (the others' resync finds them): %s", len(names), exc)

    def mark_ready(self, names: Iterable[str]) -> None:
        for name in names:
            self._generation += 1
            self._ready[name] = self._generation
        self._wake.set()

    def has_backlog(self, name: str) -> bool:
        return name in self._ready

    def _retry_soon(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(self._wake_after(0.05))

    async def _wake_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._wake.set()

    def poke(self) -> None:
        """A worker has room again."""
        if self._ready:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        delay = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._dispatch()
                delay = 0.05
            except Unavailable as exc:
                log.warning("dispatch waits for PostgreSQL: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                self._wake.set()
            except Exception:
                log.exception("dispatch failed")
                await asyncio.sleep(delay)
                self._wake.set()

    async def _dispatch(self) -> None:
        for session in self._sessions:
            if self._ownership.free_slots(session) <= 0:
                continue
            names = [n for n in session.names if n in self._ready]
            if names:
                await self._claim_for(session, names)

    async def _claim_for(self, session: Session, names: list[str]) -> None:
        limit = self._ownership.free_slots(session)
        generations = {n: self._ready[n] for n in names}
        # Claim and history in one transaction: a claim whose assignment cannot be built
        # must not leave the workflow owned by a worker that never hears of it.
        async with self._db.transaction() as conn:
            claimed = await workflows.claim_ready(
                conn, names, session.claimant, limit, self._max_recovery_attempts
            )
            history = await load_history(conn, claimed)
        await self.deliver(session, claimed, history)
        if len(claimed) < limit:
            # Forget a name only if nothing is left that a connected worker may claim (a
            # worker of another version registering later looks for its own); rows this
            # worker skipped because another transaction held them a moment are tried
            # again shortly.
            async with self._db.connection() as conn:
                left = await workflows.still_ready(conn, names)
            claimable = {
                name
                for name, version in left
                if any(s.claimant.takes(name, version) for s in self._sessions if name in s.names)
            }
            for name, generation in generations.items():
                if name not in claimable and self._ready.get(name) == generation:
                    del self._ready[name]
            if any(session.claimant.takes(name, version) for name, version in left):
                self._retry_soon()

    async def deliver(
        self, session: Session, claimed: list[WorkflowRecord], history: dict[int, list[StepRecord]]
    ) -> None:
        """Sends claimed workflows to ``session``; gives them back if it closed meanwhile."""
        lost: list[WorkflowRecord] = []
        now = datetime.now(UTC)
        for record in claimed:
            if record.status.done:
                log.warning(
                    "workflow %s: %s",
                    record.workflow_id,
                    record.error.message if record.error else "",
                    extra=logs.about(record.workflow_id, record.epoch),
                )
                self._stats.poisoned += 1
                self._stats.workflows_finished[record.status.value] += 1
                self._waiters.notify(record.workflow_id, record)
                continue
            if record.epoch > 1:
                self._stats.recoveries += 1
            else:
                # A first claim: from its start request to now, it waited in the queue.
                self._stats.dispatch_lag.observe(max(0.0, (now - record.created_at).total_seconds()))
            if self._sessions.is_current(session):
                self._ownership.assign(session, record.workflow_id, record.epoch)
                session.send(assignment(record, history.get(record.seq, [])))
            else:
                lost.append(record)
        if lost:
            await self.give_back(session.worker_id, lost)

    async def give_back(self, worker_id: str, records: list[WorkflowRecord]) -> None:
        """Releases executions claimed for a worker whose session ended before delivery.

        Retried until PostgreSQL answers: until then they would stay owned by a worker that
        does not know it has them.
        """
        delay = 0.05
        while True:
            try:
                names = []
                async with self._db.transaction() as conn:
                    for r in records:
                        name = await workflows.release_one(conn, r.workflow_id, r.epoch, worker_id)
                        if name is not None:
                            names.append(name)
                self.announce(names)
                return
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
