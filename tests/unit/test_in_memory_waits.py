"""The in-memory recorder runs durable operations too: recorded, replayed, never waiting."""

from __future__ import annotations

from typing import Any

import pytest

from worker_sdk import SteplineError, get_event, recv, send, set_event, sleep, step, workflow
from worker_sdk.testing import Crashed, InMemoryRecorder

bodies: list[str] = []


@step()
async def note(what: str) -> str:
    bodies.append(what)
    return what


@workflow()
async def conversation(peer: str) -> list[Any]:
    await sleep(3600)  # returns at once here
    greeting = await recv("hello")
    await send(peer, {"reply to": greeting}, topic="replies")
    await set_event("state", "replied")
    await note("after")
    return [greeting, await recv("hello", timeout=1)]


@workflow()
async def reader() -> Any:
    return [await recv("replies", timeout=0), await get_event("talker", "state", timeout=0)]


async def test_operations_run_against_the_recorder_and_replay_from_it() -> None:
    bodies.clear()
    recorder = InMemoryRecorder()
    recorder.send("talker", "hi", topic="hello")
    with pytest.raises(Crashed):
        await recorder.run(conversation, "listener", workflow_id="talker", crash_after_steps=5)
    # The crash came after note's result was recorded; the replay returns everything as
    # recorded (the consumed message is not taken twice) and runs only what is left.
    assert await recorder.run(conversation, "listener", workflow_id="talker") == ["hi", None]
    assert bodies == ["after"]
    assert recorder.get_event("talker", "state") == "replied"
    assert await recorder.run(reader, workflow_id="listener") == [{"reply to": "hi"}, "replied"]


async def test_a_wait_that_would_last_for_ever_is_an_error() -> None:
    with pytest.raises(SteplineError, match="would wait for ever"):
        await InMemoryRecorder().run(conversation, "nobody", workflow_id="lonely")
