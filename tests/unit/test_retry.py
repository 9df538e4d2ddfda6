"""RetryPolicy: which failures are retried, and how long each wait is."""

from __future__ import annotations

import pytest

from worker_sdk import RetryPolicy


class Fatal(Exception):
    pass


def test_waits_grow_by_the_backoff_factor_up_to_the_maximum() -> None:
    policy = RetryPolicy(max_attempts=10, initial_interval=0.5, backoff_factor=3.0, max_interval=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 10.0, 10.0]


def test_retries_stop_at_max_attempts_and_at_non_retryable_errors() -> None:
    policy = RetryPolicy(max_attempts=3, non_retryable=(Fatal,))
    assert [policy.retries(ValueError(), n) for n in (1, 2, 3)] == [True, True, False]
    assert not policy.retries(Fatal(), 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"initial_interval": -1.0}, "intervals must not be negative"),
        ({"backoff_factor": 0.5}, "backoff_factor must be at least 1"),
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
