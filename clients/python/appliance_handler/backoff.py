"""Reconnect delays: exponential backoff with jitter, capped, and ``Retry-After``.

Layer: pure. ``Backoff`` never sleeps and never reads a clock; it only says how long the caller
should wait. Its random source is passed in, so tests get the same delays every run.
"""

from __future__ import annotations

import random
from typing import Optional


class Backoff:
    """Delays for consecutive failures of one operation.

    The n-th consecutive failure (n from 0) waits ``min(cap, base * 2**n)`` scaled by a random
    factor in ``[0.5, 1.0]`` ("equal jitter": never less than half the nominal delay, so a crowd
    of handlers restarting together spreads out but none hammers the server). A server
    ``Retry-After`` replaces the computed delay, clamped to ``max_retry_after``.
    ``reset()`` after a success starts again from ``base``.
    """

    def __init__(
        self,
        base: float,
        cap: float,
        max_retry_after: float,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.max_retry_after = max_retry_after
        self.failures = 0
        self._rng = rng if rng is not None else random.Random()

    def next_delay(self, retry_after: Optional[float] = None) -> float:
        """The wait before the next attempt, counting one more consecutive failure."""
        nominal = min(self.cap, self.base * (2 ** min(self.failures, 32)))
        self.failures += 1
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        return nominal * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.failures = 0
