"""The sync facade's runtime: one event-loop thread per process, shared by every OVOClient.

The generated sync classes (`ovo_async/_sync/`) call `SyncCore.run` with a function of
the `AsyncOVOClient`; it runs on the process's one event loop, an anyio `BlockingPortal`
in a daemon thread started on first use. Everything about threads, fork and exit lives
here:

- 20 clients made and dropped share one thread; a client dropped without `close()`
  hands its pool to the loop to close when it is garbage-collected (a finalizer never
  blocks: it may run on any thread, the loop's own included);
- after `os.fork()` the child starts its own thread on first use (the pools rebuild
  their own connections, see `Pool`);
- at interpreter exit every pool still open is closed on the loop, then the thread
  stops, so nothing is left for aiohttp or asyncio to complain about;
- Ctrl-C while waiting cancels the async call before `KeyboardInterrupt` propagates;
- a call racing `close()` from another thread gets an `OVOError`, never a raw
  `CancelledError`;
- the blocking `send_many` reads the caller's iterable on the caller's thread, so a
  sqlite cursor or a thread-bound session works as a source.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._defaults import PICKLE_REFUSAL
from ._errors import OVOError

if TYPE_CHECKING:
    import asyncio
    import concurrent.futures
    import queue

    from anyio.from_thread import BlockingPortal

    from ._bulk import AsyncBulkRun, BulkProgress
    from ._client import AsyncOVOClient
    from ._pool import Pool
    from .models import BulkOutcome

__all__ = ["RUNTIME", "BulkRun", "Runtime", "SyncCore", "SyncIterator"]

logger = logging.getLogger("ovo_async")

T = TypeVar("T")
A = TypeVar("A", bound=AsyncIterator[Any])
W = TypeVar("W")

#: How long interpreter exit waits for pools to close and the loop thread to finish.
STOP_TIMEOUT = 5.0
#: How long an interrupted call waits for its cancelled task to finish.
CANCEL_TIMEOUT = 2.0

_CLOSED = "this client is closed; make a new one (or use `with`)"
_warned_inside_loop = False


def _asyncio() -> Any:
    # asyncio costs ~15 ms to import: `from ovo_async import OVOClient` should not pay it
    # until the first call starts the loop thread.
    import asyncio

    return asyncio


class Runtime:
    """The process's one event-loop thread, started lazily and rebuilt after fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        #: Pools used through the facade: closed at exit if their clients were not.
        self._pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        #: Closes started by finalizers, awaited at exit.
        self._closing: set[concurrent.futures.Future[None]] = set()
        self.shut_down = False

    @property
    def thread(self) -> threading.Thread | None:
        """The loop thread of this process, if running."""
        return self._thread if self._pid == os.getpid() else None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop of the runtime thread, started if need be."""
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop  # the common case, without taking the lock
        with self._lock:
            if self.shut_down:
                raise OVOError("the interpreter is exiting: ovo-async sends nothing more")
            if self._pid != os.getpid():
                # The parent's loop thread was not copied by fork(): start our own.
                self._portal = self._thread = self._loop = None
                self._pools = weakref.WeakSet()
                self._closing = set()
                self._pid = os.getpid()
            if self._loop is None:
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        import queue  # here: `from ovo_async import OVOClient` need not load it

        import anyio
        from anyio.from_thread import BlockingPortal

        ready: queue.Queue[BlockingPortal | BaseException] = queue.Queue(1)

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._loop = _asyncio().get_running_loop()
                ready.put(portal)
                await portal.sleep_until_stopped()

        def main() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # pragma: no cover - start-up failure
                ready.put(exc)

        thread = threading.Thread(target=main, name="ovo-async-runtime", daemon=True)
        thread.start()
        started = ready.get()
        if isinstance(started, BaseException):  # pragma: no cover
            raise OVOError(f"could not start the event-loop thread: {started!r}")
        self._portal, self._thread = started, thread

    def in_loop_thread(self) -> bool:
        thread = self.thread
        return thread is not None and threading.current_thread() is thread

    def adopt(self, pool: Pool) -> None:
        """Close `pool` at exit if nobody has by then."""
        self._pools.add(pool)

    def release(self, pool: Pool) -> None:
        """Close `pool` on the loop without waiting: for finalizers, on any thread."""
        loop = self._loop
        if pool.closed or loop is None or self._pid != os.getpid() or self.shut_down:
            return
        try:
            future = _asyncio().run_coroutine_threadsafe(pool.aclose(), loop)
        except RuntimeError:  # the loop has stopped: nothing left to close it on
            return
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    def shutdown(self) -> None:
        """At exit: close every pool still open, then stop the loop thread."""
        with self._lock:
            self.shut_down = True
            portal, thread, loop = self._portal, self._thread, self._loop
            same_process = self._pid == os.getpid()
        if portal is None or thread is None or loop is None or not same_process:
            return
        pools = [pool for pool in list(self._pools) if not pool.closed]

        async def close_all() -> None:
            for pool in pools:
                with contextlib.suppress(Exception):
                    await pool.aclose()

        with contextlib.suppress(Exception):
            _asyncio().run_coroutine_threadsafe(close_all(), loop).result(STOP_TIMEOUT)
        for future in list(self._closing):
            with contextlib.suppress(Exception):
                future.result(STOP_TIMEOUT)
        with contextlib.suppress(Exception):  # the loop may already have ended
            portal.call(portal.stop, True)
        thread.join(STOP_TIMEOUT)


#: The one runtime of this process.
RUNTIME = Runtime()
atexit.register(RUNTIME.shutdown)


def _warn_if_inside_event_loop() -> None:
    global _warned_inside_loop
    if _warned_inside_loop:
        return
    import sniffio

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
    """The async client a sync facade drives on the runtime's loop.

    A core made by `derive` (for `with_options`) keeps its parent alive: the parent's
    pool is closed when the last client sharing it is gone.
    """

    def __init__(self, client: AsyncOVOClient, parent: SyncCore | None = None) -> None:
        self.client = client
        self._parent = parent
        self.closed: bool = False
        self._finalizer: weakref.finalize[Any, SyncCore] | None = None
        if parent is None:
            pool = client._transport.pool
            self._finalizer = weakref.finalize(self, RUNTIME.release, pool)
            self._finalizer.atexit = False  # Runtime.shutdown closes what is left

    def __reduce__(self) -> Any:
        raise TypeError(PICKLE_REFUSAL)

    def _loop(self) -> asyncio.AbstractEventLoop:
        if RUNTIME.in_loop_thread():
            raise OVOError(
                "OVOClient was called from its own event-loop thread; use AsyncOVOClient there"
            )
        _warn_if_inside_event_loop()
        if self.closed or self.client.is_closed:
            raise OVOError(_CLOSED)
        loop = RUNTIME.loop()
        RUNTIME.adopt(self.client._transport.pool)
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

        import concurrent.futures  # loaded with asyncio by now; not at import time

        # Straight onto the portal's loop: the portal's own task machinery cost about
        # 100 us more per call; cancelling this future cancels the task just the same.
        try:
            future: concurrent.futures.Future[T] = _asyncio().run_coroutine_threadsafe(
                invoke(), loop
            )
        except RuntimeError:  # the loop stopped between the check and the call (exit)
            raise OVOError("the ovo-async event loop has stopped (interpreter exit)") from None
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            # Not ours (we only cancel below): the loop was stopped under this call.
            _park_daemon_at_exit()
            raise OVOError(
                "the call was cancelled because its client was closed or the "
                "interpreter is exiting; whether it was sent is unknown"
            ) from None
        except BaseException:
            if not future.done():
                # Ctrl-C (or another signal) arrived while waiting: do not leave the call
                # running in the background, which could still send the SMS.
                future.cancel()
                _wait_out(finished.wait)
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
        """A core for a derived client (`with_options`) on the same runtime."""
        return SyncCore(fn(self.client), self)

    def check_open(self) -> None:
        if self.closed or self.client.is_closed:
            raise OVOError(_CLOSED)

    def close(self) -> None:
        """Close the async client (and its pool, unless derived). Safe to repeat."""
        if self.closed:
            return
        self.closed = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self.client.is_closed or RUNTIME.shut_down:
            return
        loop = RUNTIME.loop() if RUNTIME.thread is not None else None
        if loop is None:
            # Never used in this process: no connection was opened, nothing to await.
            self.client._transport.closed = True
            self.client._transport.pool.closed = True
            return
        import concurrent.futures

        with contextlib.suppress(OVOError, concurrent.futures.CancelledError, RuntimeError):
            _asyncio().run_coroutine_threadsafe(self.client.aclose(), loop).result(STOP_TIMEOUT)


def _park_daemon_at_exit() -> None:
    """A daemon thread whose run the interpreter's exit stopped: wait here for the exit
    to end it, as it ends a daemon thread blocked anywhere else, instead of raising into
    a thread nobody joins (its traceback would be printed at every exit)."""
    thread = threading.current_thread()
    if RUNTIME.shut_down and thread.daemon and thread is not threading.main_thread():
        threading.Event().wait()


def _wait_out(finished: Callable[[float], bool]) -> None:
    """Wait (at most CANCEL_TIMEOUT) for a cancelled call to finish on the loop;
    `finished(seconds)` waits up to that long and says whether it has. A second Ctrl-C
    during the wait does not cut it short: the first one is being honoured, and leaving
    now would let the next call meet the cancelled one still running."""
    import time

    deadline = time.monotonic() + CANCEL_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        try:
            if finished(left):
                return
        except KeyboardInterrupt:
            continue


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
            return self._next()
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None
        except Exception:
            _park_daemon_at_exit()
            raise

    def _next(self) -> T:
        return self._core.call(self._source.__anext__)

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


class _Feed:
    """An async iterable whose items are read on the consumer's thread, in chunks.

    The loop side asks for items with a future; the consumer's thread, waiting for the
    next outcome, sees the request, reads up to `chunk` items from the caller's iterable
    itself (so a sqlite cursor stays on its thread) and hands them over.
    """

    def __init__(self, source: Iterable[Any], chunk: int) -> None:
        self._source = iter(source)
        self._chunk = chunk
        self._items: list[Any] = []
        self._ended = False
        import queue

        #: Requests for input, read by the consumer's thread.
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> Any:
        if not self._items:
            if self._ended:
                raise StopAsyncIteration
            loop = _asyncio().get_running_loop()
            wanted: asyncio.Future[tuple[list[Any], BaseException | None]] = loop.create_future()
            self.requests.put((loop, wanted))
            items, error = await wanted
            self._items = items[::-1]
            if error is not None:
                self._ended = True
                if not self._items:
                    raise error
            elif len(items) < self._chunk:
                self._ended = True
            if not self._items:
                raise StopAsyncIteration
        return self._items.pop()

    def serve(self, loop: asyncio.AbstractEventLoop, wanted: asyncio.Future[Any]) -> None:
        """On the consumer's thread: read a chunk and hand it to the waiting loop side."""
        items: list[Any] = []
        error: BaseException | None = None
        try:
            for _ in range(self._chunk):
                items.append(next(self._source))
        except StopIteration:
            pass
        except Exception as exc:  # the caller's iterable failed: raised after its outcomes
            error = exc

        def deliver() -> None:
            if not wanted.done():
                wanted.set_result((items, error))

        loop.call_soon_threadsafe(deliver)


