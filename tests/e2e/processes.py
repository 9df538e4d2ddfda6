"""Starting the coordinator and workers as real processes, and waiting on conditions."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 30.0, what: str = "condition"
) -> T:
    """Polls ``check`` until it returns something truthy, or fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def log_contains(path: Path, text: str) -> bool:
    """Whether a process's log holds ``text`` (for ``eventually``)."""
    return await asyncio.to_thread(lambda: path.exists() and text in path.read_text(errors="replace"))


@dataclass(frozen=True)
class Effect:
    """One step body that ran (a line written by tests/e2e/programs/flows.py)."""

    workflow_id: str
    step_id: str
    worker: str
    attempt: int
    started: float
    what: str


def read_effects(path: Path) -> list[Effect]:
    if not path.exists():
        return []
    effects = []
    for line in path.read_text().splitlines():
        w, s, worker, attempt, started, what = line.split("\t")
        effects.append(Effect(w, s, worker, int(attempt), float(started), what))
    return effects


class Process:
    """A child process with its output in a log file."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, ready_line: str = "") -> None:
        self.proc = proc
        self.log = log
        self.ready_line = ready_line
        self.name = ""

    @property
    def worker_id(self) -> str:
        """For a worker: the ID it printed when it was ready."""
        return self.ready_line.rsplit(" ", 1)[-1]

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
        return self.proc.returncode or 0


async def spawn_program(
    argv: list[str], log: Path, env: dict[str, str], ready: str, *, cwd: Path = ROOT
) -> tuple[Process, str]:
    """Starts any program (stderr to ``log``) and waits for a stdout line containing
    ``ready``; returns it and that line."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            if not line:
                raise AssertionError(f"{argv} exited before it was ready; its output is in {log}")
            if ready in line:
                return Process(proc, log, line.strip()), line.strip()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise


async def spawn(args: list[str], log: Path, env: dict[str, str], ready: str) -> tuple[Process, str]:
    """Starts ``python args...`` and waits for a stdout line containing ``ready``; returns it."""
    python_env = {"PYTHONPATH": str(ROOT), "GRPC_VERBOSITY": "ERROR", **env}
    return await spawn_program([sys.executable, *args], log, python_env, ready)


async def start_coordinator(database_url: str, log: Path, **settings: str) -> tuple[Process, str]:
    """A coordinator on a free port; returns it and its address."""
    args = ["-m", "coordinator", "serve", "--port", "0", "--database-url", database_url]
    for key, value in settings.items():
        args += ["--" + key.replace("_", "-"), value]
    process, line = await spawn(args, log, {}, "listening on")
    return process, line.rsplit(" ", 1)[-1]


async def start_worker(address: str, log: Path, **env: str) -> Process:
    """A worker process serving tests/e2e/programs/flows.py."""
    process, _ = await spawn(
        ["-m", "tests.e2e.programs.worker"], log, {"STEPLINE_ADDRESS": address, **env}, "worker ready"
    )
    return process
