"""Chaos: load across three worker processes while workers, the coordinator and PostgreSQL die.

Invariants, from the workers' side-effect logs and from audit triggers that record every
write to ``steps`` and ``workflows`` together with the epoch current when it was written:
every workflow completes with the right result; no step outcome is written twice; no step
body starts after its result was committed; no write is accepted from a stale epoch.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import pytest

from coordinator.store import migrations
from coordinator.store.database import Database
from tests.e2e.cluster import Cluster, RestartablePostgres
from tests.e2e.conftest import ClusterFactory
from tests.e2e.processes import Process
from tests.e2e.programs.flows import BEGIN
from worker_sdk import SteplineError

WORKFLOWS = 200
STEPS = 10
EXPECTED = sum(i * i for i in range(STEPS))

AUDIT = """
CREATE TABLE audit_steps (
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    workflow_seq bigint, step_id text, op text, old_status text, new_status text,
    write_epoch bigint, current_epoch bigint, current_owner text, writer text
);
CREATE FUNCTION audit_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE cur record;
BEGIN
    SELECT epoch, owner_id INTO cur FROM workflows WHERE seq = NEW.workflow_seq;
    INSERT INTO audit_steps (workflow_seq, step_id, op, old_status, new_status, write_epoch,
                             current_epoch, current_owner, writer)
    VALUES (NEW.workflow_seq, NEW.step_id, TG_OP,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.epoch,
            cur.epoch, cur.owner_id, NEW.worker_id);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_steps AFTER INSERT OR UPDATE ON steps
    FOR EACH ROW EXECUTE FUNCTION audit_step();

CREATE TABLE audit_workflows (
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    workflow_id text, old_status text, new_status text, old_epoch bigint, new_epoch bigint,
    old_owner text, new_owner text
);
CREATE FUNCTION audit_workflow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_workflows (workflow_id, old_status, new_status, old_epoch, new_epoch,
                                 old_owner, new_owner)
    VALUES (NEW.workflow_id, OLD.status, NEW.status, OLD.epoch, NEW.epoch, OLD.owner_id, NEW.owner_id);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_workflows AFTER UPDATE ON workflows
    FOR EACH ROW EXECUTE FUNCTION audit_workflow();
