"""The coordinator's core: what the gRPC services ask of it, on records, never on protos.

It wires the parts together: ``Sessions`` (connected workers), ``Ownership`` (which of
them runs what), ``Starter`` (recording workflows), ``Recorder`` (the per-step write
path), ``Dispatcher`` (handing out ready workflows), ``Waiters`` (AwaitWorkflow), and the
background services ``Leases`` and ``Retention``. Each kind of worker event has one
handler, registered in ``Engine._handlers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from coordinator import logs
from coordinator.config import Settings
from coordinator.control import Control
from coordinator.dispatch import Dispatcher
from coordinator.errors import NotFound, Unavailable
from coordinator.hints import Hints
from coordinator.interest import Interest
from coordinator.leases import Leases
from coordinator.models import (
    Abandon,
    AbandonReason,
    Drain,
    Heartbeat,
    HeartbeatAck,
    Idle,
    Payload,
    Registered,
    Registration,
    Release,
    Send,
    SetEvent,
    StartChild,
    StartRequest,
    StepRecord,
    StepResult,
    StepStart,
    Suspend,
    Wait,
    WorkerEvent,
    WorkflowCount,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowResult,
    WorkflowStatus,
)
from coordinator.ownership import Ownership
from coordinator.recorder import Recorder
from coordinator.replies import Replies
from coordinator.retention import Retention
from coordinator.sessions import Session, Sessions
from coordinator.starts import Starter
from coordinator.stats import Stats
from coordinator.store import leases as lease_store
from coordinator.store import steps, workflows
from coordinator.store.database import Database
from coordinator.store.leases import WorkerRow
from coordinator.timers import Timers
from coordinator.waiters import Waiters
from coordinator.waits import Waits

log = logging.getLogger(__name__)

MAX_AWAIT_SECONDS = 60.0


class Engine:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.coordinator_id = uuid.uuid4().hex
        self.stats = Stats()
        self.sessions = Sessions()
        self.waiters: Waiters[str, WorkflowRecord] = Waiters()
        self.ownership = Ownership(on_room=lambda: self.dispatcher.poke())
        self.replies = Replies(self.sessions, self.ownership, self.stats)
        # db is None only where a test builds an Engine to look at it, never to run it.
        self.hints = Hints(db.url if db is not None else "", self.coordinator_id, settings.sweep_ms / 1000)
        self.dispatcher = Dispatcher(
            db,
            self.sessions,
            self.ownership,
            self.waiters,
            settings.max_recovery_attempts,
            self.stats,
            self.hints,
        )
        self.timers = Timers(db)
        self.starter = Starter(
            db,
            self.sessions,
            self.ownership,
            self.dispatcher,
            settings.max_recovery_attempts,
            self.timers,
            stats=self.stats,
        )
        self.interest = Interest(db, self.hints)
        self.recorder = Recorder(
            db, self.sessions, self.ownership, self.replies, self.waiters, self.interest, stats=self.stats
        )
        self.leases = Leases(
            db, self.sessions, settings, self.coordinator_id, self.stats, self.dispatcher.announce
        )
        self.retention = Retention(db, settings.retention_hours)
        self.hints.on_resync(self._all_names_ready)
        # Callers waiting for workflows finished elsewhere, whose hint was lost, look again.
        self.hints.on_resync(self.waiters.notify_all)
        self.control = Control(
            db, self.ownership, self.replies, self.hints, self.waiters, self.dispatcher, self.timers
        )
        self.waits = Waits(
            db,
            self.ownership,
            self.replies,
            self.dispatcher,
            self.timers,
            self.hints,
            self.waiters,
            stats=self.stats,
        )
        # One handler per kind of worker event.
        self._handlers: dict[type[Any], Callable[[Session, Any], None]] = {
            StepResult: self.recorder.step_result,
            StepStart: self.recorder.step_start,
            WorkflowResult: self.recorder.workflow_result,
            StartRequest: self.starter.start_local,
            Heartbeat: self._heartbeat,
            Release: self._release,
            Drain: self._drain,
            Wait: self.waits.wait,
            Send: self.waits.send,
            SetEvent: self.waits.set_event,
            Idle: self.waits.idle,
            Suspend: self.waits.suspend,
            StartChild: self.waits.start_child,
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.dispatcher.start()
        self.starter.batcher.start()
        self.recorder.batcher.start()
        self.waits.batcher.start()
        self._tasks += self.leases.start() + self.retention.start() + self.timers.start() + self.hints.start()

    async def stop(self) -> None:
        for session in self.sessions:
            session.close("coordinator shutting down")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._background:  # sessions being released get a moment to finish
            await asyncio.wait(list(self._background), timeout=2)
        await self.dispatcher.stop()
        await self.starter.batcher.stop()
        await self.recorder.batcher.stop()
        await self.waits.batcher.stop()
        self.waiters.notify_all()
        log.info("coordinator stats: %s", self.stats.as_dict())

    def _in_background(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- client-facing ------------------------------------------------------------------

    async def start_workflow(self, request: StartRequest) -> tuple[WorkflowRecord, bool]:
        return await self.starter.start(request)

    async def start_workflows(
        self, requests: list[StartRequest]
    ) -> list[tuple[WorkflowRecord, bool] | BaseException]:
        return await self.starter.start_many(requests)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord:
        async with self.db.connection() as conn:
            record = await workflows.get(conn, workflow_id)
        if record is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        return record

    async def await_workflow(self, workflow_id: str, timeout: float) -> WorkflowRecord:
        """The workflow once final, or as it is when ``timeout`` seconds have passed."""
        done, not_found = await self.await_workflows([workflow_id], timeout)
        if not_found:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        return done[0] if done else await self.get_workflow(workflow_id)

    async def await_workflows(
        self, workflow_ids: Sequence[str], timeout: float
    ) -> tuple[list[WorkflowRecord], list[str]]:
        """Waits up to ``timeout`` seconds for the first of the workflows to be final.

        Returns the final ones (none if the wait ended first) and the IDs that do not exist.
        Each call reads the workflows once; completions while it waits arrive with their
        record from the statement that finished them.
        """
        timeout = min(max(timeout, 0.0), MAX_AWAIT_SECONDS)
        ids = list(dict.fromkeys(workflow_ids))
        with self.waiters.watching(ids) as watch:
            # A workflow a worker connected here holds is running, and its completion will
            # reach this watch (the recorder drops the hold and notifies in one step). Only
            # the others are read: clients ask again for what is left after every answer,
            # and re-reading everything each time grew with the square of the batch.
            unknown = [i for i in ids if self.ownership.holder(i) is None]
            found: dict[str, WorkflowRecord] = {}
            if unknown:
                async with self.db.connection() as conn:
                    found = await workflows.get_many(conn, unknown)
            not_found = [i for i in unknown if i not in found]
            done = [r for r in found.values() if r.status.done]
            if done or timeout == 0 or len(not_found) == len(ids):
                return done, not_found
            if found:
                # Not run here: a worker of another coordinator may finish them. Say that
                # callers here wait, then look once more (one may have finished meanwhile).
                await self.interest.want(found)
                async with self.db.connection() as conn:
                    again = await workflows.get_many(conn, list(found))
                done = [r for r in again.values() if r.status.done]
                if done:
                    return done, not_found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), timeout)
            finished = dict(watch.done)
        reread = [i for i, r in finished.items() if r is None]
        if reread:
            async with self.db.connection() as conn:
                finished.update(await workflows.get_many(conn, reread))
        return [r for r in finished.values() if r is not None and r.status.done], not_found

    async def send(self, message: Send) -> bool:
        """A client's message for a workflow; returns whether it was a duplicate."""
        return await self.waits.client_send(message)

    async def cancel(self, workflow_id: str, reason: str) -> tuple[WorkflowRecord, list[str]]:
        """Cancels a workflow and its unfinished descendants."""
        record, cancelled = await self.control.cancel(workflow_id, reason)
        self.stats.workflows_finished["CANCELLED"] += len(cancelled)
        return record, cancelled

    async def resume(self, workflow_id: str, version: str | None = None) -> WorkflowRecord:
        return await self.control.resume(workflow_id, version)

    async def fork(
        self, workflow_id: str, new_id: str | None, from_step: str, version: str | None = None
    ) -> WorkflowRecord:
        return await self.control.fork(workflow_id, new_id, from_step, version)

    async def count_workflows(
        self, by: Sequence[str], statuses: Sequence[WorkflowStatus], name: str | None
    ) -> list[WorkflowCount]:
        async with self.db.connection() as conn:
            return await workflows.count(conn, by, statuses, name)

    async def get_event(self, workflow_id: str, key: str, timeout: float) -> Payload | None:
        """The event's value once set, or None when ``timeout`` seconds pass first."""
        return await self.waits.get_event(workflow_id, key, min(max(timeout, 0.0), MAX_AWAIT_SECONDS))

    async def list_workflows(self, f: WorkflowFilter) -> list[WorkflowRecord]:
        async with self.db.connection() as conn:
            return await workflows.list_(conn, f)

    async def backlog(self) -> tuple[int, int]:
        """Workflows ready for a worker, and timers due and not yet fired (for metrics)."""
        async with self.db.connection() as conn:
            return await workflows.backlog(conn)

    async def list_workers(self) -> list[WorkerRow]:
        """Every connected worker, this coordinator's and the others' (from their leases)."""
        async with self.db.connection() as conn:
            rows = await lease_store.list_workers(conn)
        now, clock = datetime.now(UTC), time.monotonic()
        listed = []
        for row in rows:
            session = self.sessions.get(row.worker_id)
            if row.coordinator_id == self.leases.coordinator_id and session is not None:
                row = replace(
                    row,
                    local=True,
                    heartbeat_age=clock - session.last_seen,
                    in_flight=self.ownership.count(session),
                )
            elif row.renewed_at is not None:
                row = replace(row, heartbeat_age=max(0.0, (now - row.renewed_at).total_seconds()))
            listed.append(row)
        return listed

    async def list_steps(self, workflow_id: str) -> list[StepRecord]:
        record = await self.get_workflow(workflow_id)
        async with self.db.connection() as conn:
            return await steps.list_(conn, record.seq)

    # --- worker-facing ------------------------------------------------------------------

    async def register(self, registration: Registration) -> Session:
        """Opens a session; re-attaches what the worker still holds, releases the rest.

        The Registered event is the first thing queued on the new session.
        """
        session = Session(registration)
        held = {ref.workflow_id: ref.epoch for ref in registration.held}
        async with self.sessions.locked(session.worker_id):
            async with self.db.transaction() as conn:
                released = await workflows.release(conn, session.worker_id, keep=list(held))
                reattached = await workflows.reattach(conn, session.worker_id, list(held.items()))
                await self.leases.take(conn, session)
            previous = self.sessions.put(session)
            kept = tuple(r for r in registration.held if r.workflow_id in reattached)
            self.ownership.reattach(session, previous, kept)
        if previous is not None:
            previous.close("replaced by a new session of the same worker")
        session.send(
            Registered(
                session.session_id,
                self.settings.lease_ms,
                self.settings.heartbeat_interval_ms,
                registration.protocol_version,
                kept,
                self.settings.limits,
            )
        )
        for ref in registration.held:
            if ref.workflow_id not in reattached:
                session.send(
                    Abandon(ref.workflow_id, ref.epoch, AbandonReason.STALE_EPOCH, "reassigned while away")
                )
        log.info(
            "worker %s connected (%s %s, capacity %d, serves %s; %d re-attached)",
            session.worker_id,
            session.language,
            session.sdk_version,
            session.capacity,
            ", ".join(sorted(session.names)),
            len(reattached),
            extra=logs.about(worker_id=session.worker_id),
        )
        self.dispatcher.announce(released)
        self.dispatcher.mark_ready(session.names)
        return session

    def end_session(self, session: Session, reason: str) -> None:
        """Ends a session now and releases its executions in the background."""
        session.close(reason)
        self._in_background(self.unregister(session, reason), f"unregister-{session.worker_id}")

    async def unregister(self, session: Session, reason: str) -> None:
        """Ends a session; its executions go to other workers at once (fencing makes that safe)."""
        session.close(reason)
        delay = 0.05
        async with self.sessions.locked(session.worker_id):
            if not self.sessions.remove(session):
                return  # replaced: the new session's registration settled ownership
            log.info(
                "worker %s disconnected (%s); releasing %d",
                session.worker_id,
                reason,
                self.ownership.count(session),
                extra=logs.about(worker_id=session.worker_id),
            )
            while True:
                try:
                    async with self.db.transaction() as conn:
                        # A draining worker hands its executions back on purpose.
                        released = await workflows.release(conn, session.worker_id, handoff=session.draining)
                        await self.leases.drop(conn, session.worker_id, session.session_id)
                    break
                except Unavailable:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
            self.ownership.end(session)
        self.dispatcher.announce(released)

    def handle(self, session: Session, events: list[WorkerEvent]) -> None:
        """Takes one frame of events from a worker, in order. Never blocks."""
        session.last_seen = time.monotonic()
        handlers = self._handlers
        for ev in events:
            handlers[type(ev)](session, ev)

    def _all_names_ready(self) -> None:
        """After a possibly lost hint: any name served here may have ready workflows."""
        self.dispatcher.mark_ready({name for s in self.sessions for name in s.names})

    def _heartbeat(self, session: Session, ev: Heartbeat) -> None:
        session.send(HeartbeatAck(ev.sequence))

    def _drain(self, session: Session, ev: Drain) -> None:
        log.info("worker %s is draining", session.worker_id, extra=logs.about(worker_id=session.worker_id))
        session.draining = True

    def _release(self, session: Session, ev: Release) -> None:
        self._in_background(self._release_one(session, ev), f"release-{ev.workflow_id}")

    async def _release_one(self, session: Session, ev: Release) -> None:
        try:
            async with self.db.connection() as conn:
                name = await workflows.release_one(
                    conn, ev.workflow_id, ev.epoch, session.worker_id, handoff=True
                )
        except Unavailable:
            return  # the lease ends it anyway
        self.ownership.release(session, ev.workflow_id, ev.epoch)
        if name is not None:
            self.dispatcher.announce([name])
