"""A Stepline worker process serving the benchmark workflows.

    STEPLINE_ADDRESS=host:port BENCH_CAPACITY=20000 python -m bench.stepline_worker

Prints ``worker ready <id>`` once registered, then serves until killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from bench import flows
from worker_sdk import Worker, Workflow, step, workflow


@step(name="noop")
async def noop(i: int) -> int:
    return await flows.noop_body(i)


@step(name="park")
async def park(marks: str) -> str:
    return await flows.park_body(marks)


@step(name="snooze")
async def snooze(seconds: float) -> float:
    return await flows.snooze_body(seconds)


STEPS = flows.Steps(noop=noop, park=park, snooze=snooze)


@workflow(name="bench.sequential")
async def sequential(n: int) -> list[float]:
    return await flows.sequential(STEPS, n)


@workflow(name="bench.chain")
async def chain(n: int) -> int:
    return await flows.chain(STEPS, n)


@workflow(name="bench.fanout")
async def fanout(n: int) -> float:
    return await flows.fanout(STEPS, n)


@workflow(name="bench.resumable")
async def resumable(n: int, marks: str) -> int:
    return await flows.resumable(STEPS, n, marks)


@workflow(name="bench.idle")
async def idle(seconds: float) -> float:
    return await flows.idle(STEPS, seconds)


WORKFLOWS: list[Workflow[Any, Any]] = [sequential, chain, fanout, resumable, idle]


async def main() -> None:
    capacity = int(os.environ.get("BENCH_CAPACITY", "20000"))
    async with Worker(os.environ["STEPLINE_ADDRESS"], workflows=WORKFLOWS, capacity=capacity) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        # The coordinator runs on uvloop when it is installed; so does this worker.
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
