"""The README's first command keeps working: ./dev demo runs a workflow to completion."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from tests.e2e.processes import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_demo_starts_a_coordinator_and_a_worker_and_completes_a_workflow(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "examples/demo.py", "--exit", "--port", str(free_port()), "--data-dir", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 90)
    text = output.decode()
    assert proc.returncode == 0, text
    assert "status: SUCCEEDED" in text
    assert "result: {'reserved': [True, True], 'receipt': 'receipt-" in text
