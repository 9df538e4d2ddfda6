"""A worker process for the e2e tests: ``python -m tests.e2e.programs.worker``."""

from __future__ import annotations

import asyncio
import logging
import os

from tests.e2e.programs.children import CHILDREN, PARENTS
from tests.e2e.programs.flows import ALL
from tests.e2e.programs.ordering import ORDERING
from tests.e2e.programs.versions import VERSIONS
from tests.e2e.programs.waiting import WAITING
from tests.spans import trace_to_file_if_asked
from worker_sdk import Worker


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    trace_to_file_if_asked()
    capacity = int(os.environ.get("CAPACITY", "100"))
    # Seconds a waiting workflow stays in memory; "never" keeps it there.
    suspend = os.environ.get("SUSPEND_AFTER", "5")
    suspend_after = None if suspend == "never" else float(suspend)
    # What it serves: everything, or only the parents or the children of children.py.
    serves = {
        "all": [*ALL, *WAITING, *PARENTS, *CHILDREN, *ORDERING],
        "parents": PARENTS,
        "children": CHILDREN,
        "versions": VERSIONS,
    }
    async with Worker(
        os.environ["STEPLINE_ADDRESS"],
        workflows=serves[os.environ.get("SERVES", "all")],
        capacity=capacity,
        suspend_after=suspend_after,
    ) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
