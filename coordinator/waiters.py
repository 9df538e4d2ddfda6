"""Callers waiting in AwaitWorkflow, woken when their workflow reaches a final status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Waiters:
    def __init__(self) -> None:
        self._by_id: dict[str, set[asyncio.Future[None]]] = {}

    def notify(self, workflow_id: str) -> None:
        for future in self._by_id.pop(workflow_id, ()):
            if not future.done():
                future.set_result(None)

    def notify_all(self) -> None:
        for workflow_id in list(self._by_id):
            self.notify(workflow_id)

    @contextlib.contextmanager
    def registered(self, workflow_id: str) -> Iterator[asyncio.Future[None]]:
        """Registers a waiter first, so that a completion between a read and the wait is seen."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._by_id.setdefault(workflow_id, set()).add(future)
        try:
            yield future
        finally:
            waiting = self._by_id.get(workflow_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._by_id[workflow_id]
