"""Stepline under benchmark: a coordinator process, worker processes, and a Client here.

Workflows are started from this (the driver) process through ``Client.start_workflow``
and run in ``bench.stepline_worker`` processes. One worker serves everything; the
recovery workloads run a second one so that it can take over from the one killed. The
durable-wait workloads (g), (h), (i) run their workflows (``bench.stepline_waits``) in a
worker of their own, started with the ``suspend_after`` each case needs. For (a) and (b)
in another worker language (``bench/languages.py``), ``serving`` puts that language's
worker in the Python one's place for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench import fill, resources
from bench.languages import LANGUAGES, PYTHON, WorkerLanguage
from bench.postgres import Postgres
from bench.processes import Child, spawn, spawn_command
from bench.resources import PidSource
from bench.system import MarksWatch, Recovery, recovery_from_marks, wait_for_mark
from worker_sdk import Client, WorkflowHandle, WorkflowStatus

log = logging.getLogger("bench")

DATABASE = "stepline_bench"
# Enough room for the in-flight memory workload: a worker never turns work away here.
WORKER_CAPACITY = 20_000
# A takeover normally takes milliseconds, and the lease ends a silent worker after 3 s.
RESUME_TIMEOUT = 20.0
# suspend_after of the durable-wait workers: far longer than any wait, or at once.
IN_MEMORY = 3600.0
AT_ONCE = 0.0
# Before each in-memory send: time for recv, called just after the "wait" mark, to be waiting.
RECV_SETTLE = 0.05
START_BATCH = 500


class Stepline:
    label = "Stepline"
    suspends = True

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
        self.waits_worker: Child | None = None  # while a durable-wait workload runs
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
        worker = await self._spawn_worker({})
        self.workers.append(worker)
        return worker

    async def _spawn_worker(self, env: dict[str, str], language: WorkerLanguage = LANGUAGES[PYTHON]) -> Child:
        self._started += 1
        suffix = "" if language.name == PYTHON else f"-{language.name}"
        worker, _ = await spawn_command(
            language.command(),
            name=f"worker-{self._started}{suffix}",
            log=self.out_dir / f"{self.name}-worker-{self._started}{suffix}.log",
            ready="worker ready",
            cwd=language.cwd,
            env={"STEPLINE_ADDRESS": self.address, "BENCH_CAPACITY": str(WORKER_CAPACITY), **env},
        )
        return worker

    @contextlib.asynccontextmanager
    async def serving(self, language: WorkerLanguage) -> AsyncIterator[Child]:
        """A worker of ``language`` in the Python workers' place (they are stopped first, so
        that it runs every workflow started meanwhile); then the Python workers are back."""
        count = len(self.workers)
        while self.workers:
            await self.workers.pop().stop()
        try:
            worker = await self._spawn_worker({}, language)
            self.workers.append(worker)
            try:
                yield worker
            finally:
                self.workers.remove(worker)
                await worker.stop()
        finally:
            await self._keep_workers(count)

    @contextlib.asynccontextmanager
    async def _waits(self, suspend_after: float) -> AsyncIterator[Child]:
        """A worker serving the durable-wait workflows, for the length of one workload."""
        worker = await self._spawn_worker({"BENCH_WAITS": "1", "BENCH_SUSPEND_AFTER": str(suspend_after)})
        self.waits_worker = worker
        try:
            yield worker
        finally:
            self.waits_worker = None
            await worker.stop()

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

    async def children(self, runs: int, n: int) -> list[float]:
        durations: list[float] = []
        for _ in range(runs):
            handle = await self.client.start_workflow("bench.parent", n)
            durations += await handle.result(timeout=120)
        return durations

    async def cancels(self, count: int, marks_dir: Path) -> list[float]:
        async with self._waits(IN_MEMORY):
            marks = marks_dir / "stepline-cancel.marks"
            watch = MarksWatch(marks)
            handles = await self._start_many(count, "bench.receive", 1, str(marks))
            await watch.wait("wait", count, timeout=60)
            durations = []
            for handle in handles:
                started = time.perf_counter()
                await self.client.cancel(handle.workflow_id, "bench")
                durations.append(time.perf_counter() - started)
            statuses = {(await h.info()).status for h in handles[:: max(1, count // 10)]}
            if statuses != {WorkflowStatus.CANCELLED}:
                raise RuntimeError(f"(k) cancelled workflows are {statuses}")
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
        await self._start_many(count, "bench.idle", 3600.0)
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

    # --- durable waits ----------------------------------------------------------------------

    async def wakeups(self, messages: int, fresh: int, marks_dir: Path) -> dict[str, list[float]]:
        async with self._waits(IN_MEMORY):
            in_memory = await self._wake_in_memory(messages, marks_dir / "stepline-wake-in-memory.marks")
        async with self._waits(AT_ONCE):
            suspended = await self._wake_suspended(fresh, marks_dir / "stepline-wake-suspended.marks")
        return {"in memory": in_memory, "suspended": suspended}

    async def _wake_in_memory(self, messages: int, marks: Path) -> list[float]:
        """One workflow receives ``messages`` messages, each sent once it waits for it."""
        watch = MarksWatch(marks)
        handle = await self.client.start_workflow("bench.receive", messages, str(marks))
        latencies = []
        for i in range(messages):
            await watch.wait("wait", i + 1, timeout=30)
            await asyncio.sleep(RECV_SETTLE)
            sent_at = time.time()
            await self.client.send(handle.workflow_id, i)
            received = await watch.wait("recv", i + 1, timeout=30)
            latencies.append(received.at - sent_at)
        await handle.result(timeout=60)
        return latencies

    async def _wake_suspended(self, fresh: int, marks: Path) -> list[float]:
        """``fresh`` workflows that each receive one message, sent once all are suspended."""
        watch = MarksWatch(marks)
        conn = await asyncpg.connect(self.url)
        try:
            already = await _suspended(conn)
            handles = await self._start_many(fresh, "bench.receive", 1, str(marks))
            await _wait_suspended(conn, already + fresh, timeout=60)
        finally:
            await conn.close()
        latencies = []
        for i, handle in enumerate(handles):
            sent_at = time.time()
            await self.client.send(handle.workflow_id, i)
            received = await watch.wait("recv", i + 1, timeout=30)
            latencies.append(received.at - sent_at)
        await asyncio.gather(*(h.result(timeout=60) for h in handles))
        return latencies

    async def sleepers(
        self,
        count: int,
        seconds: float,
        marks: Path,
        asleep: Callable[[], Awaitable[None]],
        woken: Callable[[], Awaitable[None]],
    ) -> None:
        async with self._waits(IN_MEMORY):
            handles = await self._start_many(count, "bench.nap", seconds, str(marks), numbered=True)
            await asleep()
            await woken()
            await asyncio.gather(*(h.result(timeout=600) for h in handles))

    async def suspended_rss(self, count: int) -> dict[str, int]:
        async with self._waits(AT_ONCE):
            before = self._rss()
            conn = await asyncpg.connect(self.url)
            try:
                already = await _suspended(conn)
                await self._start_many(count, "bench.receive", 1, "")
                await _wait_suspended(conn, already + count, timeout=900)
            finally:
                await conn.close()
            after = self._rss()
        # They stay suspended in PostgreSQL: nothing will ever send them a message.
        return {**after, **{f"{role} before": rss for role, rss in before.items()}}

    async def _start_many(
        self, count: int, workflow: str, *args: Any, numbered: bool = False
    ) -> list[WorkflowHandle]:
        """Starts ``count`` workflows, ``START_BATCH`` at a time; with ``numbered`` each
        gets its index as its first argument."""
        handles: list[WorkflowHandle] = []
        for first in range(0, count, START_BATCH):
            batch = range(first, min(first + START_BATCH, count))
            handles += await asyncio.gather(
                *(self.client.start_workflow(workflow, *((i, *args) if numbered else args)) for i in batch)
            )
        return handles

    # --- processes --------------------------------------------------------------------------

    def _all_workers(self) -> list[Child]:
        return [*self.workers, *([self.waits_worker] if self.waits_worker is not None else [])]

    def _rss(self) -> dict[str, int]:
        return {
            "coordinator": resources.rss_bytes(self.coordinator.pid) or 0,
            "worker": sum(resources.rss_bytes(w.pid) or 0 for w in self._all_workers()),
        }

    def cpu_groups(self) -> dict[str, PidSource]:
        return {
            "coordinator": lambda: [self.coordinator.pid],
            "worker": lambda: [w.pid for w in self._all_workers()],
        }

    def profile_targets(self) -> dict[str, int]:
        """The processes worth profiling, by role."""
        return {"coordinator": self.coordinator.pid, "worker": self.workers[0].pid}


async def _suspended(conn: Any) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM workflows WHERE suspended AND name = 'bench.receive'"
    )
    return count


async def _wait_suspended(conn: Any, count: int, *, timeout: float) -> None:
    """Until ``count`` bench.receive workflows are suspended."""
    started = reported = time.monotonic()
    while (found := await _suspended(conn)) < count:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{found} bench.receive workflows suspended, not {count}, after {timeout} s")
        if time.monotonic() - reported > 10:
            reported = time.monotonic()
            log.info("Stepline: %d of %d suspended after %.0f s", found, count, reported - started)
        await asyncio.sleep(0.05)
