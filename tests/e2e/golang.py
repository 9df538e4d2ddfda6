"""The Go SDK's test programs (sdks/go/internal/testprograms) as processes: built once per
session with ``go build`` (modules come from go.sum), started like the Python workers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.processes import ROOT, Process, spawn_program

GO_MODULE = ROOT / "sdks" / "go"


def build(out: Path) -> Path:
    """Builds the worker and client programs into ``out``; returns it."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the Go SDK's tests need the go command (Go 1.26) on PATH")
    out.mkdir(parents=True, exist_ok=True)
    # STEPLINE_GO_RACE=1 builds with the race detector (reports go to the workers' logs).
    race = ["-race"] if os.environ.get("STEPLINE_GO_RACE") == "1" else []
    result = subprocess.run(
        [go, "build", *race, "-o", f"{out}{os.sep}", "./internal/testprograms/..."],
        cwd=GO_MODULE,
        capture_output=True,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=readonly"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed:\n{result.stdout}{result.stderr}")
    return out


async def start_go_worker(binaries: Path, address: str, log: Path, **env: str) -> Process:
    """A Go worker process; returns once it has registered ("worker ready <id>")."""
    argv = [str(binaries / "worker")]
    process, _ = await spawn_program(argv, log, {"STEPLINE_ADDRESS": address, **env}, "worker ready")
    return process


async def run_go_client(
    binaries: Path, address: str, workflow: str, args: list[Any], workflow_id: str
) -> dict[str, Any]:
    """Starts a workflow with the Go client and waits for its outcome (a JSON line)."""
    proc = await asyncio.create_subprocess_exec(
        str(binaries / "client"),
        address,
        workflow,
        json.dumps(args),
        workflow_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"the Go client failed: {err.decode()}"
    result: dict[str, Any] = json.loads(out.decode())
    return result
