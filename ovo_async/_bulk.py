"""`sms.send_many`: bulk sending with bounded memory, shared pacing, one outcome per input.

Workers pull inputs lazily from the caller's (async) iterable, send them one by one or
in batches, and hand one `BulkOutcome` per input to the consumer through a bounded
stream, so at most O(concurrency) messages are held at once. A 429 pauses every worker
(one shared gate) instead of each hammering the server; `rate_limit` is a token bucket.

The workers are not in a task group: a task group cannot span the `yield`s of an async
generator that the caller may abandon (breaking out of `async for` closes it from
another task). They are plain tasks, cancelled and awaited when the run ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import sniffio
from anyio.streams.memory import MemoryObjectSendStream

from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    OVOError,
    ValidationError,
)
from ._requests import make_request
from ._validation import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from ._validation import idempotency_key as check_key
from .models import BulkOutcome, MessageStatus, SentMessage, SMSRequest

if TYPE_CHECKING:
    from .resources.sms import AsyncSMS

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AsyncBulkRun",
    "BulkProgress",
    "MessageRejectedError",
]

F = TypeVar("F", bound=AsyncIterable[Any])


logger = logging.getLogger("ovo_async")

#: Requests in flight by default: batches of 100 need few; single sends need more.
DEFAULT_BATCH_CONCURRENCY = 4
DEFAULT_SINGLE_CONCURRENCY = 20

_REFUSED = frozenset({MessageStatus.REJECTED, MessageStatus.FAILED, MessageStatus.UNDELIVERED})


class MessageRejectedError(OVOError):
    """The server refused one message of a batch; the rest of the batch went ahead.

    `code`, `param` and `status` come from the batch result's entry; `batch_id` names
    the batch.
    """

    def __init__(
        self, message: str, *, code: str | None, param: str | None, status: str, batch_id: str
    ) -> None:
        super().__init__(message)
        self.code, self.param, self.status, self.batch_id = code, param, status, batch_id


# No on-setattr hooks: the counters change once per message, on the hot path.
@attrs.define(on_setattr=attrs.setters.NO_OP)
class BulkProgress:
    """Live counts of a `send_many` run, for progress bars."""

    #: Inputs taken from the source so far.
    taken: int = 0
    #: Messages the server accepted.
    sent: int = 0
    #: Inputs that ended in an error (invalid, refused or failed).
    failed: int = 0

    @property
    def done(self) -> int:
        """Inputs with an outcome."""
        return self.sent + self.failed

    @property
    def in_flight(self) -> int:
        """Inputs taken but without an outcome yet."""
        return self.taken - self.done


class _Gate:
    """Pauses every worker of a run until a server-requested wait has passed."""

    def __init__(self) -> None:
        self.resume_at = 0.0

    def on_wait(self, wait: float, error: BaseException) -> None:
        if isinstance(error, APIError) and (
            error.status_code == 429 or error.retry_after is not None
        ):
            self.resume_at = max(self.resume_at, anyio.current_time() + wait)

    async def wait(self) -> None:
        # A loop, not an Event: another 429 may push resume_at later while we sleep.
        while (delay := self.resume_at - anyio.current_time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(delay)


class _TokenBucket:
    """`rate` messages a second, bursting at most one second's worth.

    A take larger than the burst waits for a full bucket and leaves a debt, so a batch of
    n messages costs n / rate seconds of sending time either way.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.tokens = self.capacity
        self.last = anyio.current_time()
        self.lock = anyio.Lock()

    def _refill(self) -> None:
        now = anyio.current_time()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    async def take(self, n: int) -> None:
        async with self.lock:
            self._refill()
            need = min(float(n), self.capacity)
            if self.tokens < need:
                await anyio.sleep((need - self.tokens) / self.rate)
                self._refill()
            self.tokens -= n


