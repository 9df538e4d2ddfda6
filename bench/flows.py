"""The benchmark's workflow bodies, written once and run by both systems.

Each system wraps these in its own decorators (``bench/stepline_worker.py``,
``bench/stepline_waits.py``, ``bench/dbos_app.py``) and passes its step functions in as
``Steps`` and its durable waits as ``Waits``, so both run the same code around the same
no-op steps and waits. Timings measured inside a workflow use
``time.perf_counter``; events other processes must compare (a kill, a resume) are
written to a marks file with ``time.time()``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Steps:
    """One system's step functions."""

    noop: Callable[[int], Awaitable[int]]
    park: Callable[[str], Awaitable[str]]
    snooze: Callable[[float], Awaitable[float]]


@dataclass(frozen=True)
class Children:
    """One system's way to run a child workflow from a workflow and wait for its result."""

    call: Callable[[int], Awaitable[int]]


@dataclass(frozen=True)
class Waits:
    """One system's durable waits, called from workflow code."""

    recv: Callable[[], Awaitable[Any]]  # the next message (any topic-less one), however long it takes
    sleep: Callable[[float], Awaitable[None]]


# --- marks: timestamps that cross processes ----------------------------------------------


@dataclass(frozen=True)
class Mark:
    event: str
    pid: int
    at: float


def mark(path: str, event: str) -> None:
    """Appends ``event pid time.time()`` to ``path`` (one write, whole lines across processes)."""
    line = f"{event} {os.getpid()} {time.time():.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _parse(lines: list[str]) -> list[Mark]:
    marks = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            marks.append(Mark(parts[0], int(parts[1]), float(parts[2])))
    return marks


def read_marks(path: Path) -> list[Mark]:
    if not path.exists():
        return []
    return _parse(path.read_text().splitlines())


class MarksTail:
    """Reads a marks file as it grows: each ``read()`` returns the marks added since the last.

    For files that tens of thousands of workflows write to, which reading whole on every
    poll would make the harness busy while it measures.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read(self) -> list[Mark]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self._offset += end
        return _parse(data[:end].decode().splitlines())


# --- step bodies -------------------------------------------------------------------------


async def noop_body(i: int) -> int:
    return i


async def park_body(marks: str) -> str:
    """Marks its start; the first time it is called for ``marks`` it then blocks for good."""
    mark(marks, "park")
    try:  # O_EXCL: exactly one call ever creates the file, and that call blocks
        os.close(os.open(marks + ".parked", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return "resumed"
    await asyncio.sleep(3600)  # until the harness kills this process
    return "resumed"


async def snooze_body(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


# --- workflow bodies ---------------------------------------------------------------------


async def sequential(steps: Steps, n: int) -> list[float]:
    """(a) n steps one after another; returns each step call's duration in seconds."""
    durations = []
    for i in range(n):
        started = time.perf_counter()
        await steps.noop(i)
        durations.append(time.perf_counter() - started)
    return durations


async def child(steps: Steps, i: int) -> int:
    """(j) The child: one step."""
    return await steps.noop(i)


async def parent(children: Children, n: int) -> list[float]:
    """(j) n child workflows one after another; returns each child call's duration in seconds."""
    durations = []
    for i in range(n):
        started = time.perf_counter()
        await children.call(i)
        durations.append(time.perf_counter() - started)
    return durations


async def chain(steps: Steps, n: int) -> int:
    """(b) n steps one after another."""
    for i in range(n):
        await steps.noop(i)
    return n


async def fanout(steps: Steps, n: int) -> float:
    """(c) n steps gathered; returns the seconds the gather took."""
    started = time.perf_counter()
    await asyncio.gather(*(steps.noop(i) for i in range(n)))
    return time.perf_counter() - started


async def resumable(steps: Steps, n: int, marks: str) -> int:
    """(d, e) n recorded steps, then a step that blocks the first time it runs.

    Marks "start" when the workflow code begins (on a recovery: right after the
    assignment arrived), "replayed" after the n steps, and "park" when the blocking step's
    body starts: on a recovery, the first step that was not recorded.
    """
    mark(marks, "start")
    for i in range(n):
        await steps.noop(i)
    mark(marks, "replayed")
    await steps.park(marks)
    return n


async def idle(steps: Steps, seconds: float) -> float:
    """In flight for ``seconds``: one step that sleeps."""
    return await steps.snooze(seconds)


async def receive(waits: Waits, n: int, marks: str) -> int:
    """(g, i) n messages received one after another.

    Marks "wait" just before each recv and "recv" as soon as it returns (nothing when
    ``marks`` is empty). A workflow resumed from suspension runs from the top again: its
    replay marks "wait" once more, then its recorded messages are received at once.
    """
    for _ in range(n):
        if marks:
            mark(marks, "wait")
        await waits.recv()
        if marks:
            mark(marks, "recv")
    return n


async def nap(waits: Waits, i: int, seconds: float, marks: str) -> int:
    """(h) One durable sleep: marks "sleep-<i>" just before it and "woke-<i>" as it returns."""
    mark(marks, f"sleep-{i}")
    await waits.sleep(seconds)
    mark(marks, f"woke-{i}")
    return i
