"""Workflows that wait, for the e2e tests of durable waits (see flows.py for the effects file)."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.programs.flows import effect
from worker_sdk import Workflow, get_event, recv, set_event, sleep, step, workflow


@step()
async def stamp(what: str) -> float:
    """Records ``what`` with the time its body ran."""
    effect(what)
    return time.time()


@workflow()
async def nap(seconds: float) -> dict[str, float]:
    """A step, a durable sleep, a step: the times around the sleep."""
    before = await stamp("before")
    await sleep(seconds)
    after = await stamp("after")
    return {"before": before, "after": after}


@workflow()
async def inbox(count: int, topic: str) -> list[Any]:
    """Receives ``count`` messages of ``topic``, recording each as it arrives."""
    received = []
    for _ in range(count):
        message = await recv(topic)
        received.append(message)
    await stamp(f"received {len(received)}")
    return received


@workflow()
async def announcer(key: str, value: Any) -> str:
    """Sets an event, then waits for a message before it finishes."""
    await stamp("before set")
    await set_event(key, value)
    await stamp("after set")
    await recv("finish")
    return "announced"


@workflow()
async def event_waiter(target: str, key: str) -> Any:
    await stamp("waiting")
    value = await get_event(target, key, timeout=None)
    await stamp("got")
    return value


WAITING: list[Workflow[Any, Any]] = [nap, inbox, announcer, event_waiter]
