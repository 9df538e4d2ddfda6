"""Building the TypeScript SDK and running its programs (a worker, a client) as processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.processes import ROOT, Process, spawn_program

TS = ROOT / "sdks" / "typescript"
WORKER = TS / "dist" / "test" / "programs" / "worker.js"
CLIENT = TS / "dist" / "test" / "programs" / "client.js"


def build() -> None:
    """``npm ci`` when node_modules is missing or older than package-lock.json, then
    ``npm run build``: so that a fresh checkout tests the TypeScript SDK too."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the TypeScript SDK tests need Node.js 20+ and npm on PATH")
    stamp = TS / "node_modules" / ".package-lock.json"
    lock = TS / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        _run([npm, "ci", "--no-audit", "--no-fund"])
    _run([npm, "run", "build"])


def _run(args: list[str]) -> None:
    done = subprocess.run(args, cwd=TS, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {TS}:\n{done.stdout}\n{done.stderr}")


async def start_ts_worker(address: str, log: Path, **env: str) -> Process:
    """A TypeScript worker process (test/programs/worker.ts); ready when it printed its ID."""
    argv = ["node", str(WORKER)]
    env = {"STEPLINE_ADDRESS": address, **env}
    process, _ = await spawn_program(argv, log, env, "worker ready", cwd=TS)
    return process


async def run_ts_client(address: str, command: str, *args: str, **env: str) -> Any:
    """Runs test/programs/client.ts once; returns the JSON it printed."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        command,
        *args,
        cwd=TS,
        env={**os.environ, "STEPLINE_ADDRESS": address, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0:
        raise AssertionError(f"client.js {command} exited {proc.returncode}:\n{out.decode()}\n{err.decode()}")
    return json.loads(out.decode().strip().splitlines()[-1])
