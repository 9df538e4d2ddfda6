"""A Python workflow whose children run in TypeScript and in Go (served by
sdks/typescript/test/programs/worker.ts and sdks/go/internal/testprograms/worker):
``python -m tests.e2e.programs.polyglot``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from worker_sdk import ChildHandle, Worker, start_child, step, workflow


@step()
async def combine(doubled: int, greeting: str) -> str:
    return f"{greeting} x{doubled}"


@workflow(name="e2e.polyglot_parent")
async def polyglot_parent(x: int, name: str) -> dict[str, Any]:
    # Both started before either is awaited: they run at once, in their own languages.
    in_typescript: ChildHandle[dict[str, Any]] = await start_child("ts.child", x)
    in_go: ChildHandle[dict[str, Any]] = await start_child("go.greet", {"name": name})
    ts = await in_typescript.result()
    go = await in_go.result()
    return {
        "ts": ts,
        "go": go,
        "both": await combine(ts["doubled"], go["greeting"]),
        "children": [in_typescript.workflow_id, in_go.workflow_id],
    }


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    async with Worker(os.environ["STEPLINE_ADDRESS"], workflows=[polyglot_parent]) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
