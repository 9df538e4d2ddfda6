"""What the coordinator counts as it goes: for logs, tests and the /metrics endpoint.

Plain integers and per-batch histograms, bumped on the event loop; ``metrics.py`` reads
them at scrape time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from coordinator.metrics import LATENCY_BUCKETS, SIZE_BUCKETS, Histogram


@dataclass
class BatchStats:
    """One batcher's batches: their sizes, and their commit times per item."""

    size: Histogram = field(default_factory=lambda: Histogram(SIZE_BUCKETS))
    commit: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def written(self, items: int, seconds: float) -> None:
        self.size.observe(items)
        self.commit.observe(seconds, items)


@dataclass
class Stats:
    #: Writes refused because their epoch or owner was no longer current.
    stale_writes_rejected: int = 0
    #: Claims of a workflow that had run before (its worker died or went silent).
    recoveries: int = 0
    #: Workflows given up as poison.
    poisoned: int = 0
    #: Sessions ended because the worker fell silent for a whole lease.
    leases_expired: int = 0
    #: Workflows recorded by starts (a start of an existing ID records none).
    workflows_started: int = 0
    #: Workflows that reached a final status (or PAUSED), by status.
    workflows_finished: Counter[str] = field(default_factory=Counter)
    #: Per batcher ("steps", "starts", "waits").
    batches: dict[str, BatchStats] = field(default_factory=dict)
    #: From a workflow becoming ready (its last update) to its claim.
    dispatch_lag: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))

    def batcher(self, name: str) -> BatchStats:
        return self.batches.setdefault(name, BatchStats())

    def as_dict(self) -> dict[str, int]:
        return {
            "stale_writes_rejected": self.stale_writes_rejected,
            "recoveries": self.recoveries,
            "poisoned": self.poisoned,
            "leases_expired": self.leases_expired,
            "workflows_started": self.workflows_started,
        }
