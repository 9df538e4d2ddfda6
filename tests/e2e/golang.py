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

from tests.e2e.processes import ROOT, Process

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
    full_env = {**os.environ, "STEPLINE_ADDRESS": address, **env}
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            str(binaries / "worker"), env=full_env, stdout=asyncio.subprocess.PIPE, stderr=err
        )
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if not line:
                raise AssertionError(f"the Go worker exited before it was ready; its output is in {log}")
            if "worker ready" in line:
                return Process(proc, log, line.strip())
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise


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
