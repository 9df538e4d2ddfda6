"""Frozen descriptions of registered workflows and steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from worker_sdk._retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A workflow function and the name it is registered and started under."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    # Its runs may move to workers of newer versions (the code replays older histories,
    # branching with patched()); otherwise a run stays on the version that first ran it.
    auto_upgrade: bool = False


@dataclass(frozen=True, slots=True)
class StepDefinition:
    """A step function, its recorded name, and how it is retried."""

    name: str
    fn: Callable[..., Any]
    retry: RetryPolicy | None
    is_coroutine: bool
    # Seconds one attempt may take; None: no limit.
    timeout: float | None = None
