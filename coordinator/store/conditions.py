"""Conditions on workflow rows that several statements share, each written once.

They are built from the status sets in ``coordinator.models`` (enum constants, never
input), so that the SQL and the Python agree on what "final", "unfinished", "running"
and "ready" mean. Migration 0001's partial index ``workflows_ready`` is defined by the
same ready condition; ``tests/integration/test_conditions.py`` checks that the claims
are served by it.
"""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.models import FINAL, UNFINISHED, WorkflowStatus


def _in(column: str, statuses: Iterable[WorkflowStatus]) -> str:
    values = ", ".join(f"'{s.value}'" for s in sorted(statuses, key=lambda s: s.value))
    return f"{column} IN ({values})"


def _col(alias: str, column: str) -> str:
    return f"{alias}.{column}" if alias else column


def final(alias: str = "") -> str:
    """The workflow has a final status."""
    return _in(_col(alias, "status"), FINAL)


def unfinished(alias: str = "") -> str:
    return _in(_col(alias, "status"), UNFINISHED)


def running(alias: str = "") -> str:
    """The workflow has started and not finished: writes about its execution may apply."""
    return f"{_col(alias, 'status')} = '{WorkflowStatus.RUNNING.value}'"


def ready(alias: str = "") -> str:
    """Unfinished, owned by nobody and not suspended: waiting for a worker (WorkflowRecord.ready)."""
    return f"{_col(alias, 'owner_id')} IS NULL AND NOT {_col(alias, 'suspended')} AND {unfinished(alias)}"
