"""Per-client token buckets: a phone may ask ``rate`` requests a second with bursts of
``burst``; one misbehaving client cannot starve the 199 others. Pure: the caller gives the time.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        # Least recently seen first: the table is bounded, a forgotten client starts full.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, client: str, now: float) -> float:
        """0.0 when ``client`` may go ahead now (a token is taken), else the seconds until it
        may (the Retry-After a 429 carries)."""
        b = self._buckets.pop(client, None)
        if b is None:
            b = _Bucket(float(self.burst), now)
        else:
            b.tokens = min(float(self.burst), b.tokens + max(0.0, now - b.at) * self.rate)
            b.at = now
        self._buckets[client] = b
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return 0.0
        return (1.0 - b.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
