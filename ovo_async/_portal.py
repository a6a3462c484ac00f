"""Runs the async client for blocking callers: one event-loop thread per `OVOClient`.

The generated sync classes (`ovo_async/_sync/`) call `SyncCore.run` with a function of the
`AsyncOVOClient`; it runs on an anyio `BlockingPortal` in a daemon thread of its own,
started on first use. Traps handled here, each measured:

- an idle portal thread must not keep the interpreter alive at exit (daemon thread, and
  an atexit hook that stops it cleanly);
- after `os.fork()` the inherited loop thread does not exist in the child: a new thread
  and a new connection pool are made there;
- Ctrl-C while waiting cancels the async call before `KeyboardInterrupt` propagates;
- calls from many threads share one portal safely.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import queue
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import sniffio
from anyio.from_thread import BlockingPortal

from ._errors import OVOError

if TYPE_CHECKING:
    from ._client import AsyncOVOClient

__all__ = ["PortalRunner", "SyncCore", "SyncIterator"]

logger = logging.getLogger("ovo_async")

T = TypeVar("T")
A = TypeVar("A", bound=AsyncIterator[Any])
W = TypeVar("W")

#: How long close() and interpreter exit wait for the loop thread to finish.
STOP_TIMEOUT = 5.0
#: How long an interrupted call waits for its cancelled task to finish.
CANCEL_TIMEOUT = 2.0

_runners: weakref.WeakSet[PortalRunner] = weakref.WeakSet()
_warned_inside_loop = False


def _stop_all_at_exit() -> None:
    for runner in list(_runners):
        runner.stop()


atexit.register(_stop_all_at_exit)


class PortalRunner:
    """One event-loop thread with a `BlockingPortal`, started lazily, rebuilt after fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.closed = False

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread, if running."""
        return self._thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop of the portal thread, started if need be."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid() and not self.closed:
            return loop  # the common case, without taking the lock
        self.portal()
        assert self._loop is not None
        return self._loop

    def portal(self) -> BlockingPortal:
        with self._lock:
            if self.closed:
                raise OVOError("this client is closed; make a new one (or use `with`)")
            if self._pid != os.getpid():
                # The parent's loop thread was not copied by fork(): start our own.
                self._portal = self._thread = self._loop = None
                self._pid = os.getpid()
            if self._portal is None:
                self._start()
            assert self._portal is not None
            return self._portal

    def _start(self) -> None:
        ready: queue.Queue[BlockingPortal | BaseException] = queue.Queue(1)

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._loop = asyncio.get_running_loop()
                ready.put(portal)
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # pragma: no cover - start-up failure
                ready.put(exc)

        thread = threading.Thread(target=main, name="ovo-async-portal", daemon=True)
        thread.start()
        started = ready.get()
        if isinstance(started, BaseException):  # pragma: no cover
            raise OVOError(f"could not start the event-loop thread: {started!r}")
        self._portal, self._thread = started, thread
        _runners.add(self)

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def stop(self, *, close: bool = False) -> None:
        """Stop the loop thread and wait for it; with `close`, refuse later calls."""
        with self._lock:
            portal, thread = self._portal, self._thread
            self._portal = self._thread = self._loop = None
            self.closed = self.closed or close
            same_process = self._pid == os.getpid()
        if portal is None or thread is None or not same_process:
            return
        with contextlib.suppress(Exception):  # the loop may already have ended
            portal.call(portal.stop, True)
        thread.join(STOP_TIMEOUT)


def _warn_if_inside_event_loop() -> None:
    global _warned_inside_loop
    if _warned_inside_loop:
        return
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    _warned_inside_loop = True
    logger.warning(
        "OVOClient called from inside a running event loop: it blocks this loop for "
        "the whole call. Use AsyncOVOClient in async code."
    )


class SyncCore:
    """The async client a sync facade drives, and the runner it drives it on."""

    def __init__(
        self, client: AsyncOVOClient, runner: PortalRunner | None = None, *, owner: bool = True
    ) -> None:
        self.client = client
        self.runner = runner if runner is not None else PortalRunner()
        self.owner = owner
        self._pid = os.getpid()

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.runner.in_loop_thread():
            raise OVOError(
                "OVOClient was called from its own event-loop thread; use AsyncOVOClient there"
            )
        _warn_if_inside_event_loop()
        if self.client.is_closed:
            raise OVOError("this client is closed; make a new one (or use `with`)")
        loop = self.runner.loop()
        if self._pid != os.getpid():
            # Sockets inherited across fork() belong to the parent: take a new pool.
            self.client = self.client._fresh_copy()
            self._pid = os.getpid()
        return loop

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn()` on the loop; if this thread is interrupted, cancel it first."""
        loop = self._loop()
        finished = threading.Event()

        async def invoke() -> T:
            try:
                return await fn()
            finally:
                finished.set()

        # Straight onto the portal's loop: the portal's own task machinery cost about
        # 100 us more per call; cancelling this future cancels the task just the same.
        future: Future[T] = asyncio.run_coroutine_threadsafe(invoke(), loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                # Ctrl-C (or another signal) arrived while waiting: do not leave the call
                # running in the background, which could still send the SMS.
                future.cancel()
                finished.wait(CANCEL_TIMEOUT)
            raise

    def run(self, fn: Callable[[AsyncOVOClient], Awaitable[T]]) -> T:
        """Run `fn(async_client)` on the loop and return its result."""
        return self.call(lambda: fn(self.client))

    def iterate(
        self,
        fn: Callable[[AsyncOVOClient], A],
        wrapper: Callable[[SyncCore, A], W],
    ) -> W:
        """`wrapper(self, fn(async_client))`: a blocking iterator over an async one."""
        self._loop()
        return wrapper(self, fn(self.client))

    def derive(self, fn: Callable[[AsyncOVOClient], AsyncOVOClient]) -> SyncCore:
        """A core for a derived client (`with_options`) on the same loop thread."""
        return SyncCore(fn(self.client), self.runner, owner=False)

    def check_open(self) -> None:
        if self.client.is_closed or self.runner.closed:
            raise OVOError("this client is closed; make a new one")

    def close(self) -> None:
        """Close the async client, then stop the loop thread if this core owns it."""
        if self.runner.closed:
            return
        if not self.client.is_closed:
            with contextlib.suppress(OVOError):
                self.call(self.client.aclose)
        if self.owner:
            self.runner.stop(close=True)


class SyncIterator(Generic[T]):
    """A blocking iterator driving an async iterator on the loop thread.

    Use it in a `with` block, or call `close()`, to stop the async side as soon as you
    stop iterating.
    """

    def __init__(self, core: SyncCore, source: AsyncIterator[T]) -> None:
        self._core = core
        self._source = source
        self._done = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            return self._core.call(self._source.__anext__)
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def close(self) -> None:
        """Stop the async iterator (and any work it started). Safe to repeat."""
        if self._done:
            return
        self._done = True
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            self._core.call(aclose)

    def __enter__(self) -> SyncIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
