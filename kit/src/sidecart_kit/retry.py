"""Retries of optimistic-concurrency conflicts: how many, and how long to wait before each."""

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    backoff_seconds: float = 0.02
    backoff_max_seconds: float = 0.5

    def delay(self, attempt: int) -> float:
        # Full jitter, so writers that collided once do not collide again in lockstep.
        return random.uniform(0, min(self.backoff_max_seconds, self.backoff_seconds * 2**attempt))  # noqa: S311
