"""`stepline migrate` and `stepline serve` as a user runs them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from coordinator.store import migrations
from tests.e2e.processes import ROOT, start_coordinator


async def run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "coordinator", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_migrate_applies_pending_migrations_once(pg_admin_url: str) -> None:
    from tests.conftest import with_database

    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute('CREATE DATABASE "cli_migrate"')
    finally:
        await admin.close()
    url = with_database(pg_admin_url, "cli_migrate")
    code, out = await run("migrate", "--database-url", url)
    shipped = [m.version for m in migrations.available()]
    assert len(shipped) >= 4
    assert (code, f"applied migrations: {shipped}" in out) == (0, True), out
    code, out = await run("migrate", "--database-url", url)
    assert (code, "applied migrations: none pending" in out) == (0, True), out
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute('DROP DATABASE "cli_migrate" WITH (FORCE)')
    finally:
        await admin.close()


async def test_serve_stops_cleanly_on_sigterm(database_url: str, tmp_path: Path) -> None:
    coordinator, address = await start_coordinator(database_url, tmp_path / "log")
    assert address.startswith("127.0.0.1:")
    assert await coordinator.stop() == 0
    assert "shutting down" in (tmp_path / "log").read_text()