class _Source:
    """Hands out (index, item) pairs from a sync or async iterable, lazily."""

    def __init__(self, messages: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._sync = iter(messages) if not isinstance(messages, AsyncIterable) else None
        self._async = messages.__aiter__() if isinstance(messages, AsyncIterable) else None
        self._lock = anyio.Lock()
        self._index = 0
        self.exhausted = False
        self.error: BaseException | None = None

    async def take(self, n: int) -> list[tuple[int, Any]]:
        taken: list[tuple[int, Any]] = []
        if self.exhausted:
            return taken
        try:
            if self._sync is not None:
                # next() never awaits, so workers cannot interleave inside it.
                for _ in range(n):
                    taken.append((self._index, next(self._sync)))
                    self._index += 1
            else:
                assert self._async is not None
                async with self._lock:
                    for _ in range(n):
                        if self.exhausted:
                            break
                        taken.append((self._index, await self._async.__anext__()))
                        self._index += 1
        except (StopIteration, StopAsyncIteration):
            self.exhausted = True
        except Exception as exc:
            # The caller's iterable failed: stop taking, and raise it to the consumer once
            # the outcomes of what was taken have been delivered.
            self.exhausted = True
            self.error = exc
        return taken


async def _hand_over(
    out: MemoryObjectSendStream[list[BulkOutcome]], item: list[BulkOutcome]
) -> bool:
    """Send `item` to the consumer; False once the consumer is gone."""
    try:
        try:
            out.send_nowait(item)  # no checkpoint when there is room: most of the time
        except anyio.WouldBlock:
            await out.send(item)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False
    return True


class _Worker:
    """A task outside any task group, which the run cancels and awaits when it ends."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self._task: object = None

    async def _main(self, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            with self.scope:
                await fn()
        except Exception as exc:  # a bug: keep it for the consumer, never crash the loop
            self.error = exc
        finally:
            self.done.set()

    def start(self, fn: Callable[[], Awaitable[None]]) -> None:
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(self._main, fn)
        else:
            self._task = asyncio.get_running_loop().create_task(self._main(fn))


class AsyncBulkRun:
    """The async iterator `sms.send_many` returns: one `BulkOutcome` per input.

    Outcomes arrive in completion order; `outcome.index` is the input's position.
    `progress` has live counts. Breaking out of the loop, `aclose()`, or leaving an
    `async with` block stops the workers.
    """

    def __init__(
        self,
        sms: AsyncSMS,
        messages: Iterable[SMSRequest | Mapping[str, Any]]
        | AsyncIterable[SMSRequest | Mapping[str, Any]],
        *,
        concurrency: int | None,
        batch_size: int | None,
        rate_limit: float | None,
        idempotency_prefix: str | None,
    ) -> None:
        if isinstance(messages, (str, bytes, Mapping, SMSRequest)) or not isinstance(
            messages, (Iterable, AsyncIterable)
        ):
            raise ValidationError(
                "messages", f"must be an iterable of messages, got {type(messages).__name__}"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, int)
            or not 1 <= batch_size <= MAX_BATCH_SIZE
        ):
            raise ValidationError(
                "batch_size",
                f"must be None or an int from 1 to {MAX_BATCH_SIZE}, got {batch_size!r}",
            )
        if concurrency is None:
            concurrency = (
                DEFAULT_SINGLE_CONCURRENCY if batch_size is None else DEFAULT_BATCH_CONCURRENCY
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError("concurrency", f"must be a positive int, got {concurrency!r}")
        if rate_limit is not None and (
            isinstance(rate_limit, bool)
            or not isinstance(rate_limit, (int, float))
            or not rate_limit > 0
        ):
            raise ValidationError(
                "rate_limit", f"must be None or messages per second > 0, got {rate_limit!r}"
            )
        check_key("idempotency_prefix", idempotency_prefix)
        engine = _Engine(sms, messages, concurrency, batch_size, rate_limit, idempotency_prefix)
        self._engine = engine
        #: Live counts of the run.
        self.progress = engine.progress
        # Only this object holds the generator: when the caller drops it (breaking out of
        # `async for`), the generator is finalized at once and stops the workers, which
        # hold the engine but not this object.
        self._outcomes = engine.run()

    def __aiter__(self) -> AsyncBulkRun:
        return self

    def _feed_from_consumer_thread(self, feed: Callable[[Iterable[Any], int], F]) -> F | None:
        """Read a sync input through `feed(messages, chunk)` instead (the sync facade's hook).

        Only before iteration starts, and only for a sync iterable: an async one is read
        on the loop, where it lives.
        """
        engine = self._engine
        if isinstance(engine.messages, AsyncIterable):
            return None
        fed = feed(engine.messages, engine.batch_size or engine.concurrency)
        engine.messages = fed
        return fed

    async def __anext__(self) -> BulkOutcome:
        return await self._outcomes.__anext__()

    async def aclose(self) -> None:
        """Stop the run: cancel the workers and wait for them. Safe to repeat."""
        await self._outcomes.aclose()

    async def __aenter__(self) -> AsyncBulkRun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class _Engine:
    """The work of one `send_many` run: workers, pacing and outcomes."""

    def __init__(
        self,
        sms: AsyncSMS,
        messages: Iterable[Any] | AsyncIterable[Any],
        concurrency: int,
        batch_size: int | None,
        rate_limit: float | None,
        idempotency_prefix: str | None,
    ) -> None:
        self._sms = sms
        self.messages = messages
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.rate_limit = rate_limit
        self.idempotency_prefix = idempotency_prefix
        self.progress = BulkProgress()

    async def run(self) -> AsyncGenerator[BulkOutcome, None]:
        source = _Source(self.messages)
        gate = _Gate()
        bucket = _TokenBucket(self.rate_limit) if self.rate_limit else None
        # Outcomes travel in lists (one per request): a stream hop per message cost more
        # than the rest of a batched send. Batches get no buffer (a worker hands its list
        # over before taking more input), single sends one slot per worker, so a worker
        # need not wait for the consumer to be scheduled: either way memory stays within
        # about (concurrency + 1) x batch_size messages.
        buffer = 0 if self.batch_size else self.concurrency
        send, receive = anyio.create_memory_object_stream[list[BulkOutcome]](buffer)
        workers: list[_Worker] = []
        try:
            with send:
                for _ in range(self.concurrency):
                    worker = _Worker()
                    work = self._batches if self.batch_size else self._singles
                    worker.start(functools.partial(work, source, gate, bucket, send.clone()))
                    workers.append(worker)
            async with receive:
                while True:
                    try:
                        # Take what is ready without a checkpoint; wait only when empty.
                        outcomes = receive.receive_nowait()
                    except anyio.WouldBlock:
                        try:
                            outcomes = await receive.receive()
                        except anyio.EndOfStream:
                            break
                    except anyio.EndOfStream:
                        break
                    for outcome in outcomes:
                        yield outcome
            for worker in workers:
                if worker.error is not None:
                    raise worker.error
            if source.error is not None:
                raise source.error
        finally:
            for worker in workers:
                worker.scope.cancel()
            with anyio.CancelScope(shield=True):
                for worker in workers:
                    await worker.done.wait()

    def _key(self, suffix: str) -> str | None:
        return None if self.idempotency_prefix is None else f"{self.idempotency_prefix}-{suffix}"

    def _outcome(
        self, index: int, request: Any, message: SentMessage | None, error: OVOError | None
    ) -> BulkOutcome:
        if error is None:
            self.progress.sent += 1
        else:
            self.progress.failed += 1
        return BulkOutcome(index=index, request=request, message=message, error=error)

    def _prepare(self, index: int, item: Any) -> SMSRequest | BulkOutcome:
        try:
            return make_request(item, default_from=self._sms._default_from)
        except ValidationError as exc:
            return self._outcome(index, item, None, exc)

    async def _singles(
        self,
        source: _Source,
        gate: _Gate,
        bucket: _TokenBucket | None,
        out: MemoryObjectSendStream[list[BulkOutcome]],
    ) -> None:
        with out:
            while True:
                taken = await source.take(1)
                if not taken:
                    return
                index, item = taken[0]
                self.progress.taken += 1
                request = self._prepare(index, item)
                if isinstance(request, SMSRequest):
                    if bucket is not None:
                        await bucket.take(1)
                    key = self._key(str(index)) or str(uuid.uuid4())
                    try:
                        message = await self._sms._send(
                            request, key, on_wait=gate.on_wait, before_attempt=gate.wait
                        )
                        outcome = self._outcome(index, request, message, None)
                    except OVOError as exc:
                        outcome = self._outcome(index, request, None, exc)
                    except Exception as exc:
                        outcome = self._outcome(index, request, None, _unexpected(exc, key))
                else:
                    outcome = request
                if not await _hand_over(out, [outcome]):
                    return

    async def _batches(
        self,
        source: _Source,
        gate: _Gate,
        bucket: _TokenBucket | None,
        out: MemoryObjectSendStream[list[BulkOutcome]],
    ) -> None:
        assert self.batch_size is not None
        with out:
            while True:
                taken = await source.take(self.batch_size)
                if not taken:
                    return
                self.progress.taken += len(taken)
                ready: list[tuple[int, SMSRequest]] = []
                outcomes: list[BulkOutcome] = []
                for index, item in taken:
                    request = self._prepare(index, item)
                    if isinstance(request, SMSRequest):
                        ready.append((index, request))
                    else:
                        outcomes.append(request)
                if ready:
                    if bucket is not None:
                        await bucket.take(len(ready))
                    outcomes += await self._send_batch(ready, gate)
                if not await _hand_over(out, outcomes):
                    return

    async def _send_batch(
        self, ready: list[tuple[int, SMSRequest]], gate: _Gate
    ) -> list[BulkOutcome]:
        key = self._key(f"b{ready[0][0]}") or str(uuid.uuid4())
        try:
            result = await self._sms._send_batch(
                [request for _, request in ready],
                None,
                key,
                on_wait=gate.on_wait,
                before_attempt=gate.wait,
            )
        except OVOError as exc:
            return [self._outcome(index, request, None, exc) for index, request in ready]
        except Exception as exc:
            error = _unexpected(exc, key)
            return [self._outcome(index, request, None, error) for index, request in ready]
        outcomes = []
        for j, (index, request) in enumerate(ready):
            if j >= len(result.messages):
                unread = _unread(
                    f"batch {result.batch_id} returned {len(result.messages)} results "
                    f"for {len(ready)} messages; this one has none",
                    key,
                    None,
                )
                outcomes.append(self._outcome(index, request, None, unread))
                continue
            entry = result.messages[j]
            if entry.problem is not None:
                unread = _unread(f"batch {result.batch_id}: {entry.problem}", key, entry)
                outcomes.append(self._outcome(index, request, None, unread))
                continue
            if (
                entry.message_id is not None
                and entry.error is None
                and entry.status not in _REFUSED
            ):
                sent = SentMessage(
                    message_id=entry.message_id,
                    status=entry.status,
                    to=entry.to,
                    from_=entry.from_,
                    created_at=result.created_at,
                )
                outcomes.append(self._outcome(index, request, sent, None))
            else:
                detail = entry.error
                rejected = MessageRejectedError(
                    (detail.message if detail and detail.message else f"message {entry.status}"),
                    code=detail.code if detail else None,
                    param=detail.param if detail else None,
                    status=str(entry.status),
                    batch_id=result.batch_id,
                )
                rejected.idempotency_key = key
                outcomes.append(self._outcome(index, request, None, rejected))
        return outcomes


def _unread(reason: str, key: str, entry: Any) -> APIResponseValidationError:
    """An accepted batch whose answer for this message could not be read: it may be sent."""
    error = APIResponseValidationError(reason, response=None, body=entry, status_code=None)
    error.may_have_been_sent = True
    error.idempotency_key = key
    return error


def _unexpected(exc: Exception, key: str) -> APIConnectionError:
    """A failure that is not the SDK's (a bug, or a library under it): the fate is unknown."""
    logger.error("send_many: unexpected %s while sending", type(exc).__name__, exc_info=exc)
    error = APIConnectionError(
        f"unexpected {type(exc).__name__} while sending: {exc}"[:1000], may_have_been_sent=True
    )
    error.idempotency_key = key
    return error
