"""What a benchmarked system offers the workloads, and what its recoveries report."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.flows import Mark, MarksTail, read_marks
from bench.resources import PidSource


@dataclass(frozen=True)
class Recovery:
    """One workflow killed with its process and resumed elsewhere (times from ``time.time()``)."""

    killed_at: float
    started_at: float  # the workflow code began again in the new process
    replayed_at: float  # ... and had gone through its recorded steps
    resumed_at: float  # ... and the first step that was not recorded began
    ready_at: float | None = None  # a restarted process had launched (DBOS only)

    @property
    def kill_to_resume(self) -> float:
        return self.resumed_at - self.killed_at

    @property
    def kill_to_start(self) -> float:
        return self.started_at - self.killed_at

    @property
    def replay(self) -> float:
        return self.resumed_at - self.started_at


class System(Protocol):
    """One durable-execution system, set up and ready, driven by the workloads."""

    label: str
    # Whether a waiting workflow can leave memory, to be brought back when its wait ends.
    suspends: bool

    async def sequential(self, runs: int, steps: int) -> list[float]:
        """Runs ``runs`` workflows of ``steps`` sequential steps, one after another;
        returns every step call's duration (seconds) as measured inside the workflows."""

    async def children(self, runs: int, n: int) -> list[float]:
        """Runs ``runs`` workflows that each run ``n`` child workflows (one step each) one
        after another; returns every child call's duration (seconds), measured inside."""

    async def cancels(self, count: int, marks_dir: Path) -> list[float]:
        """Puts ``count`` workflows in recv (in memory), then cancels them one after another;
        returns each cancel call's seconds: from the call until it answered, the
        cancellation durable."""

    async def throughput(self, workflows: int, steps: int) -> float:
        """Starts ``workflows`` workflows of ``steps`` steps at once; returns the seconds
        from the first start to the last completion."""

    async def fanout(self, steps: int) -> float:
        """One workflow gathering ``steps`` steps; returns the gather's seconds."""

    async def recover(self, steps: int, runs: int, marks_dir: Path) -> tuple[list[Recovery], list[str]]:
        """``runs`` times: a workflow records ``steps`` steps and blocks in the next one;
        the process running it is SIGKILLed, and the system resumes it. Returns the
        recoveries, and what went wrong in the runs that did not resume."""

    async def fill(self, steps: int) -> None:
        """Adds ``steps`` recorded steps to the system's tables, in SQL."""

    async def in_flight_rss(self, count: int) -> dict[str, int]:
        """Puts ``count`` workflows in flight (each sleeping in a step); returns RSS bytes by role."""

    async def wakeups(self, messages: int, fresh: int, marks_dir: Path) -> dict[str, list[float]]:
        """send → recv latencies in seconds, from just before the send call to the moment
        recv returns in the workflow, each message sent once the previous was received.
        "in memory": ``messages`` messages to one workflow waiting in recv in memory;
        "suspended" (only if the system ``suspends``): one message to each of ``fresh``
        workflows once each is suspended in recv."""

    async def sleepers(
        self,
        count: int,
        seconds: float,
        marks: Path,
        asleep: Callable[[], Awaitable[None]],
        woken: Callable[[], Awaitable[None]],
    ) -> None:
        """Starts ``count`` workflows that each sleep ``seconds`` durably (``flows.nap``,
        marking in ``marks``), in memory; awaits ``asleep()`` once all are started, then
        ``woken()`` (all have woken), and returns when all have finished. Their results
        are awaited only after ``woken()``, so that awaiting them adds nothing to the
        wakes measured."""

    async def suspended_rss(self, count: int) -> dict[str, int]:
        """Puts ``count`` workflows to wait in recv for a message that never comes; once all
        wait (suspended, if the system ``suspends``) returns RSS bytes by role, and by
        "<role> before" as they were before the first was started."""

    def cpu_groups(self) -> dict[str, PidSource]:
        """The system's own processes by role, for CPU accounting (PostgreSQL is separate)."""

    async def twin(self) -> System:
        """Another instance set up the same way on an empty database (for workload f)."""

    async def close(self) -> None:
        """Stops the system's processes."""


async def wait_for_mark(
    path: Path, event: str, *, pid: int | None = None, not_pid: int | None = None, timeout: float = 60.0
) -> Mark:
    """The first mark ``event`` in ``path`` written by ``pid`` (or by anyone but ``not_pid``)."""
    deadline = time.monotonic() + timeout
    while True:
        for m in read_marks(path):
            if m.event == event and (pid is None or m.pid == pid) and (not_pid is None or m.pid != not_pid):
                return m
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {event!r} mark in {path} after {timeout} s")
        await asyncio.sleep(0.002)


def recovery_from_marks(
    path: Path, killed_at: float, survivor: int, ready_at: float | None = None
) -> Recovery:
    """The Recovery the survivor's marks in ``path`` describe."""
    found: dict[str, float] = {}
    for m in read_marks(path):
        if m.pid == survivor:
            found.setdefault(m.event, m.at)
    return Recovery(killed_at, found["start"], found["replayed"], found["park"], ready_at)


class MarksWatch:
    """The marks of a growing file by kind (an event's name up to its first "-"), read as
    they come."""

    def __init__(self, path: Path) -> None:
        self._tail = MarksTail(path)
        self.marks: dict[str, list[Mark]] = defaultdict(list)

    def poll(self) -> None:
        for m in self._tail.read():
            self.marks[m.event.partition("-")[0]].append(m)

    async def wait(self, kind: str, count: int, *, timeout: float, interval: float = 0.002) -> Mark:
        """The ``count``-th mark of ``kind``, once it is written."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if len(self.marks[kind]) >= count:
                return self.marks[kind][count - 1]
            if time.monotonic() > deadline:
                found = len(self.marks[kind])
                raise TimeoutError(
                    f"{found} {kind!r} marks in {self._tail.path}, not {count}, after {timeout} s"
                )
            await asyncio.sleep(interval)
