"""The first command of the README (``./dev demo``): a coordinator on embedded PostgreSQL,
the checkout example worker, and one workflow run through the Client.

The coordinator and the worker keep running until Ctrl-C (``--exit`` stops them once the
workflow has been shown), so you can start more workflows from another terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

from worker_sdk import Client

ROOT = Path(__file__).resolve().parents[1]


async def spawn(*args: str, ready: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        if not line:
            raise SystemExit(f"{' '.join(args)} exited early (code {await proc.wait()})")
        print(line, end="", flush=True)
        if ready in line:
            return proc


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", default=os.environ.get("STEPLINE_PORT", "7420"))
    parser.add_argument("--data-dir", default=os.environ.get("STEPLINE_DATA_DIR", ".stepline"))
    parser.add_argument("--exit", action="store_true", help="stop once the workflow has completed")
    args = parser.parse_args()
    address = f"127.0.0.1:{args.port}"
    env = {"STEPLINE_ADDRESS": address, "PYTHONPATH": str(ROOT)}
    coordinator = await spawn(
        "-m", "coordinator", "serve", "--port", args.port, "--data-dir", args.data_dir,
        ready="listening on", env=env,
    )  # fmt: skip
    worker = await spawn("examples/checkout.py", "serve", ready="worker ready", env=env)
    try:
        async with Client(address) as client:
            order = uuid.uuid4().hex[:8]
            handle = await client.start_workflow(
                "checkout", order, ["apple", "pear"], workflow_id=f"order-{order}"
            )
            print(f"started workflow {handle.workflow_id}")
            print(f"result: {await handle.result(timeout=60)}")
            print(f"status: {(await handle.status()).value}")
            for s in await handle.steps():
                line = f"  step {s.step_id:<3} {s.step_name:<8} {s.status.value:<9} attempts={s.attempts}"
                print(f"{line} -> {s.output!r}")
        if not args.exit:
            print(f"\ncoordinator on {address} with the checkout worker; Ctrl-C to stop", flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            await stop.wait()
    finally:
        for proc in (worker, coordinator):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
