"""Per-principal request rate limits (per app instance), with the `limits` package."""

from __future__ import annotations

import math
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from tracing.errors import TooManyRequests
from tracing.security import Principal


class PrincipalRateLimit:
    def __init__(self, per_minute: int) -> None:
        self._item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, principal: Principal) -> None:
        if self._item is None:
            return
        key = f"{principal.agency}\x1f{principal.subject}"
        if not self._limiter.hit(self._item, key):
            reset = self._limiter.get_window_stats(self._item, key).reset_time
            retry_after = max(1, math.ceil(reset - time.time()))
            raise TooManyRequests(
                f"more than {self._item.amount} requests a minute; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )
