"""Liveness is tracked in coordinator memory; PostgreSQL is not written per heartbeat.

Heartbeats stamp the worker's session in memory and are answered there; the lease
watchdog ends sessions that fell silent. The database only sees the coarse lease: one
statement per lease/3 renews all of a coordinator's workers, and one per lease sweeps for
leases of dead coordinators.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter

import asyncpg
import grpc
import pytest

from coordinator import server
from coordinator.config import Settings
from coordinator.models import Heartbeat, WorkerEvent
from coordinator.sessions import Session
from tests.protocol import RawWorker
from worker_sdk import Client, Worker, WorkflowStatus, step, workflow

LEASE_MS = 600
LEASE = LEASE_MS / 1000
# Every lease/3 each worker heartbeats, and the coordinator renews all leases at once.
INTERVAL = LEASE / 3
WORKERS = 6
WINDOW = 2.0

runs: Counter[str] = Counter()


@pytest.fixture(autouse=True)
def _clear() -> None:
    runs.clear()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(host="127.0.0.1", port=0, database_url=database_url, pool_size=4, lease_ms=LEASE_MS)


@step()
async def note(workflow_id: str) -> str:
    runs[workflow_id] += 1
    return workflow_id


@workflow(name="beat")
async def beat(workflow_id: str) -> str:
    return await note(workflow_id)


# Statement-level: a statement is logged once whatever it touches, with how many rows it
# wrote (from its transition tables), so that a statement that wrote nothing shows as such.
_COUNT_STATEMENTS = """
CREATE TABLE statement_log (
    table_name text        NOT NULL,
    op         text        NOT NULL,
    rows       bigint      NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO statement_log (table_name, op, rows)
        SELECT TG_TABLE_NAME, TG_OP, count(*) FROM old_rows;
    ELSE
        INSERT INTO statement_log (table_name, op, rows)
        SELECT TG_TABLE_NAME, TG_OP, count(*) FROM new_rows;
    END IF;
    RETURN NULL;
END
$$;
"""

# One trigger per event: PostgreSQL gives transition tables only to single-event triggers.
_TRIGGERS = {
    "INSERT": "REFERENCING NEW TABLE AS new_rows",
    "UPDATE": "REFERENCING NEW TABLE AS new_rows",
    "DELETE": "REFERENCING OLD TABLE AS old_rows",
}


async def count_statements(conn: asyncpg.Connection) -> None:
    """From the commit of this on, every statement on the three tables is logged."""
    async with conn.transaction():
        await conn.execute(_COUNT_STATEMENTS)
        for table in ("worker_leases", "workflows", "steps"):
            for event, referencing in _TRIGGERS.items():
                await conn.execute(
                    f"CREATE TRIGGER log_{event.lower()} AFTER {event} ON {table} {referencing}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION log_statement()"
                )


def alive(running: server.Running) -> dict[str, str]:
    """worker_id -> session_id of the sessions the coordinator keeps open."""
    return {s.worker_id: s.session_id for s in running.engine.sessions if not s.closed.is_set()}


async def test_idle_workers_heartbeat_in_memory_and_leases_are_renewed_together(
    coordinator: server.Running, address: str, conn: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = coordinator.engine
    heartbeats = 0
    handle = engine.handle

    def counting(session: Session, events: list[WorkerEvent]) -> None:
        nonlocal heartbeats
        heartbeats += sum(isinstance(e, Heartbeat) for e in events)
        handle(session, events)

    monkeypatch.setattr(engine, "handle", counting)
    ids = [f"idle-{i}-{uuid.uuid4().hex[:6]}" for i in range(WORKERS)]
    async with contextlib.AsyncExitStack() as stack:
        for worker_id in ids:  # each start() returns once the worker is registered
            await stack.enter_async_context(Worker(address, workflows=[beat], worker_id=worker_id))
        sessions = alive(coordinator)
        assert sorted(sessions) == sorted(ids)
        assert await conn.fetchval("SELECT count(*) FROM worker_leases") == WORKERS

        await count_statements(conn)
        loop = asyncio.get_running_loop()
        began, heartbeats = loop.time(), 0
        # The measurement window: the workers sit idle while their heartbeats flow. A sleep
        # is right here, the passing time is what is measured; nothing is waited for.
        await asyncio.sleep(WINDOW)
        log = [(r["table_name"], r["op"], r["rows"]) for r in await conn.fetch("SELECT * FROM statement_log")]
        window, received = loop.time() - began, heartbeats

        # Every worker kept its one session throughout: none expired, none reconnected.
        assert alive(coordinator) == sessions
        assert engine.stats.leases_expired == 0
        assert await conn.fetchval("SELECT count(*) FROM worker_leases WHERE expires_at > now()") == WORKERS
    ticks = window / INTERVAL
    assert received >= WORKERS * ticks / 2, f"only {received} heartbeats arrived in {window:.2f} s"

    assert [s for s in log if s[0] == "steps"] == []
    # Only the idle expiry sweep (once per lease) touches workflows, and it writes nothing.
    on_workflows = [s for s in log if s[0] == "workflows"]
    assert {s[1:] for s in on_workflows} <= {("UPDATE", 0)}, on_workflows
    assert len(on_workflows) <= window / LEASE + 2
    on_leases = [s for s in log if s[0] == "worker_leases"]
    # What is written: one renewal of all six leases per lease/3, and nothing per heartbeat.
    renewals = [s for s in on_leases if s[2] > 0]
    assert {s[1:] for s in renewals} <= {("UPDATE", WORKERS)}, renewals
    assert len(renewals) <= ticks + 2, f"{len(renewals)} lease writes in {window:.2f} s"
    assert len(renewals) >= ticks / 2, "the leases were not renewed (or the triggers log nothing)"
    # The sweep's DELETE finds no expired lease; all statements together stay far below
    # the heartbeats.
    assert {s[1:] for s in on_leases if s[2] == 0} <= {("DELETE", 0)}, on_leases
    assert len(on_leases) <= ticks + window / LEASE + 2
    assert len(on_leases) < received / 2


async def test_a_silent_worker_loses_its_session_after_the_lease_and_its_workflow_moves_on(
    coordinator: server.Running, address: str, client: Client, conn: asyncpg.Connection
) -> None:
    engine = coordinator.engine
    silent_id, live_id = f"silent-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    workflow_id = f"moves-on-{uuid.uuid4().hex[:6]}"
    async with grpc.aio.insecure_channel(address) as channel:
        silent = RawWorker(channel, silent_id, ["beat"])
        # Taken before Register, the last thing this worker sends: the coordinator's clock
        # (the same, in this process) starts its lease no earlier.
        last_sent = time.monotonic()
        await silent.register()
        session = engine.sessions.get(silent_id)
        assert session is not None
        await client.start_workflow("beat", workflow_id, workflow_id=workflow_id)
        first = (await silent.next("assignment")).assignment
        assert (first.workflow_id, first.epoch) == (workflow_id, 1)

        async with Worker(address, workflows=[beat], worker_id=live_id):
            deadline = last_sent + LEASE + 0.5
            while engine.sessions.get(silent_id) is session:
                assert time.monotonic() < deadline, "the silent worker kept its session past its lease"
                await asyncio.sleep(0.01)
            lost_after = time.monotonic() - last_sent
            assert lost_after >= LEASE, f"the session ended {lost_after:.3f} s after it was last heard of"
            assert session.close_reason == "lease expired"
            assert engine.stats.leases_expired == 1
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await silent.call.read()
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert ended.value.details() == "session ended: lease expired"

            assert await client.get_handle(workflow_id).result(timeout=10) == workflow_id
            info = await client.get_workflow(workflow_id)
            assert live_id in alive(coordinator)
    assert (info.status, info.epoch, info.recovery_attempts) == (WorkflowStatus.SUCCEEDED, first.epoch + 1, 1)
    steps = await conn.fetch("SELECT step_id, worker_id, epoch FROM steps")
    assert [tuple(r) for r in steps] == [("1", live_id, first.epoch + 1)]
    assert runs == Counter({workflow_id: 1})
