"""DBOS Transact under benchmark: ``bench.dbos_app`` processes driven over stdin/stdout.

DBOS is a library: a workflow runs in the process that starts it, and is recovered by a
process of the same executor ID when that one launches again. There is no peer takeover
without DBOS's control plane (Conductor), so its recovery workloads kill the process and
start a new one: the restart is part of its recovery time.

The workloads that start workflows run in one long-lived app process (executor
``bench-main``); the recovery workloads use their own executor ID, so a restart there
never recovers anything of the main process. DBOS has durable sleep and send/recv, but a
waiting workflow stays in its process's memory: there is no suspension.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench import fill, resources
from bench.postgres import Postgres
from bench.processes import Child, spawn
from bench.resources import PidSource
from bench.system import MarksWatch, Recovery, recovery_from_marks, wait_for_mark

log = logging.getLogger("bench")

DATABASE = "dbos_bench"
# Before each send: time for recv, called just after the "wait" mark, to be waiting (its
# setup is three statements in DBOS's thread pool).
RECV_SETTLE = 0.05
# (i): ten times what blocking FULL's 5k takes here.
BLOCK_TIMEOUT = 600.0


def available() -> bool:
    """Whether the ``dbos`` package is installed (the ``bench`` extra)."""
    return importlib.util.find_spec("dbos") is not None


class Dbos:
    label = "DBOS"
    suspends = False

    def __init__(
        self, pg: Postgres, url: str, app: Child, out_dir: Path, max_threads: int | None, name: str
    ) -> None:
        self.pg = pg
        self.url = url
        self.app = app
        self.out_dir = out_dir
        self.max_threads = max_threads
        self.name = name  # of its database, and the prefix of its logs
        self._started = 0

    @classmethod
    async def start(
        cls, pg: Postgres, out_dir: Path, max_threads: int | None = None, name: str = DATABASE
    ) -> Dbos:
        """DBOS with its default settings, except ``max_executor_threads`` when given."""
        url = await pg.create_database(name)
        app = await _spawn_app(url, "bench-main", out_dir / f"{name}-main.log", max_threads)
        system = cls(pg, url, app, out_dir, max_threads, name)
        await system.command("ping")
        return system

    async def close(self) -> None:
        await self.app.stop()

    async def command(self, cmd: str, app: Child | None = None, **args: Any) -> dict[str, Any]:
        """Sends one command to an app process and returns its answer."""
        app = app or self.app
        await app.write(json.dumps({"cmd": cmd, **args}))
        while True:
            line = await app.readline(timeout=3600)
            if not line:
                raise RuntimeError(f"the DBOS app exited; its log is {app.log}")
            if line.startswith("BENCH "):
                answer: dict[str, Any] = json.loads(line[len("BENCH ") :])
                if not answer.pop("ok"):
                    raise RuntimeError(f"DBOS app: {cmd} failed: {answer['error']}")
                return answer
            log.info("DBOS app printed (%d chars): %s", len(line), line[:300].rstrip())

    # --- workloads ------------------------------------------------------------------------

    async def sequential(self, runs: int, steps: int) -> list[float]:
        durations: list[float] = (await self.command("sequential", runs=runs, steps=steps))["durations"]
        return durations

    async def children(self, runs: int, n: int) -> list[float]:
        durations: list[float] = (await self.command("children", runs=runs, n=n))["durations"]
        return durations

    async def throughput(self, workflows: int, steps: int) -> float:
        seconds: float = (await self.command("throughput", workflows=workflows, steps=steps))["seconds"]
        return seconds

    async def fanout(self, steps: int) -> float:
        seconds: float = (await self.command("fanout", steps=steps))["seconds"]
        return seconds

    async def recover(self, steps: int, runs: int, marks_dir: Path) -> tuple[list[Recovery], list[str]]:
        """The process running the workflow is SIGKILLed; a restarted one recovers it."""
        current = await self._recovery_app()
        recoveries: list[Recovery] = []
        failures: list[str] = []
        conn = await asyncpg.connect(self.url)
        try:
            for i in range(runs):
                marks = marks_dir / f"dbos-{steps}-{i}.marks"
                workflow_id = f"recover-{steps}-{i}-{time.time_ns()}"
                await self.command(
                    "start_resumable", current, n=steps, marks=str(marks), workflow_id=workflow_id
                )
                await wait_for_mark(marks, "park", pid=current.pid, timeout=60 + steps * 0.1)
                killed_at = time.time()
                await current.kill()
                current = await self._recovery_app()
                ready_at = time.time()
                try:
                    await wait_for_mark(marks, "park", pid=current.pid, timeout=120)
                    await _wait_success(conn, workflow_id)
                except TimeoutError as exc:
                    failures.append(f"run {i}: workflow {workflow_id}: {exc} (see {current.log})")
                else:
                    recoveries.append(recovery_from_marks(marks, killed_at, current.pid, ready_at))
        finally:
            await conn.close()
            await current.stop()
        return recoveries, failures

    async def twin(self) -> Dbos:
        """Another DBOS application like this one, on an empty database of its own."""
        return await Dbos.start(self.pg, self.out_dir, self.max_threads, self.name + "_twin")

    async def _recovery_app(self) -> Child:
        self._started += 1
        log = self.out_dir / f"{self.name}-recovery-{self._started}.log"
        return await _spawn_app(self.url, "bench-recovery", log, self.max_threads)

    async def fill(self, steps: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await fill.fill_dbos(conn, steps)
            tables = ["workflow_status", "operation_outputs", "workflow_input", "workflow_output"]
            present = [
                f"dbos.{t}" for t in tables if await conn.fetchval("SELECT to_regclass($1)", f"dbos.{t}")
            ]
            await fill.settle(conn, present)
        finally:
            await conn.close()

    async def in_flight_rss(self, count: int) -> dict[str, int]:
        before = resources.rss_bytes(self.app.pid) or 0
        await self.command("idle", count=count, seconds=3600.0, timeout=600.0)
        return {"worker": resources.rss_bytes(self.app.pid) or 0, "worker before": before}

    # --- durable waits ----------------------------------------------------------------------

    async def wakeups(self, messages: int, fresh: int, marks_dir: Path) -> dict[str, list[float]]:
        """In memory only: DBOS cannot suspend a workflow (``fresh`` is not used)."""
        marks = marks_dir / "dbos-wake-in-memory.marks"
        watch = MarksWatch(marks)
        workflow_id = f"wake-{time.time_ns()}"
        await self.command("start_receive", n=messages, marks=str(marks), workflow_id=workflow_id)
        latencies = []
        for i in range(messages):
            await watch.wait("wait", i + 1, timeout=30)
            await asyncio.sleep(RECV_SETTLE)
            sent_at: float = (await self.command("send", workflow_id=workflow_id, message=i))["sent_at"]
            received = await watch.wait("recv", i + 1, timeout=30)
            latencies.append(received.at - sent_at)
        conn = await asyncpg.connect(self.url)
        try:
            await _wait_success(conn, workflow_id)
        finally:
            await conn.close()
        return {"in memory": latencies}

    async def sleepers(
        self,
        count: int,
        seconds: float,
        marks: Path,
        asleep: Callable[[], Awaitable[None]],
        woken: Callable[[], Awaitable[None]],
    ) -> None:
        await self.command("naps", count=count, seconds=seconds, marks=str(marks))
        await asleep()
        await woken()
        await self.command("naps_done")

    async def suspended_rss(self, count: int) -> dict[str, int]:
        """``count`` workflows blocked in ``DBOS.recv``, in the app process's memory."""
        conn = await asyncpg.connect(self.url)
        try:
            already = await _blocked(conn)
            before = resources.rss_bytes(self.app.pid) or 0
            await self.command("block", count=count)
            await _wait_blocked(conn, already, count)
        finally:
            await conn.close()
        return {"worker": resources.rss_bytes(self.app.pid) or 0, "worker before": before}

    async def cancels(self, count: int, marks_dir: Path) -> list[float]:
        conn = await asyncpg.connect(self.url)
        try:
            already = await _blocked(conn)
            await self.command("block", count=count)
            await _wait_blocked(conn, already, count)
        finally:
            await conn.close()
        durations: list[float] = (await self.command("cancel_blocked"))["durations"]
        return durations

    def cpu_groups(self) -> dict[str, PidSource]:
        return {"worker": lambda: [self.app.pid]}


