"""Client-side pacing for bulk sending: one token bucket and one pause gate.

`send_many` takes tokens before each request (one per message) and closes the gate for
every 429's `Retry-After`, the ones the SDK retries and the ones it gives up on alike.
Tokens are taken only once the gate is open, and a pause empties the bucket, so no burst
follows a pause. Any object with the same two methods can stand in (`rate_limiter=`),
for example a limiter shared by a whole fleet of workers.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

__all__ = ["Pacer", "RateLimiter"]


@runtime_checkable
class RateLimiter(Protocol):
    """What `send_many(rate_limiter=...)` needs.

    `acquire(n)` returns when `n` messages may go out; `pause(seconds)` is called when
    the server asks every sender to wait (a 429 with `Retry-After`).
    """

    async def acquire(self, n: int) -> None: ...

    def pause(self, seconds: float) -> None: ...


class Pacer:
    """`rate` messages per second (None: no limit), bursting one second's worth, plus a gate.

    A take larger than the burst waits for a full bucket and leaves a debt, so a batch of
    n messages costs n / rate seconds of sending time either way.
    """

    def __init__(self, rate: float | None = None) -> None:
        import anyio  # bulk sending only: `import ovo_async` does not load anyio

        self._anyio = anyio
        self.rate = rate
        self.capacity = max(rate, 1.0) if rate else math.inf
        self.tokens = self.capacity
        self.last = anyio.current_time()
        self.resume_at = 0.0
        self._lock = anyio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every `acquire` for `seconds` from now (extending, never shortening)."""
        if not seconds > 0 or not math.isfinite(seconds):
            return
        now = self._anyio.current_time()
        self.resume_at = max(self.resume_at, now + seconds)
        # The bucket restarts empty when the gate opens: nothing saved up during the pause.
        self.tokens = 0.0
        self.last = self.resume_at

    async def acquire(self, n: int) -> None:
        """Wait for the gate, then for `n` tokens (FIFO among waiters)."""
        if self.rate is None and self.resume_at == 0.0 and not self._lock.locked():
            # No limit and never paused: nothing to wait for, and taking the lock would
            # cost a trip through the event loop per request.
            return
        anyio = self._anyio
        async with self._lock:
            while True:
                # A loop, not an Event: another 429 may push resume_at later while we sleep.
                while (delay := self.resume_at - anyio.current_time()) > 0:
                    await anyio.sleep(delay)
                if self.rate is None:
                    return
                now = anyio.current_time()
                if now > self.last:
                    self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
                    self.last = now
                need = min(float(n), self.capacity)
                if self.tokens >= need:
                    self.tokens -= n
                    return
                await anyio.sleep((need - self.tokens) / self.rate)
                # Check the gate again: a pause may have come while we waited for tokens.
