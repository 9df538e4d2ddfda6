"""The durable-wait workflows (g), (h), (i) for Stepline, served by a worker of their own.

``bench.stepline_worker`` serves these instead of the other workflows when started with
``BENCH_WAITS=1``; ``BENCH_SUSPEND_AFTER`` is then its ``suspend_after`` (0: a waiting
workflow is suspended at once; large: it stays in memory). A separate module because it
needs the SDK's durable waits, which the other workloads' worker does not.
"""

from __future__ import annotations

from typing import Any

from bench import flows
from worker_sdk import Workflow, recv, sleep, workflow


async def _recv() -> Any:
    return await recv()  # no topic, no timeout: until a message comes


WAITS = flows.Waits(recv=_recv, sleep=sleep)


@workflow(name="bench.receive")
async def receive(n: int, marks: str) -> int:
    return await flows.receive(WAITS, n, marks)


@workflow(name="bench.nap")
async def nap(i: int, seconds: float, marks: str) -> int:
    return await flows.nap(WAITS, i, seconds, marks)


WORKFLOWS: list[Workflow[Any, Any]] = [receive, nap]
