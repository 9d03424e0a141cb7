"""Retry timing, the one way every process here waits after a failure: a camera that will not
open, a batch the broker refused. Exponential, capped, reset on success; with ``jitter`` each
delay is drawn from the top part of its step, so a fleet that failed together does not retry
in lockstep."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass
class Backoff:
    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    # Each delay is drawn from [1 - jitter, 1] times its step (0: exact steps).
    jitter: float = 0.0
    failures: int = 0
    until: float = 0.0  # monotonic time the current delay ends

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError("backoff needs initial_s > 0, factor >= 1, max_s >= initial_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter is a fraction from 0 to 1")

    def next(self) -> float:
        """One more failure: the delay before the next try."""
        step = min(self.max_s, self.initial_s * self.factor**self.failures)
        self.failures += 1
        delay = step * random.uniform(1.0 - self.jitter, 1.0) if self.jitter else step
        self.until = time.monotonic() + delay
        return delay

    def reset(self) -> None:
        """A success: the next failure starts from ``initial_s`` again."""
        self.failures = 0
        self.until = 0.0

    def remaining(self) -> float:
        """Seconds left of the current delay."""
        return max(0.0, self.until - time.monotonic())
