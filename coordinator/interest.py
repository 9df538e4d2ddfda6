"""Who, on other coordinators, waits for a workflow to finish (AwaitWorkflow).

A caller of one coordinator may wait for a workflow that a worker of another runs: the
one that records the completion must tell the one that waits. Rather than hint every
completion to everyone, a coordinator whose callers wait for workflows it does not hold
says so (an INTEREST hint, repeated while the wait lasts), and a coordinator that
finishes one of those hints DONE. An interest can arrive just after the completion it
was about (the waiting coordinator read the workflow just before it finished); so the
last few seconds of completions are remembered, and an interest in one of them is
answered at once. All of these are hints: the waiting coordinator also re-reads what its
callers wait for after every resync, so a lost one costs a sweep, not the wait.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable

from coordinator import hints
from coordinator.errors import CoordinatorError
from coordinator.hints import Hints
from coordinator.store.database import Database

log = logging.getLogger(__name__)

# How long an interest holds (a caller waits at most 60 s per call, then asks again).
_HOLDS = 90.0
# How often the same interest is said again while callers keep waiting.
_REPEAT = 30.0
# How long completions are remembered for interests that arrive late.
_RECENT = 10.0


class Interest:
    def __init__(self, db: Database, hints_: Hints) -> None:
        self._db = db
        self._hints = hints_
        # Workflows that callers of other coordinators wait for -> until when.
        self._awaited: dict[str, float] = {}
        # Workflows this coordinator said its callers wait for -> when it said so.
        self._said: dict[str, float] = {}
        self._done: set[str] = set()
        self._telling: asyncio.Task[None] | None = None
        # Workflows finished here lately, oldest first, with when.
        self._recent: collections.OrderedDict[str, float] = collections.OrderedDict()
        hints_.on(hints.INTEREST, self._wanted)

    async def want(self, workflow_ids: Iterable[str]) -> None:
        """Callers here wait for these workflows, which no worker connected here runs."""
        now = time.monotonic()
        fresh = [w for w in workflow_ids if now - self._said.get(w, -_REPEAT) >= _REPEAT]
        if not fresh:
            return
        for w in fresh:
            self._said[w] = now
        if len(self._said) > 100_000:  # forget what is long past
            self._said = {w: t for w, t in self._said.items() if now - t < _REPEAT}
        async with self._db.connection() as conn:
            await self._hints.publish(conn, hints.INTEREST, fresh)

    def _wanted(self, workflow_ids: list[str]) -> None:
        now = time.monotonic()
        until = now + _HOLDS
        for w in workflow_ids:
            if w in self._recent:
                self._tell_soon(w)  # it finished just before the interest arrived
            else:
                self._awaited[w] = until
        if len(self._awaited) > 100_000:
            self._awaited = {w: t for w, t in self._awaited.items() if t >= now}

    def finished(self, workflow_id: str) -> None:
        """A workflow's final status was recorded here; tell whoever elsewhere waits."""
        now = time.monotonic()
        recent = self._recent
        recent[workflow_id] = now
        while recent and next(iter(recent.values())) < now - _RECENT:
            recent.popitem(last=False)
        if self._awaited:
            until = self._awaited.pop(workflow_id, None)
            if until is not None and until >= now:
                self._tell_soon(workflow_id)

    def _tell_soon(self, workflow_id: str) -> None:
        self._done.add(workflow_id)
        if self._telling is None or self._telling.done():
            self._telling = asyncio.get_running_loop().create_task(self._tell())

    async def _tell(self) -> None:
        await asyncio.sleep(0)  # the other completions of this turn go in the same hint
        done, self._done = sorted(self._done), set()
        try:
            async with self._db.connection() as conn:
                await self._hints.publish(conn, hints.DONE, done)
        except CoordinatorError as exc:
            log.info("could not hint %d finished workflows (their resync finds them): %s", len(done), exc)
