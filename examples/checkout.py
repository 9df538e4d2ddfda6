"""The checkout example: concurrent steps with asyncio.gather, then a charge.

With a coordinator running (``stepline serve``):

    python examples/checkout.py          # run it in this process, then start one by name
    python examples/checkout.py serve    # be a worker for it until Ctrl-C
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from worker_sdk import Client, Worker, step, workflow


@step()
async def reserve(sku: str) -> bool:
    await asyncio.sleep(0.01)  # an inventory service call
    return True


@step()
async def charge(order_id: str, cents: int) -> str:
    await asyncio.sleep(0.01)  # a payment provider call
    return f"receipt-{order_id}-{cents}"


@workflow()
async def checkout(order_id: str, skus: list[str]) -> dict[str, object]:
    ok = await asyncio.gather(*(reserve(s) for s in skus))
    receipt = await charge(order_id, 1250)
    return {"reserved": list(ok), "receipt": receipt}


async def main(address: str) -> None:
    async with Worker(address, workflows=[checkout]):
        print("in-process run:", await checkout("o-1", ["a", "b"]))
        client = Client(address)
        handle = await client.start_workflow("checkout", "o-2", ["c"], workflow_id="order-o-2")
        print("started by name:", await handle.result(), (await handle.status()).value)
        for s in await handle.steps():
            print(f"  step {s.step_id:>3} {s.step_name:<8} {s.status.value:<9} -> {s.output}")
        await client.close()


async def serve(address: str) -> None:
    async with Worker(address, workflows=[checkout]) as worker:
        print(f"worker ready {worker.worker_id}", flush=True)
        await worker.serve_forever()


if __name__ == "__main__":
    address = os.environ.get("STEPLINE_ADDRESS", "127.0.0.1:7420")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(address) if sys.argv[1:] == ["serve"] else main(address))