"""


async def prepare(url: str) -> None:
    """Migrates the database and installs the audit triggers before the coordinator starts."""
    db = await Database.connect(url, size=2)
    try:
        await migrations.apply(db)
    finally:
        await db.close()
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(AUDIT)
    finally:
        await admin.close()


async def start_all(c: Cluster, started: list[int]) -> None:
    """Starts the workflows over several seconds, retrying through outages (starts are idempotent)."""
    for i in range(WORKFLOWS):
        while True:
            try:
                await c.client.start_workflow("chaos", STEPS, workflow_id=f"chaos-{i}")
                break
            except SteplineError:
                await asyncio.sleep(0.1)
        started[0] = i + 1
        await asyncio.sleep(0.04)


async def succeeded(url: str) -> int:
    """How many workflows succeeded; -1 while PostgreSQL cannot be asked."""
    try:
        db = await asyncpg.connect(url, timeout=2)
    except (OSError, asyncpg.PostgresError):
        return -1
    try:
        return int(await db.fetchval("SELECT count(*) FROM workflows WHERE status = 'SUCCEEDED'"))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return -1
    finally:
        await db.close()


async def unfinished(url: str) -> list[dict[str, Any]]:
    """What the database says about workflows that did not finish, for the failure message."""
    db = await asyncpg.connect(url)
    try:
        rows = await db.fetch(
            "SELECT workflow_id, status, owner_id, epoch, recovery_attempts, handoff, "
            "(SELECT count(*) FROM steps s WHERE s.workflow_seq = w.seq AND s.status <> 'RUNNING') "
            "AS steps_done "
            "FROM workflows w WHERE status <> 'SUCCEEDED'"
        )
        leases = await db.fetch("SELECT worker_id, expires_at > now() AS live FROM worker_leases")
    finally:
        await db.close()
    return [dict(r) for r in rows] + [{"leases": [dict(lease) for lease in leases]}]


class Chaos:
    """Kills and freezes workers, and kills the coordinator and PostgreSQL once each."""

    def __init__(self, c: Cluster, pg: RestartablePostgres, env: dict[str, str]) -> None:
        self.c = c
        self.pg = pg
        self.env = env
        self.rng = random.Random(20261125)
        self.kills = self.freezes = self.coordinator_kills = self.pg_restarts = 0
        self.thawing: dict[asyncio.Task[None], Process] = {}

    async def act(self, started: int) -> None:
        if self.coordinator_kills == 0 and started >= WORKFLOWS // 5:
            await self.c.kill_coordinator()
            self.coordinator_kills += 1
            await asyncio.sleep(0.3)
            await self.c.start_coordinator()
        elif self.pg_restarts == 0 and started >= WORKFLOWS // 2:
            await self.pg.stop()
            self.pg_restarts += 1
            await asyncio.sleep(1.0)
            await self.pg.start()
        else:
            frozen = {p for t, p in self.thawing.items() if not t.done()}
            candidates = [w for w in self.c.workers if w.alive and w not in frozen]
            victim = self.rng.choice(candidates)
            # A kill first, then a freeze, then either at random.
            if self.kills == 0:
                freeze = False
            elif self.freezes == 0:
                freeze = True
            else:
                freeze = self.rng.random() < 0.35
            if freeze:
                if self.freezes == 0:
                    # The first zombie is the busiest worker: it surely has steps in flight,
                    # whose late results the coordinator must refuse.
                    victim = await self.busiest(candidates, victim)
                self.thawing[asyncio.create_task(self.freeze(victim))] = victim
                self.freezes += 1
            else:
                await victim.kill()
                self.kills += 1
            await self.c.start_worker(**self.env)

    async def busiest(self, workers: list[Process], fallback: Process) -> Process:
        """Of ``workers``, the one that owns the most running workflows."""
        candidates = {w.worker_id: w for w in workers}
        db = await self.c.db()
        try:
            rows = await db.fetch(
                "SELECT owner_id FROM workflows WHERE status = 'RUNNING' AND owner_id = ANY($1::text[]) "
                "GROUP BY owner_id ORDER BY count(*) DESC LIMIT 1",
                list(candidates),
            )
        finally:
            await db.close()
        return candidates[rows[0]["owner_id"]] if rows else fallback

    async def freeze(self, victim: Process) -> None:
        """SIGSTOP past the lease (its work is reassigned), then SIGCONT: a zombie."""
        victim.signal(signal.SIGSTOP)
        await asyncio.sleep(self.rng.uniform(1.5, 2.5))
        victim.signal(signal.SIGCONT)


async def test_chaos(
    cluster: ClusterFactory, restartable_pg: RestartablePostgres, capsys: pytest.CaptureFixture[str]
) -> None:
    url = await restartable_pg.new_database()
    await prepare(url)
    c = await cluster(database=url, lease_ms="1000", max_recovery_attempts="1000")
    env = {"STEP_DELAY": "0.15", "CAPACITY": "60"}
    for _ in range(3):
        await c.start_worker(**env)
    chaos = Chaos(c, restartable_pg, env)
    started = [0]
    starting = asyncio.create_task(start_all(c, started))
    began = time.monotonic()
    # The chaos runs while workflows are being started, so it always lands mid-load: the
    # coordinator dies a fifth of the way in, PostgreSQL half way, workers all along.
    while not starting.done():
        await asyncio.sleep(chaos.rng.uniform(0.6, 1.2))
        if not starting.done():
            await chaos.act(started[0])
    await starting
    await asyncio.gather(*chaos.thawing)
    deadline = time.monotonic() + 120
    while (done := await succeeded(url)) < WORKFLOWS:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} of {WORKFLOWS} workflows finished: {await unfinished(url)}")
        await asyncio.sleep(0.2)

    db = await asyncpg.connect(url)
    try:
        counts = await check_invariants(db, c)
    finally:
        await db.close()
    line = (
        f"chaos: {WORKFLOWS} workflows x {STEPS} steps on 3 workers at a time ({len(c.workers)} "
        f"started, thawed zombies rejoin); {chaos.kills} worker kills, "
        f"{chaos.freezes} worker freezes, {chaos.coordinator_kills} coordinator kill+restart, "
        f"{chaos.pg_restarts} PostgreSQL restart; {counts['reassignments']} reassignments, "
        f"{counts['stale_refused']} stale writes refused, {counts['reexecuted']} in-flight steps "
        f"re-executed; {time.monotonic() - began:.1f} s"
    )
    with capsys.disabled():
        print("\n" + line)
    assert chaos.kills >= 1
    assert chaos.freezes >= 1
    assert chaos.kills + chaos.freezes >= 3
    assert (chaos.coordinator_kills, chaos.pg_restarts) == (1, 1)
    # Fencing was exercised, not only never needed: a thawed zombie's late results reached
    # the coordinator and were refused, and work lost with a worker ran again elsewhere.
    assert counts["stale_refused"] >= 1, "no stale write was refused: the zombies never wrote late"
    assert counts["reassignments"] >= 1


async def check_invariants(db: asyncpg.Connection, c: Cluster) -> dict[str, int]:
    workflows = await db.fetch("SELECT workflow_id, seq, status, output, epoch FROM workflows")
    assert len(workflows) == WORKFLOWS
    wrong = [(w["workflow_id"], w["status"]) for w in workflows if w["output"] != str(EXPECTED).encode()]
    assert not wrong, f"workflows without the right result: {wrong[:5]}"
    seq_of = {w["workflow_id"]: w["seq"] for w in workflows}

    audit = await db.fetch("SELECT * FROM audit_steps ORDER BY at")
    stale = [dict(a) for a in audit if a["write_epoch"] != a["current_epoch"]]
    assert not stale, f"step writes accepted from a stale epoch: {stale[:3]}"
    overwritten = [dict(a) for a in audit if a["op"] == "UPDATE" and a["old_status"] != "RUNNING"]
    assert not overwritten, f"a final step outcome was written again: {overwritten[:3]}"
    final_writes: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for a in audit:
        if a["new_status"] != "RUNNING":
            final_writes[(a["workflow_seq"], a["step_id"])].append(a["at"])
    assert len(final_writes) == WORKFLOWS * STEPS
    twice = [k for k, v in final_writes.items() if len(v) > 1]
    assert not twice, f"step results recorded twice: {twice[:3]}"

    for a in await db.fetch("SELECT * FROM audit_workflows"):
        if a["new_status"] == "SUCCEEDED":
            assert a["old_status"] == "RUNNING"
            assert a["old_owner"] is not None, f"{a['workflow_id']} was completed by no owner"
            assert a["old_epoch"] == a["new_epoch"]
        assert a["new_epoch"] in (a["old_epoch"], a["old_epoch"] + 1)

    runs: Counter[tuple[int, str]] = Counter()  # bodies that finished
    begun: Counter[tuple[int, str]] = Counter()  # bodies that started, finished or not
    for e in c.effects():
        key = (seq_of[e.workflow_id], e.step_id)
        (begun if e.what.startswith(BEGIN) else runs)[key] += 1
        committed = final_writes[key][0].timestamp()
        assert e.started < committed, (
            f"step {e.step_id} of {e.workflow_id} started at {e.started} on {e.worker}, "
            f"after its result was committed at {committed}"
        )
    missing = set(final_writes) - set(runs)
    assert not missing, f"recorded steps that no step body produced: {sorted(missing)[:3]}"
    log = c.coordinator_log.read_text()
    return {
        "reassignments": sum(w["epoch"] - 1 for w in workflows),
        "stale_refused": len(re.findall(r"write refused: workflow \S+ epoch", log)),
        "reexecuted": sum(n - 1 for n in begun.values()),
    }
