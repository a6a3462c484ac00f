"""httpcore's network streams on asyncio's own transports: the default backend's I/O.

httpcore's stock backend goes through anyio: each read and write opens a cancel scope
with a deadline, and each check that an idle connection is still usable rebuilds a dict
of socket attributes and asks the kernel for the peer's address. Under asyncio the SDK's
pools use these streams instead: a protocol buffers what arrives, and deadlines are timer
callbacks. Under trio (or any other library) the stock backend serves.

Failures are httpcore's exceptions, as the stock backend raises them, because the SDK
decides a request's fate from them: `ConnectError`/`ConnectTimeout` (nothing was sent),
`WriteError`/`WriteTimeout` and `ReadError`/`ReadTimeout`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpcore

from ._compat import is_socket_readable  # poll(), or select() on Windows

__all__ = ["NetworkBackend"]

T = TypeVar("T")

#: A timer's answer to a waiting read or write (any other answer means "go on").
_TIMED_OUT = object()
#: Bytes held unread before the socket stops being read (asyncio's own default limit
#: for streams is 64 KiB; a batch answer is a few tens of KiB).
_HIGH_WATER = 256 * 1024


class NetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects with asyncio streams under asyncio, with httpcore's stock backend under
    anything else (trio)."""

    def __init__(self) -> None:
        self._other: httpcore.AsyncNetworkBackend | None = None

    def _fallback(self) -> httpcore.AsyncNetworkBackend:
        other = self._other
        if other is None:
            # httpcore's public anyio backend (trio's streams under trio); httpcore types
            # it as possibly None, for an install without anyio, which httpx requires.
            backend: Any = httpcore.AnyIOBackend
            other = self._other = backend()
        return other

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return await self._fallback().connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        protocol = _Protocol(loop)
        options: dict[str, Any] = {}
        if isinstance(loop, asyncio.BaseEventLoop):  # uvloop's takes no such argument
            # As anyio's: the next address gets a try after 250 ms, not after the first
            # has timed out (an IPv6 route that drops packets).
            options["happy_eyeballs_delay"] = 0.25
        try:
            transport, _ = await _bounded(
                loop.create_connection(
                    lambda: protocol,
                    host,
                    port,
                    local_addr=None if local_address is None else (local_address, 0),
                    **options,
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        stream = AsyncioStream(transport, protocol)
        try:
            sock = transport.get_extra_info("socket")
            for option in socket_options or ():
                sock.setsockopt(*option)
        except OSError as exc:
            transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._fallback().connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            await self._fallback().sleep(seconds)
        else:
            await asyncio.sleep(seconds)


class _Protocol(asyncio.Protocol):
    """What one connection has received, and whether it may be written to."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: Any = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.eof = False
        self.error: BaseException | None = None
        self.reading = True
        self.paused = False
        #: A read waiting for data, or a write waiting for the buffer to drain.
        self.waiter: asyncio.Future[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _HIGH_WATER and self.reading:
            # Nobody is reading: stop taking more into memory until somebody does.
            self.reading = False
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # the transport closes: nothing will be written after a response

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float | None) -> bool:
        """Until woken (True) or the loop's clock passes `deadline` (False)."""
        waiter = self.waiter = self.loop.create_future()
        timer = None if deadline is None else self.loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter is not _TIMED_OUT
        finally:
            self.waiter = None
            if timer is not None:
                timer.cancel()


if sys.version_info >= (3, 11):

    async def _bounded(awaitable: Awaitable[T], timeout: float | None) -> T:
        """`awaitable`, cancelled after `timeout` seconds (`asyncio.TimeoutError`).

        `asyncio.timeout`, not 3.11's `wait_for`: that one runs the connect in a task
        of its own, and a cancel that arrives as the connect finishes can be swallowed
        (python/cpython#86296), so a call its caller cancelled would go on to send.
        """
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # 3.10: the same, by hand (no Task.uncancel to tell our cancel from another)

    async def _bounded(awaitable: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await awaitable
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if expired:
                raise asyncio.TimeoutError from None
            raise
        finally:
            timer.cancel()


def _deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    return None if timeout is None else loop.time() + timeout


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(_TIMED_OUT)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection, plain or TLS, as httpcore reads and writes it."""

    def __init__(self, transport: Any, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.eof:
            deadline = _deadline(protocol.loop, timeout)
            # Woken by something else (the write side draining): wait on, to the deadline.
            while not protocol.chunks and not protocol.eof:
                if not await protocol.wait(deadline):
                    raise httpcore.ReadTimeout("timed out reading the response")
        chunks = protocol.chunks
        if chunks:
            data = chunks.popleft()
            if len(data) > max_bytes:
                chunks.appendleft(data[max_bytes:])
                data = data[:max_bytes]
            protocol.buffered -= len(data)
            if not protocol.reading and protocol.buffered <= _HIGH_WATER // 2:
                protocol.reading = True
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.error is not None or self._transport.is_closing():
            error = protocol.error
            raise httpcore.WriteError(str(error) if error else "the connection is closed")
        try:
            self._transport.write(buffer)
        except (OSError, RuntimeError) as exc:
            raise httpcore.WriteError(str(exc)) from exc
        # Wait only while the buffer is over its high-water mark, as asyncio's drain.
        deadline = _deadline(protocol.loop, timeout) if protocol.paused else None
        while protocol.paused:
            if protocol.error is not None or self._transport.is_closing():
                raise httpcore.WriteError(str(protocol.error or "the connection is closed"))
            if not await protocol.wait(deadline):
                raise httpcore.WriteTimeout("timed out sending the request")

    async def aclose(self) -> None:
        # At once, as anyio's streams under httpcore do: a TLS close would wait for the
        # server's close_notify, and a run ending meanwhile leaves the socket open.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = self._protocol.loop
        try:
            transport = await _bounded(
                loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        except BaseException:  # cancelled: httpcore never got a stream to close
            self._transport.abort()
            raise
        if transport is None:  # the connection was closed during the handshake
            raise httpcore.ConnectError("the connection was closed in the TLS handshake")
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "is_readable":
            # On an idle connection anything to read (or a close) means it is unusable.
            protocol = self._protocol
            # Else ask the kernel: a close may have come since the loop last looked.
            return (
                protocol.eof
                or bool(protocol.chunks)
                or is_socket_readable()(transport.get_extra_info("socket"))
            )
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        return None