class BulkRun(SyncIterator["BulkOutcome"]):
    """The blocking iterator `OVOClient.sms.send_many` returns: one `BulkOutcome` per input.

    The input is read on the thread that iterates this object. Use it in a `with` block
    (or call `close()`) to stop the run early; `progress` has live counts.
    """

    def __init__(self, core: SyncCore, source: AsyncBulkRun) -> None:
        super().__init__(core, source)
        self._run = source
        self._feed = source._feed_from_consumer_thread(_Feed)
        #: The task taking the next outcome on the loop, while there is one.
        self._step: asyncio.Task[Any] | None = None

    @property
    def progress(self) -> BulkProgress:
        """Live counts of the run."""
        return self._run.progress

    async def _take_next(self, ready: queue.SimpleQueue[Any] | None, done: object) -> BulkOutcome:
        """One step of the run, on the loop, known to `close()` while it lasts."""
        self._step = _asyncio().current_task()
        try:
            return await self._run.__anext__()
        finally:
            self._step = None
            if ready is not None:
                ready.put(done)

    def _next(self) -> BulkOutcome:
        feed = self._feed
        if feed is None:
            return self._core.call(lambda: self._take_next(None, None))
        # Wait for the next outcome on this thread while serving the run's requests for
        # input, which must be read here.
        ready: queue.SimpleQueue[Any] = feed.requests
        done = object()

        import concurrent.futures

        loop = self._core._loop()
        future: concurrent.futures.Future[BulkOutcome] = _asyncio().run_coroutine_threadsafe(
            self._take_next(ready, done), loop
        )
        try:
            while True:
                request = ready.get()
                if request is done:
                    break
                feed.serve(*request)
            return future.result()
        except concurrent.futures.CancelledError:
            raise OVOError("the run was cancelled: its client was closed") from None
        except BaseException:
            if not future.done():
                # Ctrl-C (or SIGTERM made KeyboardInterrupt) while waiting: stop the step
                # (`close()` then waits for it to end).
                future.cancel()
            raise

    def close(self) -> None:
        """Stop the run (and any work it started). Safe to repeat."""
        if self._done:
            return
        self._done = True
        self._core.call(self._stop)

    async def _stop(self) -> None:
        # A Ctrl-C can land anywhere on the caller's thread, even between scheduling a
        # step and holding its future: whatever step is still running is cancelled and
        # waited out here, on the loop, so the run is never closed in mid-step.
        step = self._step
        if step is not None and step is not _asyncio().current_task():
            step.cancel()
            await _asyncio().wait([step])
        await self._run.aclose()

    def __enter__(self) -> BulkRun:
        return self