async def _spawn_app(url: str, executor_id: str, log: Path, max_threads: int | None) -> Child:
    threads = ["--max-threads", str(max_threads)] if max_threads is not None else []
    app, _ = await spawn(
        "bench.dbos_app",
        ["--database-url", url, "--executor-id", executor_id, *threads],
        name=f"dbos-{executor_id}",
        log=log,
        ready="dbos ready",
        stdin=True,
    )
    return app


async def _blocked(conn: Any) -> int:
    """bench.receive workflows waiting in recv: its setup ends by recording the timeout as a
    durable sleep (an operation named DBOS.sleep), after it registered for the message."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM dbos.workflow_status w JOIN dbos.operation_outputs o USING (workflow_uuid) "
        "WHERE w.name = 'bench.receive' AND w.status = 'PENDING' AND o.function_name = 'DBOS.sleep'"
    )
    return count


async def _wait_blocked(conn: Any, already: int, count: int) -> None:
    """Until ``count`` more bench.receive workflows than ``already`` wait in recv."""
    started = reported = time.monotonic()
    while (found := await _blocked(conn) - already) < count:
        if time.monotonic() - started > BLOCK_TIMEOUT:
            raise TimeoutError(f"{found} of {count} DBOS workflows blocked in recv after {BLOCK_TIMEOUT} s")
        if time.monotonic() - reported > 10:
            reported = time.monotonic()
            log.info("DBOS: %d of %d blocked in recv after %.0f s", found, count, reported - started)
        await asyncio.sleep(0.05)


async def _wait_success(conn: Any, workflow_id: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = await conn.fetchval(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = $1", workflow_id
        )
        if status == "SUCCESS":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"DBOS workflow {workflow_id} is still {status} after {timeout} s")
        await asyncio.sleep(0.01)
