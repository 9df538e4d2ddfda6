"""A Stepline worker process serving the benchmark workflows.

    STEPLINE_ADDRESS=host:port BENCH_CAPACITY=20000 python -m bench.stepline_worker
    ... BENCH_WAITS=1 BENCH_SUSPEND_AFTER=0 python -m bench.stepline_worker

Prints ``worker ready <id>`` once registered, then serves until killed. With
``BENCH_WAITS=1`` it serves the durable-wait workflows of ``bench.stepline_waits`` instead,
with ``suspend_after`` set to ``BENCH_SUSPEND_AFTER`` seconds.
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


@workflow(name="bench.child")
async def child(i: int) -> int:
    return await flows.child(STEPS, i)


# Inside a workflow, calling a @workflow function runs it as a child and waits for it.
CHILDREN = flows.Children(call=lambda i: child(i))


@workflow(name="bench.parent")
async def parent(n: int) -> list[float]:
    return await flows.parent(CHILDREN, n)


WORKFLOWS: list[Workflow[Any, Any]] = [sequential, chain, fanout, resumable, idle, child, parent]


def _worker() -> Worker:
    address = os.environ["STEPLINE_ADDRESS"]
    capacity = int(os.environ.get("BENCH_CAPACITY", "20000"))
    if os.environ.get("BENCH_WAITS"):
        from bench import stepline_waits  # imported only here: it needs the SDK's durable waits

        suspend_after = float(os.environ["BENCH_SUSPEND_AFTER"])
        return Worker(
            address, workflows=stepline_waits.WORKFLOWS, capacity=capacity, suspend_after=suspend_after
        )
    return Worker(address, workflows=WORKFLOWS, capacity=capacity)


async def main() -> None:
    async with _worker() as worker:
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
