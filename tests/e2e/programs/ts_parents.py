"""A Python parent of a child served by the TypeScript worker (sdks/typescript/test/programs/
worker.ts serves "ts.child"): ``python -m tests.e2e.programs.ts_parents``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from worker_sdk import ChildHandle, Worker, start_child, workflow


@workflow(name="e2e.ts_parent")
async def ts_parent(x: int) -> list[Any]:
    handle: ChildHandle[dict[str, Any]] = await start_child("ts.child", x)
    result = await handle.result()
    return [handle.workflow_id, result]


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    async with Worker(os.environ["STEPLINE_ADDRESS"], workflows=[ts_parent]) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
