"""The SDK's own connection pool: httpx transports, sharded, and the opt-in aiohttp I/O.

Why shards: httpcore's pool walks every connection and every waiting request on each
request and response event, so its CPU cost per request grows with the pool. Measured on
loopback, one pool of 100 connections at concurrency 100 cost about 2.5x per request what
a pool at concurrency 10 did; 20 pools of 5 brought concurrency 100 back to the cost of
concurrency 10. `ShardedTransport` keeps each pool small and fills the shards in order,
so sequential use still reuses one connection.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import ssl
import sys
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx

from . import _compat
from ._errors import OVOError

logger = logging.getLogger("ovo_async")

__all__ = ["SHARD_SIZE", "AiohttpIO", "Answer", "CoreAnswer", "NotBuilt", "ShardedTransport"]

#: Connections per shard.
SHARD_SIZE = 5


def _tunnel_failures_not_sent(core: Any) -> None:
    """Make a proxy pool's failures before its tunnel is up say "not sent".

    Through an HTTP proxy, an https request goes out only after CONNECT was answered 2xx
    and TLS was made through the tunnel. httpcore raises what goes wrong before that (the
    proxy hangs up, answers garbage, stalls) as the same errors as a request that went
    out and lost its answer, so the SDK would say the message may have been sent and not
    retry it. Here those become `ProxyError` (or `ConnectTimeout`), which mean not sent.
    """
    import httpcore

    tunnel = _tunnel_class()
    if tunnel is None or not isinstance(core, httpcore.AsyncHTTPProxy):
        return
    plain = tunnel.__base__
    pool: Any = core  # its create_connection is replaced on this one object
    make = pool.create_connection

    def create_connection(origin: Any) -> Any:
        connection = make(origin)
        if type(connection) is plain:
            connection.__class__ = tunnel
        return connection

    pool.create_connection = create_connection


@functools.cache
def _tunnel_class() -> type | None:
    """httpcore's tunnel, raising what fails before it is up as not sent; None for an
    httpcore without one (its errors then stay as they are)."""
    import httpcore

    AsyncTunnelHTTPConnection: Any = _compat.tunnel_connection_class()
    if AsyncTunnelHTTPConnection is None:
        return None

    class Tunnel(AsyncTunnelHTTPConnection):  # type: ignore[misc]
        async def handle_async_request(self, request: Any) -> Any:
            try:
                return await super().handle_async_request(request)
            except (httpcore.ConnectError, httpcore.ConnectTimeout, httpcore.ProxyError):
                raise  # not sent already
            except httpcore.TimeoutException as exc:
                if _compat.tunnel_is_up(self):
                    raise
                raise httpcore.ConnectTimeout(f"the proxy's tunnel timed out: {exc}") from exc
            except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
                if _compat.tunnel_is_up(self):
                    raise
                raise httpcore.ProxyError(
                    f"the proxy failed before the tunnel was up: {str(exc) or type(exc).__name__}"
                ) from exc

    return Tunnel


class _Shard:
    """One small httpx pool and the requests of ours it is serving."""

    __slots__ = ("busy", "suspect", "transport")

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self.transport = transport
        #: Our requests from send until their body is closed.
        self.busy = 0
        #: A request of ours failed or was cancelled here: check for orphans when idle.
        self.suspect = False


class ShardedTransport(httpx.AsyncBaseTransport):
    """Several small httpx connection pools behind one transport.

    A request goes to the first shard with a free connection, else to the least busy.
    Keep-alive equals the maximum in each shard: with fewer, a burst reopens connections.

    A request cancelled while httpcore 1.0.x is opening its connection leaves that
    connection in the pool for good, neither idle, closed nor expired (encode/httpcore
    #1093, #830): 5 such orphans wedge a shard and every later request gets a PoolTimeout.
    A shard where one of our requests failed or was cancelled is avoided until it has
    drained, then replaced if it holds a connection no request of ours is using.

    Under asyncio the shards' connections are `_sockets` streams, not anyio's.
    """

    def __init__(
        self, limits: httpx.Limits, *, shard_size: int = SHARD_SIZE, **kwargs: Any
    ) -> None:
        total = limits.max_connections or 100
        count = max(1, math.ceil(total / shard_size))
        per = max(1, math.ceil(total / count))
        self._shard_limits = httpx.Limits(
            max_connections=per,
            max_keepalive_connections=per,
            keepalive_expiry=limits.keepalive_expiry,
        )
        # One TLS context for all shards: building one loads the CA bundle (~25 ms).
        kwargs.setdefault("verify", default_ssl_context())
        self._kwargs = kwargs
        self._shards = [_Shard(self._new_pool()) for _ in range(count)]
        self._per = per
        self._suspects = 0
        self._core = all(_compat.transport_pool(s.transport) is not None for s in self._shards)

    def _new_pool(self) -> httpx.AsyncHTTPTransport:
        transport = httpx.AsyncHTTPTransport(limits=self._shard_limits, **self._kwargs)
        core: Any = _compat.transport_pool(transport)
        if core is not None:
            from ._sockets import NetworkBackend

            _compat.set_network_backend(core, NetworkBackend())
        if self._kwargs.get("proxy") is not None:
            _tunnel_failures_not_sent(core)
        return transport

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    def _pick(self) -> _Shard:
        per = self._per
        for shard in self._shards:
            if shard.busy < per and not shard.suspect:
                return shard
        healthy = [s for s in self._shards if not s.suspect] or self._shards
        return min(healthy, key=lambda s: s.busy)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._suspects:
            await self._reap()
        shard = self._pick()
        shard.busy += 1
        try:
            response = await shard.transport.handle_async_request(request)
        except BaseException:
            shard.busy -= 1
            self._suspect(shard)
            raise
        # The connection stays ours until the body is read and closed: count it till then.
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_TrackedStream(response.stream, shard, self),
            extensions=response.extensions,
        )

    def direct(self) -> bool:
        """Whether `exchange` may be used: httpx keeps each transport's httpcore pool as
        `_pool` (0.27 and 0.28 do); without it, requests go through httpx's client."""
        return self._core

    async def exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
        key: Any,
    ) -> CoreAnswer:
        """Send one request through a shard; return its answer with the body to be read.

        The SDK's own requests skip httpx's client and transport objects and go to the
        shard's httpcore pool (about a fifth of a call): the SDK sets its key itself,
        follows no redirects and keeps no cookies, and httpcore's errors are raised as
        the httpx errors httpx would raise. `key` (an `APIKey`) goes straight into the
        request, never into a variable of ours.
        """
        if self._suspects:
            await self._reap()
        shard = self._pick()
        pool = _compat.transport_pool(shard.transport)
        import httpcore  # httpx's own dependency, loaded with its transport

        try:
            target, host = _core_target(url)
            request = httpcore.Request(
                method,
                target,
                headers=[
                    *[(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()],
                    (b"Host", host),
                    (b"Authorization", key.bearer().encode("ascii")),
                    *(() if content is None else [(b"Content-Length", b"%d" % len(content))]),
                ],
                content=content,
                extensions={"timeout": timeout.as_dict()},
            )
        except Exception as exc:
            raise NotBuilt(f"{type(exc).__name__}: {exc}") from None
        shard.busy += 1
        try:
            response = await pool.handle_async_request(request)
        except BaseException as exc:
            shard.busy -= 1
            self._suspect(shard)
            if isinstance(exc, Exception):
                raise _as_httpx(exc) from exc
            raise
        return CoreAnswer(response, shard, self)

    async def _finish(
        self, shard: _Shard, pool_stream: Any, close: Callable[[], Awaitable[None]]
    ) -> None:
        """A response of ours is done with: drop its connection if bytes follow the
        response, close it, and free the shard's slot."""
        try:
            state = _h11_state_with_surplus(pool_stream)
            if state is not None:
                logger.warning("server sent data after a complete response; connection dropped")
                # h11's public way to mark the connection broken: httpcore then closes it
                # instead of returning it to the pool.
                state.send_failed()
            await close()
        except BaseException:
            self._suspect(shard)
            raise
        finally:
            shard.busy -= 1

    def _suspect(self, shard: _Shard) -> None:
        if not shard.suspect:
            shard.suspect = True
            self._suspects += 1

    async def _reap(self) -> None:
        for i, shard in enumerate(self._shards):
            if not shard.suspect or shard.busy:
                continue
            shard.suspect = False
            self._suspects -= 1
            if _has_orphans(shard.transport):
                self._shards[i] = _Shard(self._new_pool())
                import anyio  # only here: the rare path

                with anyio.CancelScope(shield=True):
                    await shard.transport.aclose()

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.transport.aclose()


class NotBuilt(Exception):
    """The request could not be made (a header or URL that cannot go on the wire):
    nothing was sent."""


@functools.lru_cache(maxsize=256)
def _core_target(url: str) -> tuple[Any, bytes]:
    """httpcore's URL for `url`, and its Host header (as httpx would write them).

    Cached: parsing costs more than the rest of building a request, and an SDK sends to
    a handful of URLs (retrieve's vary, hence the bound)."""
    import httpcore

    parsed = httpx.URL(url)
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    return target, parsed.netloc


def _as_httpx(exc: Exception) -> Exception:
    """An httpcore error as the httpx error of the same name, as httpx's transport
    raises it (its fate depends on which); anything else as it is."""
    for cls in type(exc).__mro__:
        if not cls.__module__.startswith("httpcore"):
            continue
        mapped = getattr(httpx, cls.__name__, None)
        if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
            return mapped(str(exc))
    return exc


class Headers(dict[str, str]):
    """A response's headers: lower-case names, looked up in any case (as httpx's are);
    a header sent more than once is its values joined with ", "."""

    __slots__ = ()

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for name, value in items:
            key = name.lower()
            old = dict.get(self, key)
            dict.__setitem__(self, key, value if old is None else f"{old}, {value}")

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower() if isinstance(name, str) else name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dict.__contains__(self, name.lower())


class Answer(Protocol):
    """What `exchange` returns, on either I/O path: status, reason and headers, and the
    body as raw chunks to read to the end, then `release()` (or `close()` on failure)."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    async def release(self) -> None: ...
    async def close(self) -> None: ...


class CoreAnswer:
    """A response from a shard's httpcore pool, with its body still to be read.

    Read `chunks()` (raw, still encoded) to the end, then `release()`, or `close()`:
    either frees the shard's slot, and a connection holding bytes past the response is
    dropped rather than reused.
    """

    __slots__ = ("_owner", "_response", "_shard", "headers", "reason", "status")

    def __init__(self, response: Any, shard: _Shard, owner: ShardedTransport) -> None:
        self._response = response
        self._shard: _Shard | None = shard
        self._owner = owner
        self.status: int = response.status
        phrase = response.extensions.get("reason_phrase")
        #: None when the transport gave none (a mock): httpx then uses the standard one.
        self.reason: str | None = None if phrase is None else phrase.decode("latin-1")
        self.headers = Headers(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers
        )

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.stream:
                yield chunk
        except Exception as exc:
            raise _as_httpx(exc) from exc

    async def release(self) -> None:
        """Give the connection back (after reading to the end; otherwise it is closed)."""
        shard, self._shard = self._shard, None
        if shard is not None:
            await self._owner._finish(shard, self._response.stream, self._response.aclose)

    close = release


def _has_orphans(transport: httpx.AsyncHTTPTransport) -> bool:
    """Whether an idle shard still holds a connection that is neither idle nor closed."""
    pool = _compat.transport_pool(transport)
    connections = getattr(pool, "connections", ())
    return any(not (c.is_idle() or c.is_closed() or c.has_expired()) for c in connections)


def _h11_state_with_surplus(pool_stream: Any) -> Any:
    """The h11 state of a finished HTTP/1.1 response whose connection holds unread bytes.

    A server that writes more than one answer (or junk) after a response leaves the bytes
    in h11's buffer, and httpcore 1.0.x would read them as the answer to the next request
    on that connection: a POST would get another request's receipt. httpcore's own check
    (`has_expired`, socket readable) misses bytes that arrived with the response.
    """
    state = _compat.h11_state(pool_stream)
    if state is None:
        return None
    import h11  # only with httpcore's HTTP/1.1, which brings it

    if state.their_state is not h11.DONE:
        return None  # body left unread (a cap, an error): httpcore closes it anyway
    trailing = state.trailing_data
    return state if trailing and trailing[0] else None


class _TrackedStream(httpx.AsyncByteStream):
    """A shard's response body: frees the shard's slot when closed, drops a dirty connection."""

    def __init__(self, stream: Any, shard: _Shard, owner: ShardedTransport) -> None:
        self._stream = stream
        self._shard: _Shard | None = shard
        self._owner = owner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        shard, self._shard = self._shard, None
        if shard is not None:
            pool_stream = _compat.httpcore_stream(self._stream)
            await self._owner._finish(shard, pool_stream, self._stream.aclose)


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


def _header_deadline(request: httpx.Request) -> float | None:
    """Seconds for sending a request and getting its response headers, over every phase.

    aiohttp has no write timeout: a server that stops reading would hang a large POST
    forever. No phase may take longer than its own timeout, so their sum bounds them all.
    """
    timeout = request.extensions.get("timeout", {})
    parts = [timeout.get(k) for k in ("pool", "connect", "write", "read")]
    if timeout.get("write") is None or any(p is None for p in parts):
        return None
    return float(sum(parts))


def _map_aiohttp(exc: BaseException) -> httpx.TransportError | None:
    """An aiohttp failure as the httpx error that tells its fate (None: not aiohttp's).

    Only connector errors mean "never connected"; a server that hung up after the request
    went out is a read error, so a POST is never taken for unsent.
    """
    import asyncio

    import aiohttp

    message = str(exc) or type(exc).__name__
    connect_timeout = getattr(aiohttp, "ConnectionTimeoutError", ())
    if connect_timeout and isinstance(exc, connect_timeout):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(message)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return httpx.ReadTimeout(message)
    if isinstance(exc, asyncio.IncompleteReadError):  # the body ended short
        return httpx.ReadError(message)
    invalid_url = tuple(
        getattr(aiohttp, name)
        for name in ("InvalidUrlClientError", "NonHttpUrlClientError")
        if hasattr(aiohttp, name)
    )
    if invalid_url and isinstance(exc, invalid_url):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return httpx.ReadError(message)
    return None


class _WriteLimit:
    """The write timeout of one request body on aiohttp, which has none: armed when the
    body's write starts, disarmed when it ends; if it fires, the request's task is
    cancelled and the cancel becomes `httpx.WriteTimeout`."""

    __slots__ = ("_handle", "fired", "seconds", "task")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.task: Any = None
        self.fired = False
        self._handle: Any = None

    def arm(self) -> None:
        import asyncio

        if self._handle is None and self.task is not None:
            self._handle = asyncio.get_running_loop().call_later(self.seconds, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self.task.cancel()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.task = None  # a write that ends later cancels nothing


def _timed_body(content: bytes, limit: _WriteLimit) -> Any:
    """`content` as an aiohttp payload whose write runs under `limit` (aiohttp's public
    `BytesPayload`, with the type the SDK sends)."""
    from aiohttp.payload import BytesPayload

    class TimedBody(BytesPayload):
        async def write(self, writer: Any) -> None:
            limit.arm()
            try:
                await super().write(writer)
            finally:
                limit.disarm()

        async def write_with_length(self, writer: Any, content_length: int | None) -> None:
            limit.arm()
            try:
                await super().write_with_length(writer, content_length)
            finally:
                limit.disarm()

    return TimedBody(content, content_type="application/json")


def _uncancel(task: Any) -> None:
    """Take back the cancel the write limit sent (3.11+ counts cancels; 3.10 does not)."""
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


class RawAnswer:
    """A response straight from aiohttp: status, headers, and its body as raw chunks.

    Read `chunks()` to the end, then `release()` (or `close()` on failure).
    """

    __slots__ = ("_response", "headers", "reason", "status")

    def __init__(self, response: Any) -> None:
        self._response = response
        self.status: int = response.status
        self.reason: str = response.reason or ""
        self.headers = Headers(response.headers.items())

    async def chunks(self) -> AsyncIterator[bytes]:
        response = self._response
        try:
            length = response.content_length
            if length is not None and length <= 65536:
                # A small body of known size, as nearly every answer is: one read.
                yield await response.content.readexactly(length)
                return
            async for chunk in response.content.iter_chunked(65536):
                yield chunk
        except Exception as exc:
            mapped = _map_aiohttp(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def release(self) -> None:
        self._response.release()

    async def close(self) -> None:
        self._response.close()


class AiohttpIO(httpx.AsyncBaseTransport):
    """aiohttp's faster I/O under asyncio (the `aiohttp` extra); httpx's own under trio.

    The SDK's own requests go through `exchange`, straight to aiohttp without httpx's
    request and response objects (a third of the cost of a call); anything else that
    reaches it as an httpx transport still works. Never behind a proxy: the client gives
    a proxy to `ShardedTransport` whatever the io_backend.
    """

    def __init__(self, limits: httpx.Limits, *, verify: ssl.SSLContext | None = None) -> None:
        from httpx_aiohttp import AiohttpTransport

        tls = verify if verify is not None else default_ssl_context()
        self._aiohttp = AiohttpTransport(limits=limits, verify=tls)
        self._fallback = ShardedTransport(limits, verify=tls)
        self._timeouts: dict[tuple[float | None, ...], Any] = {}

    def direct(self) -> bool:
        """Whether `exchange` may be used now (under asyncio)."""
        # An asyncio loop running in this thread: what sniffio would find, at a tenth of
        # its cost (trio runs no asyncio loop).
        return _asyncio_running() is not None

    async def exchange(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
        key: Any,
    ) -> RawAnswer:
        """Send one request; return its answer with the body still to be read.

        Timeouts per phase as httpx's: pool, connect and read through aiohttp's own,
        write by `_WriteLimit` (aiohttp has none), each on its own, never their sum.
        Failures are raised as the httpx errors that tell their fate.
        """
        import asyncio

        import aiohttp

        transport = self._aiohttp
        session = transport.client
        if not isinstance(session, aiohttp.ClientSession):
            session = transport.client = transport.get_client()
        phases = (timeout.pool, timeout.connect, timeout.write, timeout.read)
        limits = self._timeouts.get(phases)
        if limits is None:
            limits = aiohttp.ClientTimeout(
                sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
            )
            if len(self._timeouts) < 64:  # a client uses one or a few
                self._timeouts[phases] = limits
        write_limit = (
            _WriteLimit(timeout.write)
            if timeout.write is not None and content is not None
            else None
        )
        request = session.request(
            method,
            url,
            # Inline: no frame of ours holds the key in a plain dict (tracebacks with
            # locals would show it).
            headers={**headers, "Authorization": key.bearer()},
            data=content if write_limit is None else _timed_body(content or b"", write_limit),
            allow_redirects=False,
            auto_decompress=False,
            compress=False,
            timeout=limits,
        )
        try:
            if write_limit is None:
                response = await request
            else:
                # aiohttp bounds the pool and the connect (`connect`, `sock_connect`) and
                # the answer (`sock_read`, from the end of the body on); the body's own
                # write is bounded here, from its first byte to its last.
                task = write_limit.task = asyncio.current_task()
                try:
                    response = await request
                except asyncio.CancelledError:
                    if not write_limit.fired:
                        raise
                    _uncancel(task)
                    raise httpx.WriteTimeout(
                        f"the request body was not sent within the write timeout "
                        f"({timeout.write:g} s): the server stopped reading"
                    ) from None
                finally:
                    write_limit.disarm()
        except httpx.TransportError:
            raise
        except Exception as exc:
            mapped = _map_aiohttp(exc)
            if mapped is None:
                raise
            raise mapped from exc
        return RawAnswer(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import sniffio  # here: only httpx-client use of this transport asks

        if sniffio.current_async_library() != "asyncio":
            return await self._fallback.handle_async_request(request)
        import asyncio

        deadline = _header_deadline(request)
        try:
            if deadline is None:
                return await self._aiohttp.handle_async_request(request)
            try:
                return await asyncio.wait_for(self._aiohttp.handle_async_request(request), deadline)
            except asyncio.TimeoutError:
                raise httpx.WriteTimeout(
                    f"no answer within {deadline:g} s (connect + write + read timeouts)",
                    request=request,
                ) from None
        except httpx.TransportError as exc:
            raise _aiohttp_error(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._aiohttp.aclose()
        await self._fallback.aclose()


class Pool:
    """The `httpx.AsyncClient` shared by a client and the clients made by `with_options`.

    It belongs to one process and one event loop. After `os.fork()`, or once the loop it
    served has closed (a second `asyncio.run()`), an SDK-made pool starts over with new
    connections; the old ones are dropped, never closed, since after fork they are the
    parent's. A pool on a caller's `http_client` or `transport` cannot be rebuilt, so in
    a forked child it refuses to send. Only the client that made the pool closes it; a
    caller's `http_client` is never closed.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        owned: bool,
        rebuild: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        _compat.check_versions()
        self.http: httpx.AsyncClient = http
        self.owned: bool = owned
        self.closed: bool = False
        self._rebuild = rebuild
        self._pid = os.getpid()
        self._loop: Any = None
        #: Closes the connections of the run in use when it ends (see `_bind`).
        self._watcher: AsyncGenerator[None, None] | None = None

    def client(self) -> httpx.AsyncClient:
        """The httpx client for this process and the running event loop."""
        if self._pid != os.getpid():
            self._after_fork()
        loop = current_loop()
        if loop is not self._loop and loop is not None:
            self._bind(loop)
        return self.http

    def _after_fork(self) -> None:
        if self._rebuild is None:
            raise OVOError(
                "this client was built on your own http_client or transport before fork(): "
                "its connections belong to the parent process, so nothing was sent. Build "
                "the client after fork (for example in Celery's worker_process_init signal), "
                "or let the SDK own the pool (verify=, cert= and proxy= cover TLS and proxies)"
            )
        self.http = self._rebuild()
        self._pid = os.getpid()
        self._loop = None

    def _bind(self, loop: Any) -> None:
        old = self._loop
        self._loop = loop
        if self._rebuild is None:
            return
        if old is not None:
            if isinstance(old, asyncio_loop_type()) and old.is_running() and not old.is_closed():
                self._loop = old
                raise OVOError(
                    "this AsyncOVOClient is in use on another running event loop; "
                    "make one client per event loop"
                )
            # The loop it served has finished, and its connections with it.
            self.http = self._rebuild()
        self._watcher = _close_at_end_of_run(self)

    def _run_ended(self, http: httpx.AsyncClient) -> bool:
        """The run this pool served is ending: whether to close `http` (still ours, and
        not closed); the next call, on another loop, builds a new one."""
        if self.closed or http is not self.http:
            return False
        self._loop = _RUN_ENDED
        return True

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            # Finished now, not dropped unfinished (which trio reports as a leak).
            await watcher.aclose()
        if not self.owned or self._pid != os.getpid():
            return  # a caller's client, or the parent's connections after fork
        bound = self._loop
        if isinstance(bound, asyncio_loop_type()) and bound.is_closed():
            return  # its connections died with their loop; nothing can close them now
        await self.http.aclose()


#: Where a pool's loop was when its run ended (never a running loop's identity).
_RUN_ENDED = object()


def _close_at_end_of_run(pool: Pool) -> AsyncGenerator[None, None] | None:
    """Close `pool`'s connections when the running `asyncio.run()` or `trio.run()` ends.

    Both end a run by closing the async generators it started, while the loop still
    runs: the only moment its connections can be closed. Left open, they would be
    dropped with the loop and closed by the garbage collector, with a warning. Returns
    the generator, for the pool to keep (the loop holds it weakly), or None when no loop
    finalises async generators here.
    """
    if sys.get_asyncgen_hooks().finalizer is None:
        return None
    watcher = _watch(weakref.ref(pool), pool.http)
    with contextlib.suppress(StopIteration):  # how a step to its `yield` ends
        watcher.asend(None).send(None)  # the loop now knows it
    return watcher


async def _watch(
    pool_ref: weakref.ReferenceType[Pool], http: httpx.AsyncClient
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        pool = pool_ref()
        # A pool dropped without `aclose()` leaves its connections to this, too.
        if pool is None or pool._run_ended(http):
            await http.aclose()


_get_running_loop: Callable[[], Any] | None = None


def _asyncio_running() -> Any:
    """The running asyncio loop of this thread, or None."""
    global _get_running_loop
    if _get_running_loop is None:
        import asyncio  # on first use: `import ovo_async` does not load asyncio

        _get_running_loop = asyncio.events._get_running_loop
    return _get_running_loop()


def current_loop() -> Any:
    """What identifies the running event loop: the asyncio loop, or trio's run token."""
    loop = _asyncio_running()
    if loop is None and "trio" in sys.modules:
        import trio

        try:
            loop = trio.lowlevel.current_trio_token()
        except RuntimeError:
            loop = None
    return loop


def asyncio_loop_type() -> type[Any]:
    import asyncio

    return asyncio.AbstractEventLoop
