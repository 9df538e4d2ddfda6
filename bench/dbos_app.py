"""A DBOS Transact application process running the benchmark workflows in-process.

    python -m bench.dbos_app --database-url URL --executor-id ID [--max-threads N]

Launches DBOS (which recovers this executor's pending workflows), prints ``dbos ready``,
then answers one JSON command per stdin line with one ``BENCH {json}`` stdout line.
DBOS has no separate server: workflows run in the process that starts or recovers them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench import flows

# Step bodies entered by bench.idle workflows, so that "in flight" can be waited for.
_snoozing = 0
_snoozing_target = 0
_all_snoozing = asyncio.Event()


@DBOS.step(name="noop")
async def noop(i: int) -> int:
    return await flows.noop_body(i)


@DBOS.step(name="park")
async def park(marks: str) -> str:
    return await flows.park_body(marks)


@DBOS.step(name="snooze")
async def snooze(seconds: float) -> float:
    global _snoozing
    _snoozing += 1
    if _snoozing >= _snoozing_target:
        _all_snoozing.set()
    return await flows.snooze_body(seconds)


STEPS = flows.Steps(noop=noop, park=park, snooze=snooze)

# DBOS.recv needs a timeout: one far longer than any run stands for "until a message comes".
FOREVER = 7 * 24 * 3600.0


async def _recv() -> Any:
    return await DBOS.recv_async(timeout_seconds=FOREVER)


WAITS = flows.Waits(recv=_recv, sleep=DBOS.sleep_async)


@DBOS.workflow(name="bench.sequential")
async def sequential(n: int) -> list[float]:
    return await flows.sequential(STEPS, n)


@DBOS.workflow(name="bench.child")
async def child(i: int) -> int:
    return await flows.child(STEPS, i)


async def _call_child(i: int) -> int:
    # Started from a workflow, a DBOS workflow is its child; get_result is recorded.
    handle = await DBOS.start_workflow_async(child, i)
    result: int = await handle.get_result()
    return result


CHILDREN = flows.Children(call=_call_child)


@DBOS.workflow(name="bench.parent")
async def parent(n: int) -> list[float]:
    return await flows.parent(CHILDREN, n)


@DBOS.workflow(name="bench.chain")
async def chain(n: int) -> int:
    return await flows.chain(STEPS, n)


@DBOS.workflow(name="bench.fanout")
async def fanout(n: int) -> float:
    return await flows.fanout(STEPS, n)


@DBOS.workflow(name="bench.resumable")
async def resumable(n: int, marks: str) -> int:
    return await flows.resumable(STEPS, n, marks)


@DBOS.workflow(name="bench.idle")
async def idle(seconds: float) -> float:
    return await flows.idle(STEPS, seconds)


@DBOS.workflow(name="bench.receive")
async def receive(n: int, marks: str) -> int:
    return await flows.receive(WAITS, n, marks)


@DBOS.workflow(name="bench.nap")
async def nap(i: int, seconds: float, marks: str) -> int:
    return await flows.nap(WAITS, i, seconds, marks)


# Started in the background and kept referenced until they end.
_background: set[asyncio.Task[Any]] = set()
# The handles of the last "naps" command's workflows, for "naps_done".
_naps: list[Any] = []
# (k): the workflows the last _block started, for _cancel_blocked.
_blocked: list[Any] = []


async def _run_sequential(runs: int, steps: int) -> dict[str, Any]:
    durations: list[float] = []
    for _ in range(runs):
        handle = await DBOS.start_workflow_async(sequential, steps)
        result: list[float] = await handle.get_result()
        durations += result
    return {"durations": durations}


async def _run_children(runs: int, n: int) -> dict[str, Any]:
    durations: list[float] = []
    for _ in range(runs):
        handle = await DBOS.start_workflow_async(parent, n)
        result: list[float] = await handle.get_result()
        durations += result
    return {"durations": durations}


async def _run_throughput(workflows: int, steps: int) -> dict[str, Any]:
    started = time.perf_counter()
    handles = await asyncio.gather(*(DBOS.start_workflow_async(chain, steps) for _ in range(workflows)))
    await asyncio.gather(*(h.get_result() for h in handles))
    return {"seconds": time.perf_counter() - started}


async def _run_fanout(steps: int) -> dict[str, Any]:
    handle = await DBOS.start_workflow_async(fanout, steps)
    seconds: float = await handle.get_result()
    return {"seconds": seconds}


async def _start_resumable(n: int, marks: str, workflow_id: str) -> dict[str, Any]:
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(resumable, n, marks)
    task = asyncio.create_task(handle.get_result())
    _background.add(task)
    task.add_done_callback(_background.discard)
    return {"workflow_id": workflow_id}


async def _start_many(count: int, workflow: Any, *args: Any, numbered: bool = False) -> list[Any]:
    """``count`` workflows started 500 at a time; with ``numbered`` each gets its index first."""
    handles: list[Any] = []
    for first in range(0, count, 500):
        batch = range(first, min(first + 500, count))
        handles += await asyncio.gather(
            *(DBOS.start_workflow_async(workflow, *((i, *args) if numbered else args)) for i in batch)
        )
    return handles


async def _start_idle(count: int, seconds: float, timeout: float) -> dict[str, Any]:
    global _snoozing_target
    before = _snoozing
    _snoozing_target = before + count
    _all_snoozing.clear()
    handles = await _start_many(count, idle, seconds)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_all_snoozing.wait(), timeout)
    return {"started": len(handles), "in_flight": _snoozing - before}


async def _start_receive(n: int, marks: str, workflow_id: str) -> dict[str, Any]:
    with SetWorkflowID(workflow_id):
        await DBOS.start_workflow_async(receive, n, marks)
    return {}


async def _send(workflow_id: str, message: Any) -> dict[str, Any]:
    sent_at = time.time()  # just before the send call, as the Stepline driver does
    await DBOS.send_async(workflow_id, message)
    return {"sent_at": sent_at}


async def _start_naps(count: int, seconds: float, marks: str) -> dict[str, Any]:
    _naps[:] = await _start_many(count, nap, seconds, marks, numbered=True)
    return {}


async def _naps_done() -> dict[str, Any]:
    await asyncio.gather(*(h.get_result() for h in _naps))
    _naps.clear()
    return {}


async def _block(count: int) -> dict[str, Any]:
    """``count`` workflows waiting in recv for a message that never comes."""
    _blocked[:] = await _start_many(count, receive, 1, "")
    return {}


async def _cancel_blocked() -> dict[str, Any]:
    """Cancels the workflows the last ``_block`` started (not those of an earlier one,
    (i)'s, which stay blocked), one after another: each call's seconds."""
    durations = []
    for handle in _blocked:
        started = time.perf_counter()
        await DBOS.cancel_workflow_async(handle.get_workflow_id())
        durations.append(time.perf_counter() - started)
    _blocked.clear()
    return {"durations": durations}


async def _answer(command: dict[str, Any]) -> dict[str, Any]:
    kind = command["cmd"]
    if kind == "sequential":
        return await _run_sequential(command["runs"], command["steps"])
    if kind == "children":
        return await _run_children(command["runs"], command["n"])
    if kind == "throughput":
        return await _run_throughput(command["workflows"], command["steps"])
    if kind == "fanout":
        return await _run_fanout(command["steps"])
    if kind == "start_resumable":
        return await _start_resumable(command["n"], command["marks"], command["workflow_id"])
    if kind == "idle":
        return await _start_idle(command["count"], command["seconds"], command["timeout"])
    if kind == "start_receive":
        return await _start_receive(command["n"], command["marks"], command["workflow_id"])
    if kind == "send":
        return await _send(command["workflow_id"], command["message"])
    if kind == "naps":
        return await _start_naps(command["count"], command["seconds"], command["marks"])
    if kind == "naps_done":
        return await _naps_done()
    if kind == "block":
        return await _block(command["count"])
    if kind == "cancel_blocked":
        return await _cancel_blocked()
    if kind == "ping":
        return {}
    raise ValueError(f"unknown command {kind!r}")


async def serve(database_url: str, executor_id: str, max_threads: int | None) -> None:
    config: DBOSConfig = {
        "name": "stepline-bench",
        "system_database_url": database_url,
        "executor_id": executor_id,
        # Recovery re-enqueues a workflow on DBOS's internal queue, where any process of the
        # same application version may dequeue it: one version per executor keeps the
        # recovery workloads' workflows out of the main process (and the reverse).
        "application_version": executor_id,
        "log_level": "WARNING",
    }
    if max_threads is not None:
        # DBOS runs its database calls in a thread pool, unbounded by default.
        config["max_executor_threads"] = max_threads
    DBOS(config=config)
    DBOS.launch()
    print("dbos ready", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            try:
                answer = {"ok": True, **await _answer(json.loads(line))}
            except Exception as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print("BENCH " + json.dumps(answer), flush=True)
    finally:
        DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dbos_app")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--max-threads", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.database_url, args.executor_id, args.max_threads))


if __name__ == "__main__":
    main()
