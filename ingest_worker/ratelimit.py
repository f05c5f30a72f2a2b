"""Per-site token buckets from the site's plan (``SiteConfig.rate_limit()``).

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; an event
costs one token (a batch of 100 costs 100).  When the bucket cannot pay, the request is
answered 429 with ``Retry-After`` = the seconds until it could.  Buckets are in memory,
per worker process; a changed plan takes effect when the config cache refreshes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    rate: float
    burst: float
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, site_id: str, cost: int, rate: float, burst: int) -> float:
        """Take ``cost`` tokens.  Returns 0.0 when allowed, else the seconds to wait."""
        now = self.clock()
        b = self._buckets.get(site_id)
        if b is None:
            b = self._buckets[site_id] = _Bucket(rate, float(burst), float(burst), now)
        elif b.rate != rate or b.burst != burst:  # the plan changed
            b.rate, b.burst = rate, float(burst)
            b.tokens = min(b.tokens, b.burst)
        b.tokens = min(b.burst, b.tokens + (now - b.updated) * b.rate)
        b.updated = now
        cost = min(cost, int(b.burst)) if b.burst >= 1 else cost  # a batch larger than the burst can pass when full
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        if b.rate <= 0:
            return math.inf
        return (cost - b.tokens) / b.rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(min(wait_s, 3600.0))))
