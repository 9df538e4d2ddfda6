"""A worker process for the e2e tests: ``python -m tests.e2e.programs.worker``."""

from __future__ import annotations

import asyncio
import logging
import os

from tests.e2e.programs.flows import ALL
from worker_sdk import Worker


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    capacity = int(os.environ.get("CAPACITY", "100"))
    async with Worker(os.environ["STEPLINE_ADDRESS"], workflows=ALL, capacity=capacity) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
