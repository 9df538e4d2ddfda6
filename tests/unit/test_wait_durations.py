"""A wait's duration and timeout count from the workflow's call, not from when the Wait
left a busy worker or when a busy coordinator got to writing it (bench (h))."""

from __future__ import annotations

import time

import pytest

from coordinator.waits import _since
from worker_sdk._convert import worker_frames
from worker_sdk._messages import Wait
from worker_sdk._models import StepKind


def _sent(wait: Wait) -> object:
    (frame,) = worker_frames([wait], 1 << 20)
    return frame.events[0].wait


def test_a_sleep_sends_what_is_left_of_it_since_the_call() -> None:
    wait = Wait("w", 1, "1", StepKind.SLEEP, seconds=2.0, called=time.monotonic() - 1.5)
    left = _sent(wait).sleep.duration.ToTimedelta().total_seconds()  # type: ignore[attr-defined]
    assert 0.3 < left <= 0.5


def test_a_recv_timeout_counts_from_the_call_too() -> None:
    wait = Wait("w", 1, "1", StepKind.RECV, timeout=10.0, called=time.monotonic() - 4.0)
    left = _sent(wait).recv.timeout.ToTimedelta().total_seconds()  # type: ignore[attr-defined]
    assert 5.8 < left <= 6.0


def test_a_wait_older_than_its_duration_is_due_at_once() -> None:
    wait = Wait("w", 1, "1", StepKind.SLEEP, seconds=1.0, called=time.monotonic() - 3.0)
    assert _sent(wait).sleep.duration.ToTimedelta().total_seconds() == 0  # type: ignore[attr-defined]


def test_a_fresh_wait_sends_its_whole_duration() -> None:
    left = _sent(Wait("w", 1, "1", StepKind.SLEEP, seconds=2.0)).sleep.duration  # type: ignore[attr-defined]
    assert 1.99 < left.ToTimedelta().total_seconds() <= 2.0


@pytest.mark.parametrize(
    ("seconds", "received", "now", "left"),
    [
        (2.0, 100.0, 101.5, 0.5),  # queued 1.5 s in the coordinator
        (2.0, 100.0, 103.0, 0.0),  # queued longer than the sleep: due at once
        (2.0, 0.0, 103.0, 2.0),  # arrival unknown: counted from the write
        (None, 100.0, 101.0, None),  # no timeout stays none
    ],
)
def test_the_coordinator_counts_from_when_it_received_the_wait(
    seconds: float | None, received: float, now: float, left: float | None
) -> None:
    assert _since(seconds, received, now) == left
