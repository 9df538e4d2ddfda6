"""Connected workers: one Session per open stream, and the registry that finds them.

Liveness is kept here, in memory: every event from a worker stamps its session, and the
lease watchdog (see ``engine.py``) ends sessions that fell silent. PostgreSQL is not
written per heartbeat.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

from coordinator.models import CoordinatorEvent, Registration


class Session:
    """One worker's stream: what it serves, what it holds, and what is queued to send it."""

    def __init__(self, registration: Registration) -> None:
        self.worker_id = registration.worker_id
        self.names = registration.workflow_names
        self.capacity = registration.capacity
        self.language = registration.language
        self.sdk_version = registration.sdk_version
        self.session_id = uuid.uuid4().hex
        # workflow_id -> epoch of every execution this worker holds.
        self.held: dict[str, int] = {}
        self.last_seen = time.monotonic()
        # Set by Drain: the worker is shutting down and takes no more work.
        self.draining = False
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._outbox: list[CoordinatorEvent] = []
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Session {self.worker_id} {self.session_id[:8]} held={len(self.held)}>"

    @property
    def free_slots(self) -> int:
        return 0 if self.draining else self.capacity - len(self.held)

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
        # Serialises a worker's registration against the cleanup of its previous session.
        self.locks: dict[str, asyncio.Lock] = {}

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_worker.values()))

    def __len__(self) -> int:
        return len(self._by_worker)

    def get(self, worker_id: str) -> Session | None:
        return self._by_worker.get(worker_id)

    def lock(self, worker_id: str) -> asyncio.Lock:
        return self.locks.setdefault(worker_id, asyncio.Lock())

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

    def pick(self, name: str) -> Session | None:
        """The least loaded open session that serves ``name`` and has room, if any."""
        best: Session | None = None
        for s in self._by_worker.values():
            eligible = name in s.names and s.free_slots > 0 and not s.closed.is_set()
            if eligible and (best is None or s.free_slots > best.free_slots):
                best = s
        return best

    def holding(self, workflow_id: str) -> bool:
        """Whether a worker connected here runs this workflow (so it is not finished)."""
        return any(workflow_id in s.held for s in self._by_worker.values())

    def connected_ids(self) -> list[str]:
        return list(self._by_worker)
