"""Retry policies for steps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step is retried before its error is recorded and raised.

    Attempt n (from 1) that fails waits ``initial_interval * backoff_factor ** (n - 1)``
    seconds, at most ``max_interval``, before attempt n + 1, up to ``max_attempts``
    attempts in all. Errors that are instances of ``non_retryable`` are recorded at once.
    Every attempt's start is recorded, so attempts survive a crash: a recovered step
    resumes counting where it stopped.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_factor: float = 2.0
    max_interval: float = 60.0
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0:
            raise ValueError("intervals must not be negative")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1")

    def retries(self, exc: BaseException, attempt: int) -> bool:
        """Whether attempt ``attempt`` failing with ``exc`` is followed by another."""
        return attempt < self.max_attempts and not isinstance(exc, self.non_retryable)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed."""
        return float(min(self.initial_interval * self.backoff_factor ** (attempt - 1), self.max_interval))
