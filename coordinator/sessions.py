"""Connected workers: one Session per open stream, and the registry that finds them.

Liveness is kept here, in memory: every event from a worker stamps its session, and the
lease watchdog (``leases.py``) ends sessions that fell silent. PostgreSQL is not written
per heartbeat. What each session runs is ``ownership.py``'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

from coordinator.models import Claimant, CoordinatorEvent, Registration


class Session:
    """One worker's stream: who it is, what it serves, and what is queued to send it."""

    def __init__(self, registration: Registration) -> None:
        self.worker_id = registration.worker_id
        self.names = registration.workflow_names
        self.capacity = registration.capacity
        self.language = registration.language
        self.sdk_version = registration.sdk_version
        self.version = registration.version
        # Who claims for this session: which workflows its code may run.
        self.claimant = Claimant(registration.worker_id, registration.version, registration.auto_upgrade)
        self.session_id = uuid.uuid4().hex
        self.last_seen = time.monotonic()
        # Set by Drain: the worker is shutting down and takes no more work.
        self.draining = False
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._outbox: list[CoordinatorEvent] = []
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Session {self.worker_id} {self.session_id[:8]}>"

    def send(self, event: CoordinatorEvent) -> None:
        """Queues an event; everything queued in one event-loop turn goes out as one frame."""
        if self.closed.is_set():
            return  # nobody reads it any more; the worker resends what matters
        self._outbox.append(event)
        self._wake.set()

    async def next_events(self) -> list[CoordinatorEvent]:
        """Waits for queued events and takes them all (the stream writer's loop)."""
        while not self._outbox:
            self._wake.clear()
            await self._wake.wait()
        events, self._outbox = self._outbox, []
        return events

    def close(self, reason: str) -> None:
        """Ends the session; the stream handler sees ``closed`` and ends the RPC."""
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
            self._wake.set()


class Sessions:
    """The open sessions, by worker ID."""

    def __init__(self) -> None:
        self._by_worker: dict[str, Session] = {}
        # Serialises a worker's registration against the cleanup of its previous session;
        # an entry lives only while someone holds or waits for it.
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_worker.values()))

    def __len__(self) -> int:
        return len(self._by_worker)

    def get(self, worker_id: str) -> Session | None:
        return self._by_worker.get(worker_id)

    def current(self, session: Session) -> Session:
        """The worker's current session: answers go there (it resends what a dead one lost)."""
        return self._by_worker.get(session.worker_id) or session

    @contextlib.asynccontextmanager
    async def locked(self, worker_id: str) -> AsyncIterator[None]:
        """Holds the worker's lock; the lock is forgotten when nobody holds or waits for it."""
        lock, users = self._locks.setdefault(worker_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[worker_id]

    def put(self, session: Session) -> Session | None:
        """Makes ``session`` the worker's current one; returns the one it replaces."""
        previous = self._by_worker.get(session.worker_id)
        self._by_worker[session.worker_id] = session
        return previous

    def remove(self, session: Session) -> bool:
        """Forgets ``session`` if it is still its worker's current one."""
        if self._by_worker.get(session.worker_id) is session:
            del self._by_worker[session.worker_id]
            return True
        return False

    def is_current(self, session: Session) -> bool:
        return self._by_worker.get(session.worker_id) is session and not session.closed.is_set()

    def connected_ids(self) -> list[str]:
        return list(self._by_worker)

    @property
    def lock_count(self) -> int:
        """How many per-worker locks exist (for tests: they must not pile up)."""
        return len(self._locks)
