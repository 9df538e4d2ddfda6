"""Callers waiting in AwaitWorkflow(s), woken when one of their workflows reaches a final status.

A notification carries the final record when the notifier has it (the statement that
finished the workflow returns it), so a waiter answers without reading it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

from coordinator.models import WorkflowRecord


class Watch:
    """What one waiting call has learnt: finished workflows (record, or None to re-read)."""

    __slots__ = ("done", "event")

    def __init__(self) -> None:
        self.done: dict[str, WorkflowRecord | None] = {}
        self.event = asyncio.Event()


class Waiters:
    def __init__(self) -> None:
        self._by_id: dict[str, set[Watch]] = {}

    def notify(self, workflow_id: str, record: WorkflowRecord | None = None) -> None:
        for watch in self._by_id.pop(workflow_id, ()):
            watch.done[workflow_id] = record
            watch.event.set()

    def notify_all(self) -> None:
        for workflow_id in list(self._by_id):
            self.notify(workflow_id)

    @contextlib.contextmanager
    def watching(self, workflow_ids: Sequence[str]) -> Iterator[Watch]:
        """Registers first, so that a completion between a read and the wait is not missed."""
        watch = Watch()
        for workflow_id in workflow_ids:
            self._by_id.setdefault(workflow_id, set()).add(watch)
        try:
            yield watch
        finally:
            for workflow_id in workflow_ids:
                waiting = self._by_id.get(workflow_id)
                if waiting is not None:
                    waiting.discard(watch)
                    if not waiting:
                        del self._by_id[workflow_id]
