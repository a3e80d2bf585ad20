"""In-process wake-ups: committing events rings `doorbell` and long-polling feed readers of the same
process stop waiting at once instead of at their next poll; committing webhook deliveries rings
`delivery_doorbell` and the delivery worker does the same (events for agencies without a webhook
do not wake it).

It is only a shortcut. Readers in other processes (or a ring that comes before a reader starts
waiting) are covered by polling the database, so a missed ring delays, never loses, an event.
"""

from __future__ import annotations

import asyncio
import contextlib


class Doorbell:
    def __init__(self) -> None:
        self.generation = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def ring(self) -> None:
        self.generation += 1
        for waiter in list(self._waiters):
            loop = waiter.get_loop()
            if loop.is_closed():
                self._waiters.discard(waiter)
                continue
            loop.call_soon_threadsafe(_wake, waiter)

    async def wait(self, since_generation: int, seconds: float) -> bool:
        """Wait until a ring after `since_generation`, or `seconds`; True when rung."""
        if self.generation != since_generation:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, seconds)
        finally:
            self._waiters.discard(waiter)
        return self.generation != since_generation


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


doorbell = Doorbell()
delivery_doorbell = Doorbell()
