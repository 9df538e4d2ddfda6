"""The Python SDK's conformance interpreter (README.md): ``python -m conformance.python_worker``.

``CONFORMANCE_BROKEN=reorder`` makes it a deliberately broken worker, which runs the
program's first two commands in the wrong order: the suite must fail it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from conformance import Planned
from worker_sdk import RetryPolicy, Worker, current_step, recv, set_event, sleep, step, workflow, workflow_id

FEATURES = ("steps", "scopes", "waits", "nondeterminism")


def _renamed(name: str) -> str:
    old, _, new = os.environ.get("CONFORMANCE_RENAME", "").partition("=")
    return new if old and name == old else name


def _effect(name: str) -> int:
    """Appends this step body's effect line; returns how many lines of it the file holds."""
    here = current_step()
    assert here is not None
    path = os.environ.get("CONFORMANCE_EFFECTS", os.devnull)
    line = f"{here.workflow_id}\t{here.step_id}\t{name}\t{os.environ.get('CONFORMANCE_WORKER', '')}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    if path == os.devnull:
        return 1
    prefix = f"{here.workflow_id}\t{here.step_id}\t{name}\t"
    return sum(1 for seen in Path(path).read_text().splitlines() if seen.startswith(prefix))


async def _step(name: str, output: Any) -> Any:
    async def body() -> Any:
        _effect(name)
        return output

    return await step(name=name)(body)()


async def _fail(name: str, times: int, retries: int) -> str:
    async def body() -> str:
        if _effect(name) <= times:
            here = current_step()
            raise Planned(f"attempt {here.attempt if here else '?'}")
        return "ok"

    policy = RetryPolicy(max_attempts=retries + 1, initial_interval=0.01, max_interval=0.01)
    return await step(name=name, retry=policy)(body)()


async def _block(name: str) -> None:
    async def body() -> None:
        _effect(name)
        release = Path(os.environ["CONFORMANCE_DIR"]) / f"release-{workflow_id()}-{name}"
        # The spec's release signal is a file, which any language can wait for alike.
        while not release.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await step(name=name)(body)()


async def _run(commands: list[dict[str, Any]]) -> list[Any]:
    results = []
    for command in commands:
        (kind, arg), *_ = command.items()
        results.append(await _one(kind, arg))
    return results


async def _one(kind: str, arg: Any) -> Any:
    if kind == "step":
        return await _step(_renamed(arg["name"]), arg.get("output"))
    if kind == "fail":
        return await _fail(_renamed(arg["name"]), arg["times"], arg["retries"])
    if kind == "block":
        return await _block(_renamed(arg["name"]))
    if kind == "parallel":
        # Each branch a task of its own, created in order: its own step-ID scope.
        tasks = [asyncio.create_task(_run(branch)) for branch in arg]
        return list(await asyncio.gather(*tasks))
    if kind == "sleep":
        await sleep(arg["ms"] / 1000)
        return None
    if kind == "recv":
        return await recv(arg["topic"])
    if kind == "set_event":
        await set_event(arg["key"], arg["value"])
        return None
    raise ValueError(f"unknown command {kind!r}")


@workflow(name="conformance.interpreter")
async def interpreter(program: dict[str, Any]) -> list[Any]:
    commands = list(program["commands"])
    if os.environ.get("CONFORMANCE_BROKEN") == "reorder" and len(commands) > 1:
        commands[0], commands[1] = commands[1], commands[0]
    return await _run(commands)


async def main() -> None:
    suspend = os.environ.get("CONFORMANCE_SUSPEND_AFTER_MS")
    async with Worker(
        os.environ["STEPLINE_ADDRESS"],
        workflows=[interpreter],
        suspend_after=float(suspend) / 1000 if suspend else 5.0,
    ) as worker:
        print(f"conformance ready {worker.worker_id} features={','.join(FEATURES)}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
