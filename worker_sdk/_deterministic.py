"""Deterministic helpers for workflow code: what a replay must see as the first run saw it.

``patched`` lets new code branch safely where old runs are still in flight.

``now``, ``random`` and ``uuid4`` are recorded once, as steps ("stepline.now", ...), and a
replay returns the recorded value. ``wait`` and ``as_completed`` record the order in which
they saw their awaitables finish (as "stepline.wait" / "stepline.as_completed" steps: the
positions, in the order given) and a replay hands them out in that order again, whatever
order the recorded results come back in. Each takes its step ID synchronously at the call
(for ``as_completed``: as the loop asks for the next item), like a step.

asyncio's own ``wait`` and ``as_completed`` observe an order that is not recorded, so a
replay may take another path: called from workflow code, they log a warning naming the
file and line (once per place).
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
import sys
import uuid
from collections.abc import Awaitable, Coroutine, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from worker_sdk import _serde
from worker_sdk._context import SCOPE, STEP_CODES, Scope
from worker_sdk._definitions import StepDefinition
from worker_sdk._execution import Execution, run_step
from worker_sdk._models import StepStatus

log = logging.getLogger("worker_sdk")

T = TypeVar("T")


async def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _random_value() -> float:
    return _random.random()


async def _uuid() -> str:
    return str(uuid.uuid4())


async def _observed(positions: list[int]) -> list[int]:
    return positions


async def _patched() -> bool:
    return True


def _internal(name: str, fn: Any) -> StepDefinition:
    return StepDefinition(name, fn, None, True)


_NOW = _internal("stepline.now", _now)
_RANDOM = _internal("stepline.random", _random_value)
_UUID = _internal("stepline.uuid4", _uuid)
_WAIT = _internal("stepline.wait", _observed)
_AS_COMPLETED = _internal("stepline.as_completed", _observed)
_PATCHED = _internal("stepline.patched", _patched)


def patched(change_id: str) -> Coroutine[Any, Any, bool]:
    """Whether this run takes the new code path of change ``change_id``: False while it
    replays a history made before the change reached this point, True otherwise; decided
    once, the same on every replay. Branch on it to change workflow code that runs
    already: ``if await patched("express-shipping"): ... else: ...``.

    It takes no step ID of the sequence (old histories keep theirs): a True answer is
    recorded under "<scope>patch:<change_id>"; a False one needs no record, as a history
    that holds this scope's next step will always hold it.
    """
    scope = SCOPE.get()
    if scope is None:
        return _value(True)
    ex = scope.execution
    step_id = f"{scope.prefix}patch:{change_id}"
    if ex.recorded.get(step_id) is not None:
        return _value(True)
    if scope.peek_step_id() in ex.recorded:
        return _value(False)
    coro: Coroutine[Any, Any, bool] = run_step(ex, _PATCHED, step_id, (), {})
    return coro


def now() -> Coroutine[Any, Any, datetime]:
    """The current time (UTC), recorded: a replay returns the time the first run saw."""
    scope = SCOPE.get()
    if scope is None:
        return _value(datetime.now(UTC))
    return _to_datetime(run_step(scope.execution, _NOW, scope.next_step_id(), (), {}))


def random() -> Coroutine[Any, Any, float]:
    """A random float in [0, 1), recorded: a replay returns the same number."""
    scope = SCOPE.get()
    if scope is None:
        return _value(_random.random())
    coro: Coroutine[Any, Any, float] = run_step(scope.execution, _RANDOM, scope.next_step_id(), (), {})
    return coro


def uuid4() -> Coroutine[Any, Any, uuid.UUID]:
    """A random UUID, recorded: a replay returns the same one."""
    scope = SCOPE.get()
    if scope is None:
        return _value(uuid.uuid4())
    return _to_uuid(run_step(scope.execution, _UUID, scope.next_step_id(), (), {}))


async def _awaited(item: Awaitable[T]) -> T:
    return await item


async def _value(value: T) -> T:
    return value


async def _to_datetime(recorded: Coroutine[Any, Any, str]) -> datetime:
    return datetime.fromisoformat(await recorded)


async def _to_uuid(recorded: Coroutine[Any, Any, str]) -> uuid.UUID:
    return uuid.UUID(await recorded)


def wait(
    aws: Iterable[Awaitable[Any]], *, return_when: str = asyncio.FIRST_COMPLETED
) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
    """asyncio.wait for workflow code: (done, pending), with ``done`` recorded, so a
    replay returns the same split. ``return_when`` as asyncio's (no timeout: use ``sleep``
    or a recv with a timeout, which are durable)."""
    futures: list[asyncio.Future[Any]] = [asyncio.ensure_future(a) for a in aws]
    scope = SCOPE.get()
    if scope is None:
        return _std_wait(futures, return_when=return_when)
    return _wait(scope, scope.next_step_id(), futures, return_when)


async def _wait(
    scope: Scope, step_id: str, futures: list[asyncio.Future[Any]], return_when: str
) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    ex = scope.execution
    positions = _recorded_positions(ex, step_id)
    if positions is None:
        done, _ = await _std_wait(futures, return_when=return_when)
        positions = [i for i, f in enumerate(futures) if f in done]
        await run_step(ex, _WAIT, step_id, (positions,), {})
    else:
        await _std_wait([futures[i] for i in positions])
    chosen = {futures[i] for i in positions}
    return chosen, {f for f in futures if f not in chosen}


def as_completed(aws: Iterable[Awaitable[T]]) -> Iterator[Coroutine[Any, Any, T]]:
    """asyncio.as_completed for workflow code: each item, awaited, gives the next result
    to finish; the order is recorded, so a replay gives them in the same order."""
    futures = [asyncio.ensure_future(a) for a in aws]
    scope = SCOPE.get()
    if scope is None:
        for item in _std_as_completed(futures):
            yield _awaited(item)
        return
    left = list(range(len(futures)))
    for _ in range(len(futures)):
        yield _next(scope, scope.next_step_id(), futures, left)


async def _next(scope: Scope, step_id: str, futures: Sequence[asyncio.Future[T]], left: list[int]) -> T:
    ex = scope.execution
    positions = _recorded_positions(ex, step_id)
    if positions is None:
        done, _ = await _std_wait([futures[i] for i in left], return_when=asyncio.FIRST_COMPLETED)
        position = min(i for i in left if futures[i] in done)  # of several at once, the first given
        await run_step(ex, _AS_COMPLETED, step_id, ([position],), {})
    else:
        [position] = positions
    left.remove(position)
    return await futures[position]


def _recorded_positions(ex: Execution, step_id: str) -> list[int] | None:
    recorded = ex.recorded.get(step_id)
    if recorded is None or recorded.status is not StepStatus.SUCCEEDED or recorded.output is None:
        return None
    positions: list[int] = _serde.decode(recorded.output.data, recorded.output.encoding)
    return positions


# --- asyncio's own, watched -------------------------------------------------------------------

_std_wait = asyncio.wait
_std_as_completed = asyncio.as_completed
_warned: set[tuple[str, int]] = set()


def _warn_if_in_workflow(name: str) -> None:
    if SCOPE.get() is None:
        return
    caller = sys._getframe(2)
    where = (caller.f_code.co_filename, caller.f_lineno)
    if where not in _warned:
        _warned.add(where)
        log.warning(
            "asyncio.%s called by workflow code at %s:%d: the order it sees is not recorded, so "
            "a replay may take another path; use worker_sdk.%s instead",
            name,
            where[0],
            where[1],
            name,
        )


def _watched_wait(*args: Any, **kwargs: Any) -> Any:
    _warn_if_in_workflow("wait")
    return _std_wait(*args, **kwargs)


def _watched_as_completed(*args: Any, **kwargs: Any) -> Any:
    _warn_if_in_workflow("as_completed")
    return _std_as_completed(*args, **kwargs)


def watch_asyncio() -> None:
    """Makes asyncio.wait and asyncio.as_completed warn when workflow code calls them."""
    asyncio.wait = _watched_wait
    asyncio.as_completed = _watched_as_completed


# Tasks that wrap one of these calls take no scope of their own (as for steps).
STEP_CODES.update({_to_datetime.__code__, _to_uuid.__code__, _value.__code__, _wait.__code__, _next.__code__})
