"""Retention: finished workflows older than STEPLINE_RETENTION_HOURS are deleted."""

from __future__ import annotations

import asyncio
import logging

from coordinator.errors import Unavailable
from coordinator.store import retention
from coordinator.store.database import Database

log = logging.getLogger(__name__)

BATCH = 1000


class Retention:
    def __init__(self, db: Database, hours: float) -> None:
        self._db = db
        self._keep = hours * 3600

    def start(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._sweep(), name="retention")] if self._keep > 0 else []

    async def _sweep(self) -> None:
        """Deletes finished workflows older than the retention, a thousand at a time.

        Deleting in small batches keeps locks and WAL bursts short, so the hot path does
        not notice; the tables stay the size of the retention window.
        """
        every = min(60.0, max(self._keep / 4, 0.05))
        while True:
            await asyncio.sleep(every)
            try:
                while True:
                    async with self._db.connection() as conn:
                        deleted, deleted_steps = await retention.sweep(conn, self._keep, BATCH)
                    if deleted:
                        log.info("retention: deleted %d workflows and %d steps", deleted, deleted_steps)
                    if deleted < BATCH:
                        break
            except Unavailable:
                continue
