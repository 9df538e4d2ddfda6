"""``stepline replay-check``, the real command, against a live coordinator: 50 recorded
workflows, then a code change that breaks exactly 3 of them."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

from worker_sdk import Client, Worker, Workflow

APP = """
from worker_sdk import step, workflow


@step()
async def charge(n: int) -> int:
    return n


@step()
async def {ship}(n: int) -> str:
    return "shipped"


@step()
async def pack(n: int) -> str:
    return "packed"


@workflow(name="rc.order")
async def order(n: int) -> str:
    await charge(n)
    # Every 17th order takes the other path: 0, 17 and 34 of 0..49.
    return await ({ship}(n) if n % 17 == 0 else pack(n))
"""


def write_app(directory: Path, name: str, ship: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(APP.format(ship=ship))
    return path


def load(path: Path) -> Workflow[Any, Any]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None  # noqa: PT018
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    workflow: Workflow[Any, Any] = module.order
    return workflow


async def replay_check(address: str, *args: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coordinator",
        "replay-check",
        "--address",
        address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines() + err.decode().splitlines()


async def test_replay_check_names_exactly_the_runs_a_change_breaks(
    address: str, client: Client, tmp_path: Path
) -> None:
    v1 = write_app(tmp_path, "app_v1", "ship")
    async with Worker(address, workflows=[load(v1)], suspend_after=None):
        handles = [await client.start_workflow("rc.order", n, workflow_id=f"order-{n:02}") for n in range(50)]
        await asyncio.gather(*(h.result(timeout=30) for h in handles))

    code, lines = await replay_check(address, "--module", str(v1))
    assert code == 0, lines
    assert lines[-1] == "50 checked, 0 diverge"
    assert sum(line.startswith("compatible") for line in lines) == 50

    v2 = write_app(tmp_path, "app_v2", "express_ship")
    code, lines = await replay_check(address, "--module", str(v2), "--workflow", "rc.order")
    assert code == 1, lines
    diverging = sorted(line for line in lines if line.startswith("DIVERGES"))
    assert diverging == [
        f"DIVERGES    order-{n:02} (rc.order) at step 2: recorded 'ship', the code now calls 'express_ship'"
        for n in (0, 17, 34)
    ]
    assert lines[-1] == "50 checked, 3 diverge"

    # The newest 20 (30..49) hold one of them; --since keeps them all.
    code, lines = await replay_check(address, "--module", str(v2), "--limit", "20")
    assert (code, lines[-1]) == (1, "20 checked, 1 diverge")
    code, lines = await replay_check(address, "--module", str(v2), "--since", "1h")
    assert (code, lines[-1]) == (1, "50 checked, 3 diverge")


async def test_replay_check_refuses_a_module_without_workflows(address: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    code, lines = await replay_check(address, "--module", str(empty))
    assert code == 2
    assert "defines no @workflow functions" in lines[-1]
