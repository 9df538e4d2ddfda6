"""What this machine takes for the parts of a send → recv, after the same idle as (g).

A send → recv crosses two gRPC hops (the client's call to the coordinator, the
coordinator's push to the worker) and one committed write. After tens of milliseconds of
idle, each costs far more than back to back (idle CPUs are slow to wake, on a VM most of
all), so (g) in memory, whose sends each come 50 ms after the last recv, is read beside
these: a bare committed one-row INSERT on the same PostgreSQL, and a bare gRPC round trip
to the coordinator (its health check, which touches no database), each after that idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def _timed(call: Callable[[], Awaitable[object]], samples: int, idle: float) -> list[float]:
    """Milliseconds of ``samples`` awaits of ``call()``, each after ``idle`` seconds."""
    out = []
    for _ in range(samples):
        await asyncio.sleep(idle)
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def insert_after_idle(url: str, samples: int, idle: float) -> list[float]:
    conn = await asyncpg.connect(url)
    try:
        # Not a temporary table: those write no WAL, so their commits wait for no disk.
        await conn.execute("CREATE TABLE bench_floor (x integer)")
        try:
            return await _timed(lambda: conn.execute("INSERT INTO bench_floor VALUES (1)"), samples, idle)
        finally:
            await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()


async def grpc_after_idle(address: str, samples: int, idle: float) -> list[float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # its typing stubs omit the methods
        request = health_pb2.HealthCheckRequest()
        await stub.Check(request)  # connected before the first sample
        return await _timed(lambda: stub.Check(request), samples, idle)
