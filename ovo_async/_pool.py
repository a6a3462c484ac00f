"""The SDK's own connection pool: httpx transports, sharded, and the opt-in aiohttp I/O.

Why shards: httpcore's pool walks every connection and every waiting request on each
request and response event, so its CPU cost per request grows with the pool. Measured on
loopback, one pool of 100 connections at concurrency 100 cost about 2.5x per request what
a pool at concurrency 10 did; 20 pools of 5 brought concurrency 100 back to the cost of
concurrency 10. `ShardedTransport` keeps each pool small and fills the shards in order,
so sequential use still reuses one connection.
"""

from __future__ import annotations

import functools
import math
import ssl
from typing import Any

import httpx
import sniffio

__all__ = ["SHARD_SIZE", "AiohttpIO", "ShardedTransport"]

#: Connections per shard.
SHARD_SIZE = 5


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several small httpx connection pools behind one transport.

    A request goes to the first shard with a free connection, else to the least busy.
    Keep-alive equals the maximum in each shard: with fewer, a burst reopens connections.
    """

    def __init__(
        self, limits: httpx.Limits, *, shard_size: int = SHARD_SIZE, **kwargs: Any
    ) -> None:
        total = limits.max_connections or 100
        count = max(1, math.ceil(total / shard_size))
        per = max(1, math.ceil(total / count))
        shard_limits = httpx.Limits(
            max_connections=per,
            max_keepalive_connections=per,
            keepalive_expiry=limits.keepalive_expiry,
        )
        # One TLS context for all shards: building one loads the CA bundle (~25 ms).
        kwargs.setdefault("verify", default_ssl_context())
        self._shards = [
            httpx.AsyncHTTPTransport(limits=shard_limits, **kwargs) for _ in range(count)
        ]
        self._busy = [0] * count
        self._per = per

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def _pick(self) -> int:
        busy, per = self._busy, self._per
        for i, n in enumerate(busy):
            if n < per:
                return i
        return min(range(len(busy)), key=busy.__getitem__)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = self._pick()
        self._busy[i] += 1
        try:
            response = await self._shards[i].handle_async_request(request)
            # The connection is busy until its body is read; the client reads it at once.
            await response.aread()
            return response
        finally:
            self._busy[i] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """httpx's default verifying TLS context, built once per process and shared."""
    return httpx.create_ssl_context()


def _aiohttp_error(exc: httpx.TransportError) -> httpx.TransportError:
    """Re-map httpx-aiohttp's errors where it gets the request's fate wrong.

    It maps every aiohttp connection error, including a server that disconnected after
    the request was sent, to `ConnectTimeout` ("never connected"), which would make a POST
    look safe to retry: an SMS sent twice. Only connector errors mean "never connected".
    """
    import aiohttp

    cause = exc.__cause__
    request = exc._request
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(str(exc), request=request)
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", ())
    if connect_timeout and isinstance(cause, connect_timeout):
        return httpx.ConnectTimeout(str(exc), request=request)
    if isinstance(cause, (aiohttp.ServerTimeoutError, TimeoutError)):
        return httpx.ReadTimeout(str(exc), request=request)
    if isinstance(cause, aiohttp.ClientError) and isinstance(
        exc, (httpx.ConnectTimeout, httpx.ConnectError)
    ):
        return httpx.ReadError(str(exc) or type(cause).__name__, request=request)
    return exc


class AiohttpIO(httpx.AsyncBaseTransport):
    """aiohttp's faster I/O under asyncio (the `aiohttp` extra); httpx's own under trio."""

    def __init__(self, limits: httpx.Limits) -> None:
        from httpx_aiohttp import AiohttpTransport

        self._aiohttp = AiohttpTransport(limits=limits, verify=default_ssl_context())
        self._fallback = ShardedTransport(limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if sniffio.current_async_library() != "asyncio":
            return await self._fallback.handle_async_request(request)
        try:
            response = await self._aiohttp.handle_async_request(request)
            await response.aread()
            return response
        except httpx.TransportError as exc:
            raise _aiohttp_error(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._aiohttp.aclose()
        await self._fallback.aclose()
