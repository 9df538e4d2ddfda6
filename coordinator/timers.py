"""The timer service: fires due timers (wait wake-ups and timeouts, workflow deadlines).

Timers live in PostgreSQL (``store/timers.py``); this coordinator holds only the next due
time in memory. It learns of earlier ones from its own writes (``schedule``), from other
coordinators' hints, and from the database itself after every resync (one probe of the
due_at index), so its cost does not grow with the number of waiting workflows. Firing is
``fire``'s job (the waits service): it takes a batch of due timers and applies them in one
transaction, and this loop calls it again while it comes back full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from coordinator.errors import Unavailable
from coordinator.store import timers
from coordinator.store.database import Database

log = logging.getLogger(__name__)

BATCH = 500


class Timers:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._next: datetime | None = None
        # The earliest time scheduled while the next due time was being read.
        self._scheduled: datetime | None = None
        self._wake = asyncio.Event()
        self._fire: Callable[[int], Awaitable[int]] | None = None
        self.fired = 0

    def firing_with(self, fire: Callable[[int], Awaitable[int]]) -> None:
        """``fire(limit)`` takes and applies up to ``limit`` due timers; returns how many."""
        self._fire = fire

    def schedule(self, due: datetime) -> None:
        """A timer is due at ``due``: the loop wakes then, if that is its next."""
        if self._scheduled is None or due < self._scheduled:
            self._scheduled = due
        if self._next is None or due < self._next:
            self._next = due
            self._wake.set()

    async def recheck(self) -> None:
        """Reads the next due time from PostgreSQL (after a possibly lost hint)."""
        async with self._db.connection() as conn:
            due = await timers.next_due(conn)
        if due is not None:
            self.schedule(due)

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._run(), name="timers")]

    async def _run(self) -> None:
        delay = 0.05
        while True:
            now = datetime.now(UTC)
            if self._next is None or self._next > now:
                self._wake.clear()
                wait = None if self._next is None else (self._next - now).total_seconds()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            try:
                if not await self._fire_due():
                    # Due by this clock, not yet by the database's (they may differ a
                    # little): look again shortly rather than spin.
                    await asyncio.sleep(0.005)
                delay = 0.05
            except Unavailable as exc:
                log.warning("timers wait for PostgreSQL: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except Exception:
                log.exception("firing timers failed")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _fire_due(self) -> int:
        """Fires what is due; returns how many timers it fired."""
        assert self._fire is not None
        total = 0
        while (fired := await self._fire(BATCH)) >= BATCH:
            total += fired
        total += fired
        self.fired += total
        # What is left is later than now: ask the database for the next one (and keep an
        # earlier time scheduled while asking, which the answer may predate).
        self._scheduled = None
        async with self._db.connection() as conn:
            due = await timers.next_due(conn)
        candidates = [t for t in (due, self._scheduled) if t is not None]
        self._next = min(candidates) if candidates else None
        return total
