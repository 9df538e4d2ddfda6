"""A real coordinator (in this process, real gRPC on a free loopback port) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from coordinator import server
from coordinator.config import Settings
from worker_sdk import Client


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(host="127.0.0.1", port=0, database_url=database_url, pool_size=4, lease_ms=3000)


@pytest.fixture
async def coordinator(settings: Settings) -> AsyncIterator[server.Running]:
    running = await server.start(settings)
    yield running
    await running.stop(grace=0)


@pytest.fixture
def address(coordinator: server.Running) -> str:
    return f"127.0.0.1:{coordinator.port}"


@pytest.fixture
async def channel(address: str) -> AsyncIterator[grpc.aio.Channel]:
    """A plain gRPC channel to the coordinator, for tests that use the generated stubs."""
    async with grpc.aio.insecure_channel(address) as ch:
        yield ch


@pytest.fixture
async def client(address: str) -> AsyncIterator[Client]:
    c = Client(address)
    yield c
    await c.close()
