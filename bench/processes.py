"""Child processes of the harness: started as ``python -m module`` (or any command, e.g. a
worker in another language), ready on a stdout line.

Every child's stderr goes to a log file in the run's output directory; its stdout stays a
pipe so that the harness can read the ready line (and, for the DBOS app, its answers).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Child:
    """A started child process."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log: Path) -> None:
        self.proc = proc
        self.name = name
        self.log = log

    def __repr__(self) -> str:
        return f"<Child {self.name} pid={self.pid}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def readline(self, timeout: float) -> str:
        """The next stdout line ("" once stdout is closed)."""
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode()

    async def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()


async def spawn(
    module: str,
    args: list[str],
    *,
    name: str,
    log: Path,
    ready: str,
    env: dict[str, str] | None = None,
    stdin: bool = False,
    timeout: float = 60.0,
) -> tuple[Child, str]:
    """Starts ``python -m module args...``; returns it and its first stdout line containing ``ready``."""
    return await spawn_command(
        [sys.executable, "-m", module, *args],
        name=name,
        log=log,
        ready=ready,
        env=env,
        stdin=stdin,
        timeout=timeout,
    )


async def spawn_command(
    argv: list[str],
    *,
    name: str,
    log: Path,
    ready: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    stdin: bool = False,
    timeout: float = 60.0,
) -> tuple[Child, str]:
    """Starts ``argv`` (any program) in ``cwd``; returns it and its first stdout line
    containing ``ready``."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GRPC_VERBOSITY": "ERROR",
        "GRPC_ENABLE_FORK_SUPPORT": "false",
        **(env or {}),
    }
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=full_env,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            # A line longer than asyncio's 64 KiB default (a library's print) is read, not fatal.
            limit=1 << 24,
        )
    child = Child(proc, name, log)
    try:
        while True:
            line = await child.readline(timeout)
            if not line:
                raise RuntimeError(f"{name} exited before it was ready; its log is {log}")
            if ready in line:
                return child, line.strip()
    except BaseException:
        await child.kill()
        raise
