"""One rate limit and one pause gate for a whole fleet of senders, kept in Redis.

`send_many(..., rate_limiter=RedisRateLimiter(url, rate=2000))` in every worker process
of every machine: together they send at most `rate` messages per second (bursting one
second's worth), and a 429 seen by any of them pauses all of them for its Retry-After.
The bucket and the gate are computed inside Redis by one Lua script on the Redis
server's clock (`TIME`), so the hosts' clocks do not matter. Needs the `redis` extra.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .._errors import OVOError, ValidationError

__all__ = ["RedisRateLimiter"]

# KEYS[1]: the bucket (hash: tokens, ts); KEYS[2]: the gate (resume time).
# ARGV[1]: "acquire" (rate, capacity, n) or "pause" (seconds). Times in microseconds
# of the server's clock. Returns how long to wait before asking again (0: granted).
SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local resume = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[1] == 'pause' then
  local until_ = now + math.floor(tonumber(ARGV[2]) * 1000000)
  if until_ > resume then
    redis.call('SET', KEYS[2], until_, 'PX', math.ceil((until_ - now) / 1000) + 60000)
    resume = until_
  end
  -- The bucket restarts empty when the gate opens: no burst follows a pause.
  redis.call('HSET', KEYS[1], 'tokens', 0, 'ts', resume)
  redis.call('PEXPIRE', KEYS[1], 3600000)
  return 0
end
if resume > now then
  return resume - now
end
local rate = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or capacity)
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate / 1000000)
  ts = now
end
local need = math.min(n, capacity)
local wait = 0
if tokens >= need then
  tokens = tokens - n  -- a take larger than the burst leaves a debt
else
  wait = math.ceil((need - tokens) * 1000000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], 3600000)
return wait
"""


#: Seconds a Redis command (and a connect) may take: a frozen Redis stops the run with an
#: OVOError instead of hanging it (redis-py 5.0 sets no timeout of its own).
DEFAULT_TIMEOUT = 5.0


class _SecretURL:
    """The Redis URL, which may hold a password: no repr, str or vars() shows it."""

    __slots__ = ("__url",)

    def __init__(self, url: str) -> None:
        self.__url = url

    def value(self) -> str:
        return self.__url

    def __repr__(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.__url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"<redis URL {parts.scheme}://{'****@' if parts.password else ''}{host}{port}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Redis URL holder cannot be pickled")


class RedisRateLimiter:
    """A `rate_limiter` for `send_many` shared by every process using `redis_url` and `name`.

    `rate` is messages per second for all of them together; `name` scopes the keys, so
    several campaigns or accounts can share one Redis. `burst` is how many seconds'
    worth may go at once after a lull (default one second): any 1 s window then holds at
    most `rate x (1 + burst)` messages, so a tight fleet-wide ceiling wants a small
    burst, such as 0.1 for "never 10 % over". `charge="segment"` makes `rate` count
    segments instead of messages (`send_many` then takes one token per segment), for
    accounts limited in segments per second. Use it under asyncio.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        rate: float,
        name: str = "ovo",
        burst: float = 1.0,
        charge: str = "message",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise ValidationError("rate", f"must be messages per second, got {rate!r}")
        if not math.isfinite(rate) or rate <= 0:
            raise ValidationError("rate", f"must be a finite number > 0, got {rate!r}")
        if (
            not isinstance(name, str)
            or not 0 < len(name) <= 100
            or not name.isascii()
            or not name.isprintable()
            or " " in name
        ):
            raise ValidationError("name", f"must be 1-100 printable ASCII characters, got {name!r}")
        if not isinstance(redis_url, str) or not redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValidationError("redis_url", "must be a redis://, rediss:// or unix:// URL")
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            raise OVOError(
                "RedisRateLimiter needs the redis extra: pip install 'ovo-async[redis]'"
            ) from None
        if isinstance(burst, bool) or not isinstance(burst, (int, float)):
            raise ValidationError("burst", f"must be seconds' worth, got {burst!r}")
        if not math.isfinite(burst) or not 0 < burst <= 60:
            raise ValidationError("burst", f"must be more than 0 and at most 60, got {burst!r}")
        if charge not in ("message", "segment"):
            raise ValidationError("charge", f'must be "message" or "segment", got {charge!r}')
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or not 0 < timeout <= 3600
        ):
            raise ValidationError("timeout", f"must be seconds, more than 0, got {timeout!r}")
        _check_url(redis_url)
        #: What one token pays for; `send_many` reads it.
        self.charge: str = charge
        self.rate: float = float(rate)
        self.capacity: float = max(self.rate * burst, 1.0)
        self.name: str = name
        self._url = _SecretURL(redis_url)
        self._timeout = float(timeout)
        self._keys = [f"{name}:bucket", f"{name}:gate"]
        # redis.asyncio connections belong to one event loop: one client per loop.
        self._clients: dict[int, tuple[Any, Any]] = {}
        self._pending: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(rate={self.rate:g}, name={self.name!r})"

    def _script(self) -> Any:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            import redis.asyncio

            client = redis.asyncio.Redis.from_url(
                self._url.value(),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            entry = (loop, client.register_script(SCRIPT))
            self._clients = {id(loop): entry}
        return entry[1]

    async def acquire(self, n: int) -> None:
        """Wait for the fleet's gate, then for `n` messages' worth of tokens."""
        if self._pending:  # a pause this process asked for must be in Redis first
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        from redis.exceptions import RedisError

        script = self._script()
        while True:
            try:
                wait_us = int(
                    await script(keys=self._keys, args=["acquire", self.rate, self.capacity, n])
                )
            except RedisError as exc:
                # Not redis-py's own error: the run stops, as for any OVOError, and says why.
                raise OVOError(
                    f"the fleet rate limiter {self.name!r} got no answer from Redis "
                    f"({type(exc).__name__}: {exc}); this request was not sent"
                ) from exc
            if wait_us <= 0:
                return
            await asyncio.sleep(wait_us / 1_000_000)

    def pause(self, seconds: float) -> None:
        """Close the fleet's gate for `seconds` (from a 429's Retry-After)."""
        if not seconds > 0 or not math.isfinite(seconds):
            return
        task = asyncio.get_running_loop().create_task(self._pause(seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _pause(self, seconds: float) -> None:
        await self._script()(keys=self._keys, args=["pause", seconds])


def _check_url(url: str) -> None:
    """A URL redis-py can use, or a `ValidationError` now (not a raw ValueError at the
    first request); the message never shows the URL, which may hold a password."""
    import redis.asyncio

    try:
        redis.asyncio.ConnectionPool.from_url(url)
    except (ValueError, TypeError) as exc:
        reason = str(exc).replace(url, "<the URL>")
        raise ValidationError("redis_url", f"is not a URL redis can use: {reason}") from None
