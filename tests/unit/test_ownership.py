"""Execution ownership in coordinator memory: the named transitions and what they free."""

from __future__ import annotations

import asyncio

from coordinator.models import ExecutionRef, Registration
from coordinator.ownership import Ownership
from coordinator.sessions import Session, Sessions


def session(worker_id: str = "w", capacity: int = 3) -> Session:
    return Session(Registration(worker_id, frozenset({"wf"}), capacity, "python", "0", 1, ()))


class Rooms:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_assign_counts_against_capacity_and_finish_frees_the_slot() -> None:
    rooms = Rooms()
    own, s = Ownership(rooms), session()
    own.assign(s, "a", 1)
    own.assign(s, "b", 1)
    assert (own.count(s), own.free_slots(s), own.holder("a")) == (2, 1, (s, 1))
    own.finish(s, "a", 2)  # another epoch: not this execution
    assert (own.count(s), rooms.calls) == (2, 0)
    own.finish(s, "a", 1)
    assert (own.count(s), own.holder("a"), rooms.calls) == (1, None, 1)
    s.draining = True
    assert own.free_slots(s) == 0


def test_a_replacing_session_keeps_only_what_was_reattached() -> None:
    own = Ownership(Rooms())
    old, new = session(), session()
    for workflow_id in ("kept", "lost"):
        own.assign(old, workflow_id, 1)
    own.reattach(new, old, [ExecutionRef("kept", 1)])
    assert own.holder("kept") == (new, 1)
    assert own.holder("lost") is None
    assert own.count(old) == 0
    # A result that reached the old session is finished for the worker's current one.
    own.finish(old, "kept", 1)
    assert own.count(new) == 0


def test_abandon_release_and_end() -> None:
    rooms = Rooms()
    own, s, other = Ownership(rooms), session("w"), session("x")
    for workflow_id in ("a", "b", "c"):
        own.assign(s, workflow_id, 1)
    own.abandon(other, "a", 1)  # another worker cannot drop this one's execution
    assert own.holder("a") == (s, 1)
    own.abandon(s, "a", 1)
    own.release(s, "b", 1)
    assert own.end(s) == ["c"]
    assert (own.count(s), own.holder("c"), rooms.calls) == (0, None, 3)


async def test_per_worker_locks_go_away_when_nobody_holds_them() -> None:
    sessions = Sessions()
    order: list[str] = []

    async def hold(name: str) -> None:
        async with sessions.locked("w"):
            order.append(f"{name} in")
            await asyncio.sleep(0)
            order.append(f"{name} out")

    await asyncio.gather(hold("first"), hold("second"))
    assert order == ["first in", "first out", "second in", "second out"]
    assert sessions.lock_count == 0
