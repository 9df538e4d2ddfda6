"""Counters of what the coordinator did, for logs and tests (later: metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
