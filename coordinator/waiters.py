"""Callers waiting for something to happen, by key: AwaitWorkflow(s) for a workflow to
finish (key: workflow ID), GetEvent for an event to be set (key: workflow ID and key).

A notification carries the new value when the notifier has it (the statement that
finished the workflow returns it), so a waiter answers without reading it again; None
means "changed: read it again" (as after a hint from another coordinator).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable, Iterator, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Watch(Generic[K, V]):
    """What one waiting call has learnt: the keys that changed, with their new value."""

    __slots__ = ("done", "event")

    def __init__(self) -> None:
        self.done: dict[K, V | None] = {}
        self.event = asyncio.Event()


class Waiters(Generic[K, V]):
    def __init__(self) -> None:
        self._by_key: dict[K, set[Watch[K, V]]] = {}

    def notify(self, key: K, value: V | None = None) -> None:
        for watch in self._by_key.pop(key, ()):
            watch.done[key] = value
            watch.event.set()

    def notify_all(self) -> None:
        for key in list(self._by_key):
            self.notify(key)

    @contextlib.contextmanager
    def watching(self, keys: Sequence[K]) -> Iterator[Watch[K, V]]:
        """Registers first, so that a change between a read and the wait is not missed."""
        watch: Watch[K, V] = Watch()
        for key in keys:
            self._by_key.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            for key in keys:
                waiting = self._by_key.get(key)
                if waiting is not None:
                    waiting.discard(watch)
                    if not waiting:
                        del self._by_key[key]
