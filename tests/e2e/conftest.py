"""e2e fixtures: the coordinator as a process, workers as processes, killed for real."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import Cluster, RestartablePostgres
from tests.e2e.processes import Process, start_coordinator, start_worker
from worker_sdk import Client


@pytest.fixture
async def coordinator(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Process, str]]:
    process, address = await start_coordinator(database_url, tmp_path / "coordinator.log")
    yield process, address
    await process.stop()


@pytest.fixture
def address(coordinator: tuple[Process, str]) -> str:
    return coordinator[1]


@pytest.fixture
async def client(address: str) -> AsyncIterator[Client]:
    async with Client(address) as c:
        yield c


WorkerFactory = Callable[..., Awaitable[Process]]


@pytest.fixture
async def worker(address: str, tmp_path: Path) -> AsyncIterator[WorkerFactory]:
    """Starts worker processes (keyword arguments become environment variables)."""
    started: list[Process] = []

    async def start(**env: str) -> Process:
        process = await start_worker(address, tmp_path / f"worker-{len(started)}.log", **env)
        started.append(process)
        return process

    yield start
    for process in started:
        await process.kill()


@pytest.fixture(scope="session")
def restartable_pg() -> Iterator[RestartablePostgres]:
    """A PostgreSQL that tests may stop and start (always embedded, whatever the suite uses)."""
    pg = RestartablePostgres(Path(tempfile.mkdtemp(prefix="stepline-restartable-pg-")))
    yield pg
    pg.cleanup()


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[ClusterFactory]:
    """Makes a started Cluster; coordinator settings as keyword arguments (lease_ms="1000")."""
    made: list[Cluster] = []

    async def make(database: str | None = None, **settings: str) -> Cluster:
        c = Cluster(tmp_path, database or database_url, **settings)
        made.append(c)
        await c.start_coordinator()
        return c

    yield make
    for c in made:
        await c.close()
