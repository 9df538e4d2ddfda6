"""Stepline under benchmark: a coordinator process, worker processes, and a Client here.

Workflows are started from this (the driver) process through ``Client.start_workflow``
and run in ``bench.stepline_worker`` processes. One worker serves everything; the
recovery workloads run a second one so that it can take over from the one killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import asyncpg

from bench import fill, resources
from bench.postgres import Postgres
from bench.processes import Child, spawn
from bench.resources import PidSource
from bench.system import Recovery, recovery_from_marks, wait_for_mark
from worker_sdk import Client

DATABASE = "stepline_bench"
# Enough room for the in-flight memory workload: a worker never turns work away here.
WORKER_CAPACITY = 20_000
# A takeover normally takes milliseconds, and the lease ends a silent worker after 3 s.
RESUME_TIMEOUT = 20.0


class Stepline:
    label = "Stepline"

    def __init__(
        self, pg: Postgres, url: str, coordinator: Child, address: str, out_dir: Path, name: str
    ) -> None:
        self.pg = pg
        self.url = url
        self.coordinator = coordinator
        self.address = address
        self.out_dir = out_dir
        self.name = name  # of its database, and the prefix of its logs
        self.workers: list[Child] = []
        self.client = Client(address)
        self._started = 0

    @classmethod
    async def start(cls, pg: Postgres, out_dir: Path, name: str = DATABASE) -> Stepline:
        url = await pg.create_database(name)
        coordinator, line = await spawn(
            "coordinator",
            ["serve", "--port", "0", "--database-url", url],
            name="coordinator",
            log=out_dir / f"{name}-coordinator.log",
            ready="listening on",
        )
        system = cls(pg, url, coordinator, line.rsplit(" ", 1)[-1], out_dir, name)
        try:
            await system.add_worker()
        except BaseException:
            await coordinator.kill()
            raise
        return system

    async def close(self) -> None:
        await self.client.close()
        for worker in self.workers:
            await worker.kill()
        self.workers.clear()
        await self.coordinator.stop()

    async def add_worker(self) -> Child:
        self._started += 1
        worker, _ = await spawn(
            "bench.stepline_worker",
            [],
            name=f"worker-{self._started}",
            log=self.out_dir / f"{self.name}-worker-{self._started}.log",
            ready="worker ready",
            env={"STEPLINE_ADDRESS": self.address, "BENCH_CAPACITY": str(WORKER_CAPACITY)},
        )
        self.workers.append(worker)
        return worker

    async def twin(self) -> Stepline:
        """Another Stepline like this one, on an empty database of its own."""
        return await Stepline.start(self.pg, self.out_dir, self.name + "_twin")

    async def _keep_workers(self, n: int) -> None:
        while len(self.workers) < n:
            await self.add_worker()
        while len(self.workers) > n:
            await self.workers.pop().stop()

    # --- workloads ------------------------------------------------------------------------

    async def sequential(self, runs: int, steps: int) -> list[float]:
        durations: list[float] = []
        for _ in range(runs):
            handle = await self.client.start_workflow("bench.sequential", steps)
            durations += await handle.result(timeout=120)
        return durations

    async def throughput(self, workflows: int, steps: int) -> float:
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(self.client.start_workflow("bench.chain", steps) for _ in range(workflows))
        )
        await asyncio.gather(*(h.result(timeout=600) for h in handles))
        return time.perf_counter() - started

    async def fanout(self, steps: int) -> float:
        handle = await self.client.start_workflow("bench.fanout", steps)
        seconds: float = await handle.result(timeout=120)
        return seconds

    async def recover(
        self, steps: int, runs: int, marks_dir: Path, *, freeze: bool = False
    ) -> tuple[list[Recovery], list[str]]:
        """Two workers; the one running the workflow is SIGKILLed (or, with ``freeze``,
        SIGSTOPped: alive but silent, so only its lease running out hands the work over) and
        the other takes over."""
        await self._keep_workers(2)
        recoveries: list[Recovery] = []
        failures: list[str] = []
        for i in range(runs):
            marks = marks_dir / f"stepline-{steps}-{i}{'-frozen' if freeze else ''}.marks"
            handle = await self.client.start_workflow("bench.resumable", steps, str(marks))
            parked = await wait_for_mark(marks, "park", timeout=30 + steps * 0.05)
            victim = next(w for w in self.workers if w.pid == parked.pid)
            self.workers.remove(victim)
            killed_at = time.time()
            if freeze:
                os.kill(victim.pid, signal.SIGSTOP)
            else:
                await victim.kill()
            try:
                resumed = await wait_for_mark(marks, "park", not_pid=victim.pid, timeout=RESUME_TIMEOUT)
                await handle.result(timeout=60)
            except TimeoutError as exc:
                failures.append(f"run {i}: workflow {handle.workflow_id}: {exc} (see {self.coordinator.log})")
            else:
                recoveries.append(recovery_from_marks(marks, killed_at, resumed.pid))
            if freeze:
                await victim.kill()  # SIGKILL ends a stopped process too
            await self.add_worker()
        await self._keep_workers(1)
        return recoveries, failures

    async def fill(self, steps: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await fill.fill_stepline(conn, steps)
            await fill.settle(conn, ["workflows", "steps"])
        finally:
            await conn.close()

    async def in_flight_rss(self, count: int) -> dict[str, int]:
        before = self._rss()
        for first in range(0, count, 500):
            batch = min(500, count - first)
            await asyncio.gather(*(self.client.start_workflow("bench.idle", 3600.0) for _ in range(batch)))
        # In flight = its step's start is recorded (the body is sleeping by then).
        conn = await asyncpg.connect(self.url)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                running = await conn.fetchval(
                    "SELECT count(*) FROM workflows w JOIN steps s ON s.workflow_seq = w.seq "
                    "WHERE w.name = 'bench.idle' AND s.status = 'RUNNING'"
                )
                if running >= count:
                    break
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        after = self._rss()
        return {**after, **{f"{role} before": rss for role, rss in before.items()}}

    def _rss(self) -> dict[str, int]:
        return {
            "coordinator": resources.rss_bytes(self.coordinator.pid) or 0,
            "worker": sum(resources.rss_bytes(w.pid) or 0 for w in self.workers),
        }

    def cpu_groups(self) -> dict[str, PidSource]:
        return {
            "coordinator": lambda: [self.coordinator.pid],
            "worker": lambda: [w.pid for w in self.workers],
        }

    def profile_targets(self) -> dict[str, int]:
        """The processes worth profiling, by role."""
        return {"coordinator": self.coordinator.pid, "worker": self.workers[0].pid}
