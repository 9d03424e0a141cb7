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


@dataclass
class ConfirmTimer:
    """How long a box waits for the CDP's confirmation of a batch before sending it again:
    TCP's retransmission timer (RFC 6298) on the confirmations' round trip.

    The wait is the smoothed round trip plus four deviations, never under ``floor_s`` (the
    configured timeout) nor over ``max_s``. Each time batches go unconfirmed the wait doubles,
    for new batches as well, until a batch sent once is confirmed (Karn: a re-sent batch's
    round trip is ambiguous, so it is no sample). Why: a central tier that slows down under a
    fleet's burst (nats at 2,000 stores on 2 cores: confirmations 100 s late) met a fixed 15 s
    timer with every box sending every batch again, which is more of the load that slowed it."""

    floor_s: float
    max_s: float = 600.0
    srtt_s: float | None = None
    rttvar_s: float = 0.0
    backoffs: int = 0
    MAX_BACKOFFS = 10

    def __post_init__(self) -> None:
        if not 0 < self.floor_s <= self.max_s:
            raise ValueError("confirm timer needs 0 < floor_s <= max_s")

    def sample(self, rtt_s: float) -> None:
        """A batch sent once was confirmed ``rtt_s`` after its PUBACK."""
        rtt_s = max(0.0, rtt_s)
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
        else:
            self.rttvar_s = 0.75 * self.rttvar_s + 0.25 * abs(self.srtt_s - rtt_s)
            self.srtt_s = 0.875 * self.srtt_s + 0.125 * rtt_s
        self.backoffs = 0

    def back_off(self) -> None:
        """Batches went unconfirmed in time: wait twice as long from now on."""
        self.backoffs = min(self.backoffs + 1, self.MAX_BACKOFFS)

    def timeout_s(self) -> float:
        base = self.floor_s
        if self.srtt_s is not None:
            base = max(base, self.srtt_s + 4 * self.rttvar_s)
        return min(self.max_s, base * 2**self.backoffs)
