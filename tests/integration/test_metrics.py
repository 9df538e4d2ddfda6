"""/metrics scraped during a small run: the counters, gauges and histograms move as the
work does."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator import server
from coordinator.config import Settings
from tests.e2e.processes import eventually
from worker_sdk import Client, StepStatus, Worker, WorkflowFailedError, recv, step, workflow


@step()
async def double(x: int) -> int:
    return 2 * x


@workflow(name="metrics.steps")
async def steps(n: int) -> int:
    return sum([await double(i) for i in range(n)])


@workflow(name="metrics.fails")
async def fails() -> None:
    raise ValueError("as planned")


@workflow(name="metrics.waits")
async def waits() -> object:
    return await recv()


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[server.Running]:
    started = await server.start(replace(settings, metrics_port=0))
    yield started
    await started.stop(grace=0)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def metrics(running: server.Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert running.metrics is not None
    return await asyncio.to_thread(scrape, running.metrics.port)


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_a_scrape_during_a_run_sees_the_counters_move(running: server.Running) -> None:
    address = f"127.0.0.1:{running.port}"
    before = await metrics(running)
    assert value(before, "stepline_workflows_started_total") == 0
    assert value(before, "stepline_connected_workers") == 0
    assert value(before, "stepline_queue_depth") == 0

    async with Client(address) as client:
        queued = await client.start_workflow(steps, 3)  # no worker yet: it waits in the queue
        assert value(await metrics(running), "stepline_queue_depth") == 1
        async with Worker(address, workflows=[steps, fails, waits]):
            assert await queued.result(timeout=10) == 6
            assert await (await client.start_workflow(steps, 5)).result(timeout=10) == 20
            with pytest.raises(WorkflowFailedError):
                await (await client.start_workflow(fails)).result(timeout=10)
            waiting = await client.start_workflow(waits)

            async def recv_waits() -> bool:
                return any(
                    s.status is StepStatus.WAITING for s in await client.list_steps(waiting.workflow_id)
                )

            await eventually(recv_waits, what="the recv")
            during = await metrics(running)
            assert value(during, "stepline_connected_workers") == 1
            assert value(during, "stepline_executions") == 1  # the one waiting in recv
            await client.cancel(waiting.workflow_id)

    after = await metrics(running)
    assert value(after, "stepline_workflows_started_total") == 4
    assert value(after, "stepline_workflows_finished_total", status="SUCCEEDED") == 2
    assert value(after, "stepline_workflows_finished_total", status="FAILED") == 1
    assert value(after, "stepline_workflows_finished_total", status="CANCELLED") == 1
    # 8 step results and 3 workflow outcomes went through the steps batcher, in batches.
    assert value(after, "stepline_steps_commit_seconds_count") >= 8 + 3
    assert (
        1
        <= value(after, "stepline_steps_batch_size_count")
        <= value(after, "stepline_steps_commit_seconds_count")
    )
    assert value(after, "stepline_steps_commit_seconds_sum") > 0
    assert value(after, "stepline_starts_batch_size_count") >= 1
    assert value(after, "stepline_dispatch_lag_seconds_count") >= 1  # the queued one
    assert value(after, "stepline_queue_depth") == 0
    assert value(after, "stepline_timers_due") == 0
    assert value(after, "stepline_stale_writes_refused_total") == 0

    async def disconnected() -> bool:
        return value(await metrics(running), "stepline_connected_workers") == 0

    await eventually(disconnected, what="the worker's session gone")
