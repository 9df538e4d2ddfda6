"""Workflow IDs for tests: unique per call, so that no two runs of a test share one."""

from __future__ import annotations

import uuid


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
