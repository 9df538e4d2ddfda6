"""Worker leases: the watchdog in memory, and the coarse leases in PostgreSQL.

The watchdog ends sessions that have been silent for a lease; it looks often because it
reads only memory. The keeper renews, a few times per lease, the database leases of every
worker connected here (one statement), and releases the executions of workers whose
database lease ran out because their coordinator died.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from coordinator import logs
from coordinator.config import Settings
from coordinator.errors import Unavailable
from coordinator.sessions import Session, Sessions
from coordinator.stats import Stats
from coordinator.store import leases
from coordinator.store.database import Database

log = logging.getLogger(__name__)


class Leases:
    def __init__(
        self,
        db: Database,
        sessions: Sessions,
        settings: Settings,
        coordinator_id: str,
        stats: Stats,
        mark_ready: Callable[[Iterable[str]], None],
    ) -> None:
        self._db = db
        self._sessions = sessions
        self._lease = settings.lease_ms / 1000
        self._coordinator_id = coordinator_id
        self._stats = stats
        self._mark_ready = mark_ready

    @property
    def db_lease_seconds(self) -> float:
        # The database lease only matters when a coordinator dies; it can be coarse.
        return 2 * self._lease

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self._watch(), name="lease-watchdog"),
            asyncio.create_task(self._keep(), name="db-leases"),
        ]

    @property
    def coordinator_id(self) -> str:
        return self._coordinator_id

    async def take(self, conn: object, session: Session) -> None:
        """Records in PostgreSQL that the worker is connected here (in the caller's transaction)."""
        row = leases.WorkerRow(
            session.worker_id,
            self._coordinator_id,
            session.language,
            session.sdk_version,
            session.version,
            session.capacity,
            tuple(sorted(session.names)),
        )
        await leases.take(conn, row, session.session_id, self.db_lease_seconds)

    async def _watch(self) -> None:
        """Ends sessions that have been silent longer than the lease (in memory only)."""
        while True:
            # In memory only, so it can look often: a silent worker loses its work at most
            # 1/60 of a lease after the lease ends (50 ms of the default 3 s).
            await asyncio.sleep(self._lease / 60)
            now = time.monotonic()
            for session in self._sessions:
                if now - session.last_seen > self._lease and not session.closed.is_set():
                    log.warning(
                        "worker %s silent for %.1f s: lease expired",
                        session.worker_id,
                        self._lease,
                        extra=logs.about(worker_id=session.worker_id),
                    )
                    self._stats.leases_expired += 1
                    session.close("lease expired")

    async def _keep(self) -> None:
        """Renews this coordinator's workers' leases in PostgreSQL, a few times per lease,
        and releases executions of workers whose lease ran out (their coordinator died).

        The first sweep waits one lease, so that workers of a coordinator that just
        restarted can reconnect and re-attach their executions first.
        """
        next_sweep = time.monotonic() + self._lease
        first = True
        while True:
            await asyncio.sleep(self._lease / 3)
            connected = self._sessions.connected_ids()
            try:
                async with self._db.connection() as conn:
                    if connected:
                        await leases.renew(conn, self._coordinator_id, connected, self.db_lease_seconds)
                    if time.monotonic() < next_sweep:
                        continue
                    names = await leases.release_expired(conn, connected, unleased=first)
            except Unavailable:
                continue
            first = False
            next_sweep = time.monotonic() + self._lease
            if names:
                log.info("released %d executions of workers whose lease expired", len(names))
                self._mark_ready(names)

    async def drop(self, conn: object, worker_id: str, session_id: str) -> None:
        """Forgets the session's database lease (in the caller's transaction)."""
        await leases.drop(conn, worker_id, session_id)
