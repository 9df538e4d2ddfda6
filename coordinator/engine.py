"""The coordinator's core: what the gRPC services ask of it, on records, never on protos.

It wires the parts together: ``Sessions`` (connected workers), ``Starter`` (recording
workflows), ``Recorder`` (the per-step write path), ``Dispatcher`` (handing out unowned
workflows), ``Waiters`` (AwaitWorkflow), and the lease watchdog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from coordinator.config import Settings
from coordinator.dispatch import Dispatcher
from coordinator.errors import FailedPrecondition, NotFound, Unavailable
from coordinator.models import (
    Abandon,
    AbandonReason,
    Drain,
    Heartbeat,
    HeartbeatAck,
    Registered,
    Registration,
    Release,
    StartRequest,
    StepRecord,
    StepResult,
    StepStart,
    WorkerEvent,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowResult,
)
from coordinator.recorder import Recorder
from coordinator.sessions import Session, Sessions
from coordinator.starts import Starter
from coordinator.stats import Stats
from coordinator.store import leases, retention, steps, workflows
from coordinator.store.database import Database
from coordinator.waiters import Waiters

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_AWAIT_SECONDS = 60.0


class Engine:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.coordinator_id = uuid.uuid4().hex
        self.stats = Stats()
        self.sessions = Sessions()
        self.waiters = Waiters()
        self.dispatcher = Dispatcher(
            db, self.sessions, self.waiters, settings.max_recovery_attempts, self.stats
        )
        self.starter = Starter(db, self.sessions, self.dispatcher, settings.max_recovery_attempts)
        self.recorder = Recorder(db, self.sessions, self.dispatcher, self.waiters, self.stats)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.dispatcher.start()
        self.starter.batcher.start()
        self.recorder.batcher.start()
        self._tasks.append(asyncio.create_task(self._watch_leases(), name="lease-watchdog"))
        self._tasks.append(asyncio.create_task(self._keep_leases(), name="db-leases"))
        if self.settings.retention_hours > 0:
            self._tasks.append(asyncio.create_task(self._sweep_old(), name="retention"))

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
        self.waiters.notify_all()
        log.info("coordinator stats: %s", self.stats.as_dict())

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
            unknown = [i for i in ids if not self.sessions.holding(i)]
            found: dict[str, WorkflowRecord] = {}
            if unknown:
                async with self.db.connection() as conn:
                    found = await workflows.get_many(conn, unknown)
            not_found = [i for i in unknown if i not in found]
            done = [r for r in found.values() if r.status.done]
            if done or timeout == 0 or len(not_found) == len(ids):
                return done, not_found
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.event.wait(), timeout)
            finished = dict(watch.done)
        reread = [i for i, r in finished.items() if r is None]
        if reread:
            async with self.db.connection() as conn:
                finished.update(await workflows.get_many(conn, reread))
        return [r for r in finished.values() if r is not None and r.status.done], not_found

    async def list_workflows(self, f: WorkflowFilter) -> list[WorkflowRecord]:
        async with self.db.connection() as conn:
            return await workflows.list_(conn, f)

    async def list_steps(self, workflow_id: str) -> list[StepRecord]:
        record = await self.get_workflow(workflow_id)
        async with self.db.connection() as conn:
            return await steps.list_(conn, record.seq)

    # --- worker-facing ------------------------------------------------------------------

    async def register(self, registration: Registration) -> Session:
        """Opens a session; re-attaches what the worker still holds, releases the rest.

        The Registered event is the first thing queued on the new session.
        """
        if registration.protocol_version != PROTOCOL_VERSION:
            raise FailedPrecondition(
                f"protocol version {registration.protocol_version} is not supported; "
                f"this coordinator speaks {PROTOCOL_VERSION}"
            )
        session = Session(registration)
        held = {ref.workflow_id: ref.epoch for ref in registration.held}
        async with self.sessions.lock(session.worker_id):
            async with self.db.transaction() as conn:
                released = await workflows.release(conn, session.worker_id, keep=list(held))
                reattached = await workflows.reattach(conn, session.worker_id, list(held.items()))
                await leases.take(
                    conn, session.worker_id, self.coordinator_id, session.session_id, self._db_lease_seconds
                )
            previous = self.sessions.put(session)
        if previous is not None:
            previous.close("replaced by a new session of the same worker")
        session.held.update({i: e for i, e in held.items() if i in reattached})
        session.send(
            Registered(
                session.session_id,
                self.settings.lease_ms,
                self.settings.heartbeat_interval_ms,
                self.settings.max_payload_bytes,
                PROTOCOL_VERSION,
                tuple(r for r in registration.held if r.workflow_id in reattached),
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
        )
        self.dispatcher.mark_ready([*released, *session.names])
        return session

    def end_session(self, session: Session, reason: str) -> None:
        """Ends a session now and releases its executions in the background."""
        session.close(reason)
        task = asyncio.create_task(self.unregister(session, reason), name=f"unregister-{session.worker_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def unregister(self, session: Session, reason: str) -> None:
        """Ends a session; its executions go to other workers at once (fencing makes that safe)."""
        session.close(reason)
        delay = 0.05
        async with self.sessions.lock(session.worker_id):
            if not self.sessions.remove(session):
                return  # replaced: the new session's registration settled ownership
            log.info(
                "worker %s disconnected (%s); releasing %d", session.worker_id, reason, len(session.held)
            )
            while True:
                try:
                    async with self.db.transaction() as conn:
                        # A draining worker hands its executions back on purpose.
                        released = await workflows.release(conn, session.worker_id, handoff=session.draining)
                        await leases.drop(conn, session.worker_id, session.session_id)
                    break
                except Unavailable:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        session.held.clear()
        self.dispatcher.mark_ready(released)

    def handle(self, session: Session, events: list[WorkerEvent]) -> None:
        """Takes one frame of events from a worker, in order. Never blocks."""
        session.last_seen = time.monotonic()
        now = datetime.now(UTC)
        for ev in events:
            # The most frequent kinds first.
            if isinstance(ev, StepResult):
                self.recorder.step_result(session, ev)
            elif isinstance(ev, StepStart):
                self.recorder.step_start(session, ev)
            elif isinstance(ev, WorkflowResult):
                self.recorder.workflow_result(session, ev, now)
            elif isinstance(ev, StartRequest):
                self.starter.start_local(session, ev)
            elif isinstance(ev, Heartbeat):
                session.send(HeartbeatAck(ev.sequence))
            elif isinstance(ev, Release):
                task = asyncio.create_task(self._release(session, ev))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            elif isinstance(ev, Drain):
                log.info("worker %s is draining", session.worker_id)
                session.draining = True

    async def _release(self, session: Session, ev: Release) -> None:
        try:
            async with self.db.connection() as conn:
                name = await workflows.release_one(
                    conn, ev.workflow_id, ev.epoch, session.worker_id, handoff=True
                )
        except Unavailable:
            return  # the lease ends it anyway
        if session.held.get(ev.workflow_id) == ev.epoch:
            del session.held[ev.workflow_id]
        if name is not None:
            self.dispatcher.mark_ready([name])

    async def _watch_leases(self) -> None:
        """Ends sessions that have been silent longer than the lease (in memory only)."""
        lease = self.settings.lease_ms / 1000
        while True:
            # In memory only, so it can look often: a silent worker loses its work at most
            # 1/60 of a lease after the lease ends (50 ms of the default 3 s).
            await asyncio.sleep(lease / 60)
            now = time.monotonic()
            for session in self.sessions:
                if now - session.last_seen > lease and not session.closed.is_set():
                    log.warning("worker %s silent for %.1f s: lease expired", session.worker_id, lease)
                    self.stats.leases_expired += 1
                    session.close("lease expired")

    @property
    def _db_lease_seconds(self) -> float:
        # The database lease only matters when a coordinator dies; it can be coarse.
        return 2 * self.settings.lease_ms / 1000

    async def _keep_leases(self) -> None:
        """Renews this coordinator's workers' leases in PostgreSQL, a few times per lease,
        and releases executions of workers whose lease ran out (their coordinator died).

        The first sweep waits one lease, so that workers of a coordinator that just
        restarted can reconnect and re-attach their executions first.
        """
        lease = self.settings.lease_ms / 1000
        next_sweep = time.monotonic() + lease
        first = True
        while True:
            await asyncio.sleep(lease / 3)
            connected = self.sessions.connected_ids()
            try:
                async with self.db.connection() as conn:
                    if connected:
                        await leases.renew(conn, self.coordinator_id, connected, self._db_lease_seconds)
                    if time.monotonic() < next_sweep:
                        continue
                    names = await leases.release_expired(conn, connected, unleased=first)
            except Unavailable:
                continue
            first = False
            next_sweep = time.monotonic() + lease
            if names:
                log.info("released %d executions of workers whose lease expired", len(names))
                self.dispatcher.mark_ready(names)

    async def _sweep_old(self) -> None:
        """Deletes finished workflows older than the retention, a thousand at a time.

        Deleting in small batches keeps locks and WAL bursts short, so the hot path does
        not notice; the tables stay the size of the retention window.
        """
        keep = self.settings.retention_hours * 3600
        every = min(60.0, max(keep / 4, 0.05))
        while True:
            await asyncio.sleep(every)
            try:
                while True:
                    async with self.db.connection() as conn:
                        deleted, deleted_steps = await retention.sweep(conn, keep, 1000)
                    if deleted:
                        log.info("retention: deleted %d workflows and %d steps", deleted, deleted_steps)
                    if deleted < 1000:
                        break
            except Unavailable:
                continue
