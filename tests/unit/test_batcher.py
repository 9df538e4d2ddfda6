"""The batcher's answers to a batch that cannot be written as it is."""

from __future__ import annotations

import asyncio

from coordinator.batcher import Batcher
from coordinator.errors import CoordinatorError, InvalidArgument


async def run(
    flush_errors: dict[int, list[CoordinatorError]], items: list[int]
) -> tuple[list[int], list[int]]:
    """Writes ``items`` in one batch; ``flush_errors[item]`` are raised, one per attempt,
    by any part that holds that item. Returns what was written and what was refused."""
    written: list[int] = []
    refused: list[int] = []

    async def flush(batch: list[int]) -> None:
        for item in batch:
            if flush_errors.get(item):
                raise flush_errors[item].pop(0)
        written.extend(batch)

    batcher: Batcher[int] = Batcher("test", flush, lambda part, _error: refused.extend(part))
    await batcher._write(items)
    await asyncio.sleep(0)
    return sorted(written), refused


async def test_an_item_failing_once_for_its_connection_is_written_on_the_second_try() -> None:
    # The whole batch, its half [3, 4] and then [3] alone fail; [3] once more does not.
    broken = [CoordinatorError("database error: InternalClientError: cannot switch to state 12")] * 3
    assert await run({3: broken}, [1, 2, 3, 4]) == ([1, 2, 3, 4], [])


async def test_an_item_that_fails_every_time_is_refused_alone() -> None:
    again = [CoordinatorError("database error: a bug") for _ in range(10)]
    assert await run({3: again}, [1, 2, 3, 4]) == ([1, 2, 4], [3])


async def test_bad_values_are_refused_at_once() -> None:
    bad: list[CoordinatorError] = [InvalidArgument("PostgreSQL refused the values") for _ in range(10)]
    written, refused = await run({2: bad}, [1, 2])
    assert (written, refused) == ([1], [2])
    assert len(bad) == 8  # the batch and the item alone, each once: no second try
