"""Workflow IDs the coordinator makes up: UUIDs that grow with time."""

from __future__ import annotations

import time
import uuid

from coordinator.starts import new_workflow_id


def test_generated_ids_are_version_7_uuids_ordered_by_time() -> None:
    earlier = [new_workflow_id() for _ in range(100)]
    made_at = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == made_at:  # into the next millisecond, what orders them
        pass
    later = new_workflow_id()
    for text in [*earlier, later]:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 7, uuid.RFC_4122)
    assert len(set(earlier)) == len(earlier)
    assert all(e < later for e in earlier), "an ID made later sorts after the earlier ones"
    millis = uuid.UUID(later).int >> 80
    assert abs(millis - time.time() * 1000) < 60_000
