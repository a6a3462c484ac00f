"""`sms.send_many`: bulk sending with bounded memory, one outcome per input, resumable.

Workers pull inputs lazily from the caller's (async) iterable, send them one by one or
in batches, and hand one `BulkOutcome` per input to the consumer through a bounded
stream, so at most O(concurrency x batch_size) messages are held at once.

Three parts below the consumer:
- identity (`_journal.content_digest`, or the caller's `key=`): with `idempotency_prefix`
  or a journal, every key derives from the identities of what a request carries, never
  from positions, so a re-run of the same job sends the same keys for the same messages;
- the journal (`journal=path`): recorded before each request, settled after, consulted
  for each input, so a re-run skips what was accepted and resolves what was in flight;
- the pacer (`_pacer.Pacer`, or `rate_limiter=`): tokens before each request, and a
  gate every 429 closes for its `Retry-After`, retried or not. Retries reach it through
  `RETRY_HOOKS`, so no pacing runs through the resource or transport signatures.

The workers are not in a task group: a task group cannot span the `yield`s of an async
generator that the caller may abandon (breaking out of `async for` closes it from
another task). They are plain tasks, cancelled and awaited when the run ends.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
import httpx
import sniffio
from anyio.streams.memory import MemoryObjectSendStream

from . import _json, _serde
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    MessageRejectedError,
    OVOError,
    ValidationError,
)
from ._journal import (
    ACCEPTED,
    DAMAGE,
    FAILED,
    UNKNOWN,
    Journal,
    Occurrences,
    Taken,
    accepted_fields,
    batch_digest,
    content_digest,
    damaged,
    error_from_json,
    error_to_json,
)
from ._pacer import Pacer, RateLimiter
from ._requests import _JUST_DICT, make_request
from ._requests import _from_plain_dict as from_plain_dict
from ._requests import _from_plain_dicts as from_plain_dicts
from ._retry import RETRY_HOOKS
from ._transport import check_timeout, new_idempotency_key
from ._validation import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE, is_key_text
from ._validation import idempotency_key as check_key
from .models import (
    BulkOutcome,
    MessageStatus,
    SentMessage,
    SMSRequest,
    _new_bulk_outcome,
    _new_bulk_outcomes,
    _new_sent_message,
    _new_sent_messages,
)

if TYPE_CHECKING:
    from datetime import datetime

    from .resources.sms import AsyncSMS

    #: A batch accepted whole: its time, and its messages' ids and statuses, in order.
    _Whole = tuple[datetime, list[str], list[str]]

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "AsyncBulkRun",
    "BulkProgress",
]

F = TypeVar("F", bound=AsyncIterable[Any])

logger = logging.getLogger("ovo_async")

#: Requests in flight by default: batches of 100 need few; single sends need more.
DEFAULT_BATCH_CONCURRENCY = 4
DEFAULT_SINGLE_CONCURRENCY = 20
#: Most requests in flight: each is a task started up front, and the SDK's pool holds
#: 100 connections, so more only queues (10**9 would start a billion tasks and hang).
MAX_CONCURRENCY = 10_000
#: Longest idempotency_prefix: keys are `{prefix}-{identity}` within 255 characters.
MAX_PREFIX = 200

_REFUSED = frozenset({MessageStatus.REJECTED, MessageStatus.FAILED, MessageStatus.UNDELIVERED})


# No on-setattr hooks: the counters change once per message, on the hot path.
@attrs.define(on_setattr=attrs.setters.NO_OP)
class BulkProgress:
    """Live counts of a `send_many` run, for progress bars."""

    #: Inputs taken from the source so far.
    taken: int = 0
    #: Messages the server accepted (in this run, or replayed from the journal).
    sent: int = 0
    #: Inputs that ended in an error (invalid, refused or failed).
    failed: int = 0
    #: Outcomes that came from the journal instead of a request in this run.
    replayed: int = 0

    @property
    def done(self) -> int:
        """Inputs with an outcome."""
        return self.sent + self.failed

    @property
    def in_flight(self) -> int:
        """Inputs taken but without an outcome yet."""
        return self.taken - self.done


class _Hooks:
    """What the retry loop tells the pacer while one request of `n` messages is retried."""

    __slots__ = ("n", "pacer")

    def __init__(self, pacer: RateLimiter, n: int) -> None:
        self.pacer, self.n = pacer, n

    def waiting(self, seconds: float, error: BaseException) -> None:
        _pause_for(self.pacer, error, seconds)

    async def before_retry(self) -> None:
        await self.pacer.acquire(self.n)


def _pause_for(pacer: RateLimiter, error: BaseException, seconds: float | None = None) -> None:
    """A 429 (or any answer with Retry-After) closes the gate for every worker."""
    if isinstance(error, APIError) and (error.status_code == 429 or error.retry_after):
        wait = error.retry_after if seconds is None else seconds
        if wait:
            pacer.pause(wait)


class _Source:
    """Hands out (index, item) pairs from a sync or async iterable, lazily."""

    def __init__(self, messages: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._sync = iter(messages) if not isinstance(messages, AsyncIterable) else None
        self._async = messages.__aiter__() if isinstance(messages, AsyncIterable) else None
        self._lock = anyio.Lock()
        self._index = 0
        self.exhausted = False
        self.error: BaseException | None = None

    async def take(self, n: int) -> tuple[int, list[Any]]:
        """Up to `n` inputs, and the position of the first: they are contiguous."""
        items: list[Any] = []
        start = self._index
        if self.exhausted:
            return start, items
        try:
            if self._sync is not None:
                # Never awaits, so workers cannot interleave inside it. What was taken
                # before the caller's iterable raised is kept (`extend` keeps what it
                # appended): it gets its outcomes.
                try:
                    items.extend(itertools.islice(self._sync, n))
                finally:
                    self._index = start + len(items)
                if len(items) < n:
                    self.exhausted = True
            else:
                assert self._async is not None
                async with self._lock:
                    start = self._index
                    for _ in range(n):
                        if self.exhausted:
                            break
                        items.append(await self._async.__anext__())
                        self._index += 1
        except (StopIteration, StopAsyncIteration):
            self.exhausted = True
        except Exception as exc:
            # The caller's iterable failed: stop taking, and raise it to the consumer once
            # the outcomes of what was taken have been delivered.
            self.exhausted = True
            self.error = exc
        return start, items


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
        key: Callable[[Any], str] | None = None,
        journal: str | os.PathLike[str] | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> None:
        limits = None if timeout is None else check_timeout(timeout)
        if isinstance(messages, (str, bytes, Mapping, SMSRequest)) or not isinstance(
            messages, (Iterable, AsyncIterable)
        ):
            raise ValidationError(
                "messages", f"must be an iterable of messages, got {type(messages).__name__}"
            )
        if batch_size is not None:
            _check_count("batch_size", batch_size, MAX_BATCH_SIZE)
        if concurrency is None:
            concurrency = (
                DEFAULT_SINGLE_CONCURRENCY if batch_size is None else DEFAULT_BATCH_CONCURRENCY
            )
        _check_count("concurrency", concurrency, MAX_CONCURRENCY)
        if rate_limit is not None:
            from ._validation import seconds

            if isinstance(rate_limit, bool) or not seconds("rate_limit", rate_limit) > 0:
                raise ValidationError(
                    "rate_limit", f"must be None or messages per second > 0, got {rate_limit!r}"
                )
        if rate_limiter is not None:
            if rate_limit is not None:
                raise ValidationError("rate_limiter", "give rate_limit or rate_limiter, not both")
            if not isinstance(rate_limiter, RateLimiter):
                raise ValidationError(
                    "rate_limiter",
                    "must have `async def acquire(self, n)` and `def pause(self, seconds)`",
                )
        check_key("idempotency_prefix", idempotency_prefix)
        if idempotency_prefix is not None and len(idempotency_prefix) > MAX_PREFIX:
            raise ValidationError("idempotency_prefix", f"must be at most {MAX_PREFIX} characters")
        if key is not None and not callable(key):
            raise ValidationError("key", f"must be a function item -> str, got {key!r}")
        if journal is not None:
            _check_journal_path(journal)
        engine = _Engine(
            sms,
            messages,
            concurrency=concurrency,
            batch_size=batch_size,
            rate_limit=rate_limit,
            rate_limiter=rate_limiter,
            prefix=idempotency_prefix,
            key=key,
            journal=journal,
            timeout=limits,
        )
        self._engine = engine
        #: Live counts of the run.
        self.progress: BulkProgress = engine.progress
        # Only this object holds the generator: when the caller drops it (breaking out of
        # `async for`), the generator is finalized at once and stops the workers, which
        # hold the engine but not this object.
        self._outcomes = engine.run()

    def __aiter__(self) -> AsyncIterator[BulkOutcome]:
        # The generator itself: `async for` then skips a call per outcome through this
        # object's `__anext__`.
        return self._outcomes

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


#: One input on its way to a request: (index, item as given, request, identity).
_Member = tuple[int, Any, SMSRequest, "str | None"]


class _Engine:
    """The work of one `send_many` run: workers, identities, journal, pacing, outcomes."""

    def __init__(
        self,
        sms: AsyncSMS,
        messages: Iterable[Any] | AsyncIterable[Any],
        *,
        concurrency: int,
        batch_size: int | None,
        rate_limit: float | None,
        rate_limiter: RateLimiter | None,
        prefix: str | None,
        key: Callable[[Any], str] | None,
        journal: str | os.PathLike[str] | None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self._sms = sms
        self.timeout = timeout
        self.messages = messages
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.rate_limit = rate_limit
        self.rate_limiter = rate_limiter
        self.prefix = prefix
        self.key = key
        self.journal_path = journal
        self.progress = BulkProgress()
        #: Identities are needed for deterministic keys and for the journal.
        self.identify = prefix is not None or journal is not None or key is not None
        self._journal: Journal | None = None
        #: With a journal, the identities this run took, in flat memory.
        self._taken: Taken | None = None
        # Without one, occurrences and caller keys are counted in memory.
        self._occurrences = Occurrences()
        self._keys_seen: set[str] = set()
        self.pacer: RateLimiter

    async def run(self) -> AsyncGenerator[BulkOutcome, None]:
        # Made here, on the running loop (the sync facade builds runs on its own thread).
        # Without a rate limit the pacer is still the gate that a 429 closes for all.
        self.pacer = self.rate_limiter or Pacer(self.rate_limit)
        journal = Journal(self.journal_path, self.prefix) if self.journal_path is not None else None
        self._journal = journal
        workers: list[_Worker] = []
        try:
            if journal is not None:
                await self._recover(journal)
                journal.catch_up()
                self._taken = Taken(journal)
            source = _Source(self.messages)
            # Outcomes travel in lists (one per request): a stream hop per message cost more
            # than the rest of a batched send. Batches get no buffer (a worker hands its list
            # over before taking more input), single sends one slot per worker, so a worker
            # need not wait for the consumer to be scheduled: either way memory stays within
            # about (concurrency + 1) x batch_size messages.
            buffer = 0 if self.batch_size else self.concurrency
            send, receive = anyio.create_memory_object_stream[list[BulkOutcome]](buffer)
            with send:
                for _ in range(self.concurrency):
                    worker = _Worker()
                    worker.start(functools.partial(self._work, source, send.clone()))
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
            if journal is not None:
                journal.close()

    # --- inputs ---------------------------------------------------------------------

    async def _work(self, source: _Source, out: MemoryObjectSendStream[list[BulkOutcome]]) -> None:
        chunk = self.batch_size or 1
        with out:
            while True:
                start, items = await source.take(chunk)
                if not items:
                    return
                self.progress.taken += len(items)
                outcomes, ready = self._prepare(start, items)
                if ready:
                    if self.batch_size is None:
                        for member in ready:
                            outcomes += await self._send([member], "send")
                    else:
                        outcomes += await self._send(ready, "batch")
                if not await _hand_over(out, outcomes):
                    return

    def _prepare(self, start: int, items: list[Any]) -> tuple[list[BulkOutcome], list[_Member]]:
        """Validate, identify and (with a journal) replay; what is left is to be sent."""
        sms = self._sms
        default_from, max_segments, region = sms._default_from, sms._max_segments, sms._region
        # Plain dicts with a sender, and no per-client rule to apply: the fast path alone
        # (make_request would take it too, after a few checks that cannot apply here).
        plain = region is None and max_segments is None
        # A chunk of plain dicts that all pass (the usual input) is checked list by list;
        # anything else goes item by item, each with its own answer.
        requests = from_plain_dicts(items, default_from) if plain else None
        # A chunk's content identities go into its members as they are made: no member
        # made and then made again with its identity.
        named = requests is not None and self.identify and self.key is None
        if requests is not None:
            outcomes: list[BulkOutcome] = []
            identities: Iterable[str | None] = (
                self._counter.identities(requests) if named else itertools.repeat(None)
            )
            indexes = range(start, start + len(items))
            ready: list[_Member] = list(zip(indexes, items, requests, identities, strict=False))
        else:
            outcomes, ready = self._prepare_each(start, items, default_from, plain)
        if not ready or not self.identify:
            return outcomes, ready
        identified = ready if named else self._identify(ready, outcomes)
        journal, claims = self._journal, self._taken
        if journal is None or claims is None or not identified:
            return outcomes, identified
        known = journal.lookup([m[3] or "" for m in identified])
        if not known:
            return outcomes, identified
        # Under a caller's key the journal also holds what the message said: a changed
        # message under a recorded key is not that message, and is neither sent nor
        # taken for sent.
        recorded = journal.contents(list(known)) if self.key is not None else {}
        to_send: list[_Member] = []
        claimed: list[str] = []
        for member in identified:
            index, _, request, identity = member
            assert identity is not None
            row = known.get(identity)
            if row is None:
                to_send.append(member)
                continue
            digest = recorded.get(identity)
            if digest is not None and digest != content_digest(request):
                changed = ValidationError(
                    "key",
                    f"{identity!r} is recorded in this journal for a message with other "
                    "content (to, from, message or callback_url): it was not sent. Give "
                    "the changed message a new key, or start a new campaign with a new "
                    "journal",
                )
                outcomes.append(self._outcome(index, request, None, changed))
                claimed.append(identity)
                continue
            state, outcome, _run = row
            try:
                replayed = _replayed(state, outcome, request)
            except DAMAGE as exc:
                raise damaged(journal.path, exc) from None
            if replayed is None:  # failed and provably not sent (or never settled): again
                to_send.append(member)
                continue
            sent, error = replayed
            outcomes.append(self._outcome(index, request, sent, error, replayed=True))
            claimed.append(identity)
        if claimed:
            # Replayed in this run: an equal message later in the input is the next one.
            journal.claim(claimed)
            claims.stored(claimed)
        return outcomes, to_send

    def _prepare_each(
        self, start: int, items: list[Any], default_from: str | None, plain: bool
    ) -> tuple[list[BulkOutcome], list[_Member]]:
        """Validate item by item: each input gets its own request or its own error."""
        sms = self._sms
        max_segments, region = sms._max_segments, sms._region
        outcomes: list[BulkOutcome] = []
        ready: list[_Member] = []
        append = ready.append
        # enumerate, not (index, item) pairs: no object per message to allocate (and for
        # the garbage collector to visit).
        for index, item in enumerate(items, start):
            try:
                request = from_plain_dict(item) if plain and type(item) is dict else None
                if request is None or request.from_ is None:
                    request = make_request(
                        item, default_from=default_from, max_segments=max_segments, region=region
                    )
                append((index, item, request, None))
            except ValidationError as exc:
                outcomes.append(self._outcome(index, item, None, exc))
        return outcomes, ready

    def _identify(self, ready: list[_Member], outcomes: list[BulkOutcome]) -> list[_Member]:
        taken = self._taken
        if self.key is None:
            identities = self._counter.identities(list(map(_REQUEST, ready)))
            return [
                (index, item, request, identity)
                for (index, item, request, _), identity in zip(ready, identities, strict=True)
            ]
        identified: list[_Member] = []
        seen = self._keys_seen
        for index, item, request, _ in ready:
            try:
                identity = self.key(item)
            except Exception as exc:
                error = ValidationError("key", f"key(item) raised {type(exc).__name__}: {exc}")
                outcomes.append(self._outcome(index, request, None, error))
                continue
            if not is_key_text(identity, MAX_PREFIX):
                error = ValidationError(
                    "key",
                    f"key(item) must give 1-{MAX_PREFIX} printable ASCII characters, not "
                    f"starting or ending with a space, got {identity!r:.60}",
                )
                outcomes.append(self._outcome(index, request, None, error))
                continue
            if not (taken.take(identity) if taken is not None else _add(seen, identity)):
                error = ValidationError("key", f"{identity!r} names two inputs of this run")
                outcomes.append(self._outcome(index, request, None, error))
                continue
            identified.append((index, item, request, identity))
        return identified

    def _outcome(
        self,
        index: int,
        request: Any,
        message: SentMessage | None,
        error: OVOError | None,
        *,
        replayed: bool = False,
    ) -> BulkOutcome:
        if error is None:
            self.progress.sent += 1
        else:
            self.progress.failed += 1
        if replayed:
            self.progress.replayed += 1
        return BulkOutcome(
            index=index, request=request, message=message, error=error, replayed=replayed
        )

    @property
    def _counter(self) -> Occurrences | Taken:
        """What numbers equal messages: with a journal, in flat memory; without, a set."""
        return self._occurrences if self._taken is None else self._taken

    # --- requests -------------------------------------------------------------------

    def _charge(self, requests: list[SMSRequest]) -> int:
        """Tokens for a request: one per message, or per segment for a limiter whose
        `charge` is "segment" (an account limited in segments per second)."""
        if getattr(self.pacer, "charge", "message") != "segment":
            return len(requests)
        from ._segments import count_segments

        return sum(count_segments(r.message).segments for r in requests)

    def _request_key(self, members: list[_Member], endpoint: str) -> str:
        prefix = self.prefix
        if prefix is None:
            return new_idempotency_key()
        if endpoint == "send":
            return f"{prefix}-{members[0][3]}"
        # With a prefix every member has its identity.
        return f"{prefix}-b{batch_digest(map(_IDENTITY, members))}"

    async def _send(
        self,
        members: list[_Member],
        endpoint: str,
        *,
        recorded: tuple[int, str] | None = None,
        recorded_contents: list[str] | None = None,
    ) -> list[BulkOutcome]:
        """One request for `members`: paced, recorded before, settled after.

        `recorded` (row id, key) is given when re-sending a request an earlier run
        recorded (with `recorded_contents`, its caller-keyed members' content digests).
        """
        journal = self._journal
        if self.identify and endpoint == "batch" and recorded is None:
            # The same members make the same key and the same body, whatever the order in
            # which the input delivered them.
            members.sort(key=_IDENTITY)
        requests = list(map(_REQUEST, members))
        n = self._charge(requests)
        await self.pacer.acquire(n)
        row = 0
        if recorded is not None:
            row, key = recorded
        else:
            key = self._request_key(members, endpoint)
            if journal is not None:
                # What the journal keeps to send the request again. A comprehension: the
                # interpreter reads slots faster than attrgetter does.
                rows = [(r.to, r.from_, r.message, r.callback_url) for r in requests]
                identities = list(map(_IDENTITY, members))
                contents = list(map(content_digest, requests)) if self.key is not None else None
                row = journal.record(key, endpoint, _json.dumps_text(rows), identities, contents)
                if self._taken is not None:
                    self._taken.stored(identities)
        token = RETRY_HOOKS.set(_Hooks(self.pacer, n))
        whole: _Whole | None = None
        answered = True
        try:
            if endpoint == "send":
                sent = await self._sms._send(requests[0], key, self.timeout)
                index, _, request, _ = members[0]
                outcomes = [self._outcome(index, request, sent, None)]
            else:
                parts = await self._sms._send_batch_parts(requests, key, self.timeout)
                outcomes, whole = self._batch_outcomes(members, parts, key)
        except OVOError as exc:
            _pause_for(self.pacer, exc)
            answered = _server_decided(exc)
            outcomes = [
                self._outcome(index, request, None, exc) for index, _, request, _ in members
            ]
        except Exception as exc:
            error = _unexpected(exc, key)
            answered = False
            outcomes = [
                self._outcome(index, request, None, error) for index, _, request, _ in members
            ]
        finally:
            RETRY_HOOKS.reset(token)
        if journal is not None and recorded is not None:
            if not answered:
                # The re-send of a request an earlier run left in flight got no answer
                # that tells its fate (the server down, a 5xx, a 429): the earlier send
                # may still have been acted on, so it stays in flight, unknown, for a
                # later run to re-send with the same key; never "failed", never new keys.
                journal.keep_unresolved(
                    list(map(_IDENTITY, members)),
                    error_to_json(_still_in_flight(outcomes[0].error, key)),
                    recorded_contents,
                )
                return outcomes
            journal.resettled(row)
        if journal is not None:
            if whole is not None:
                # Accepted whole: the answer's own lists, not read back from outcomes.
                journal.settle_accepted(row, _iso(whole[0]), whole[1], whole[2])
            else:
                _settle(journal, row, outcomes)
        return outcomes

    def _batch_outcomes(
        self, members: list[_Member], parts: _serde.BatchParts, key: str
    ) -> tuple[list[BulkOutcome], _Whole | None]:
        """Each member's outcome; and, when the answer accepted them all plainly, when
        and with which ids and statuses (what the journal keeps of it)."""
        result, entries = parts.head, parts.entries
        created_at, request_id = result.created_at, result.request_id
        whole = self._accepted_whole(members, entries, created_at, request_id)
        if whole is not None:
            return whole
        outcomes = []
        statuses, entry_of = _serde.STATUSES, _serde.batch_entry
        accepted = 0
        # Entries answer members in order; members past the last entry are handled after.
        for (index, _, request, _), data in zip(members, entries, strict=False):
            if type(data) is dict and "error" not in data:
                # The common case, a few hundred thousand times a minute: an accepted
                # entry of plain strings goes straight to its outcome, built without
                # attrs' __init__ (every field is checked here or the SDK's own).
                try:
                    message_id, status = data["message_id"], data["status"]
                    to, from_ = data["to"], data["from"]
                except KeyError:  # not all there: read the general way below
                    message_id = status = to = from_ = None
                if (
                    type(message_id) is str
                    and type(status) is str
                    and type(to) is str
                    and type(from_) is str
                ):
                    status = statuses.get(status, status)
                    if status not in _REFUSED:
                        sent = _new_sent_message(
                            message_id, status, to, from_, created_at, request_id, None
                        )
                        outcomes.append(_new_bulk_outcome(index, request, sent, None, False, True))
                        accepted += 1
                        continue
            entry = entry_of(data)
            if entry.problem is not None:
                unread = _unread(f"batch {result.batch_id}: {entry.problem}", key, entry)
                outcomes.append(self._outcome(index, request, None, unread))
                continue
            if (
                entry.message_id is not None
                and entry.error is None
                and entry.status not in _REFUSED
            ):
                sent = _new_sent_message(
                    entry.message_id,
                    entry.status,
                    entry.to,
                    entry.from_,
                    created_at,
                    request_id,
                    None,
                )
                outcomes.append(_new_bulk_outcome(index, request, sent, None, False, True))
                accepted += 1
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
        self.progress.sent += accepted
        for index, _, request, _ in members[len(entries) :]:
            unread = _unread(
                f"batch {result.batch_id} returned {len(entries)} results "
                f"for {len(members)} messages; this one has none",
                key,
                None,
            )
            outcomes.append(self._outcome(index, request, None, unread))
        return outcomes, None

    def _accepted_whole(
        self,
        members: list[_Member],
        entries: list[Any],
        created_at: datetime,
        request_id: str | None,
    ) -> tuple[list[BulkOutcome], _Whole] | None:
        """Outcomes for a batch whose every entry is a plain accepted one (the usual
        answer), checked and built a list at a time; None for any other answer, which is
        read entry by entry. The checks are that path's fast case's, list by list."""
        n = len(members)
        if len(entries) != n or set(map(type, entries)) != _JUST_DICT:
            return None
        if any(map(operator.contains, entries, itertools.repeat("error"))):
            return None
        try:
            ids, statuses = list(map(_ENTRY_ID, entries)), list(map(_ENTRY_STATUS, entries))
            tos, froms = list(map(_ENTRY_TO, entries)), list(map(_ENTRY_FROM, entries))
        except KeyError:
            return None
        try:
            # Only strings join, and decoded JSON has no str subclasses: one C loop.
            "".join(itertools.chain(ids, statuses, tos, froms))
        except TypeError:
            return None
        if not _REFUSED_TEXT.isdisjoint(statuses):
            return None
        known = _serde.STATUSES.get
        sent = _new_sent_messages(
            n,
            ids,
            map(known, statuses, statuses),  # an unknown status stays a string
            tos,
            froms,
            itertools.repeat(created_at, n),
            itertools.repeat(request_id, n),
            itertools.repeat(None, n),
        )
        outcomes = _new_bulk_outcomes(
            n,
            map(_INDEX, members),
            map(_REQUEST, members),
            sent,
            itertools.repeat(None, n),
            itertools.repeat(False, n),
            itertools.repeat(True, n),
        )
        self.progress.sent += n
        return outcomes, (created_at, ids, statuses)

    async def _recover(self, journal: Journal) -> None:
        """Resolve requests an earlier run left in flight, before any new input.

        With `retry_non_idempotent` (a server that honours keys) each is sent again,
        identical in key and body; otherwise its messages are settled as unknown (they
        may have been sent) and are not sent again.
        """
        resend = self._sms._transport.retry.retry_non_idempotent
        for request_id, key, endpoint, rows, identities, contents in journal.in_flight():
            if not resend:
                error = APIConnectionError(
                    "in flight when an earlier run stopped: it may have been sent, so it is "
                    "not sent again (against a server that honours Idempotency-Key, "
                    "RetryPolicy(retry_non_idempotent=True) re-sends it with the same key)",
                    may_have_been_sent=True,
                )
                error.idempotency_key = key
                journal.settle(request_id, [(UNKNOWN, error_to_json(error))] * len(identities))
                continue
            members: list[_Member] = []
            try:
                for position, (fields, identity) in enumerate(zip(rows, identities, strict=True)):
                    to, from_, message, callback_url = fields
                    request = SMSRequest(
                        to=to, from_=from_, message=message, callback_url=callback_url
                    )
                    members.append((-1 - position, None, request, identity))
            except DAMAGE as exc:
                raise damaged(journal.path, exc) from None
            # Outcomes of these belong to identities, not to this run's inputs: the inputs
            # that carry them get them from the journal, as replays.
            sent, failed = self.progress.sent, self.progress.failed
            await self._send(
                members, endpoint, recorded=(request_id, key), recorded_contents=contents
            )
            self.progress.sent, self.progress.failed = sent, failed


def _replayed(
    state: str, outcome: str | None, request: SMSRequest
) -> tuple[SentMessage | None, OVOError | None] | None:
    """What an earlier run's journal says of a message: (sent, None) when accepted,
    (None, error) when it may have been sent; None when it is to be sent (again)."""
    if state == ACCEPTED and outcome is not None:
        message_id, status, created_at = accepted_fields(outcome)
        sent = SentMessage(
            message_id=message_id,
            status=_serde.status(status),
            to=request.to,
            from_=request.from_ or "",
            created_at=_serde.parse_datetime(created_at),
        )
        return sent, None
    if state == UNKNOWN and outcome is not None:
        return None, error_from_json(outcome)
    return None


#: Answers to a re-send that prove what the server does with that request whatever it
#: did the first time: its body is refused (an identical body is refused again).
_REFUSED_BODY = frozenset({400, 422})


def _server_decided(error: OVOError) -> bool:
    """Whether the server answered a request in a way that settles its fate: a 2xx it
    could not be read from (it was acted on), or a refusal of its body. A connection
    error, a timeout, a 5xx, 429, 401, 409 say nothing of an earlier send of it."""
    if isinstance(error, APIResponseValidationError):
        return True
    return isinstance(error, APIError) and error.status_code in _REFUSED_BODY


def _still_in_flight(error: OVOError | None, key: str) -> APIConnectionError:
    """What a run reports for a message whose earlier send's fate is still unknown."""
    cause = f"{type(error).__name__}: {error}" if error is not None else "no answer"
    still = APIConnectionError(
        "in flight when an earlier run stopped, and its re-send got no answer that tells "
        f"its fate ({cause})"[:1000]
        + "; it may have been sent: a later run re-sends it with the same key",
        may_have_been_sent=True,
    )
    still.idempotency_key = key
    return still


def _check_count(field: str, value: object, most: int) -> None:
    """An optional count: None (the default) or an int (not a bool) from 1 to `most`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ValidationError(field, f"must be None or an int from 1 to {most}, got {value!r}")


def _check_journal_path(journal: object) -> None:
    """A file a later run can open again: not "" or ":memory:" (SQLite would give a
    journal that vanishes with the run), no NUL, nothing the file system cannot name."""
    if not isinstance(journal, (str, os.PathLike)):
        raise ValidationError("journal", f"must be a file path, got {type(journal).__name__}")
    path = os.fspath(journal)
    if not isinstance(path, str):
        raise ValidationError("journal", f"must be a str path, got {type(path).__name__}")
    if path in ("", ":memory:"):
        raise ValidationError(
            "journal", f"must be a file path, got {path!r}: a run could not resume from it"
        )
    try:
        if "\x00" in path:
            raise ValueError
        os.fsencode(path)
    except (ValueError, UnicodeError):
        raise ValidationError("journal", f"{path!r:.80} is not a usable file name") from None


def _add(seen: set[str], identity: str) -> bool:
    """Add to `seen`; False if it was there."""
    if identity in seen:
        return False
    seen.add(identity)
    return True


#: A member's request, and its identity (set on every member once identities are in use).
_INDEX, _REQUEST, _IDENTITY = (operator.itemgetter(i) for i in (0, 2, 3))
#: A batch answer's entry's fields, and what they must be for its fast path.
_ENTRY_ID, _ENTRY_STATUS = operator.itemgetter("message_id"), operator.itemgetter("status")
_ENTRY_TO, _ENTRY_FROM = operator.itemgetter("to"), operator.itemgetter("from")
_REFUSED_TEXT = frozenset(status.value for status in _REFUSED)


def _settle(journal: Journal, row: int, outcomes: list[BulkOutcome]) -> None:
    """Write a request's outcomes to the journal: a batch accepted whole (the usual
    case) as lists of ids and statuses, anything else one entry per message."""
    first = outcomes[0].message if outcomes else None
    if first is not None:
        when = first.created_at
        ids, statuses = [], []
        for outcome in outcomes:
            message = outcome.message
            if message is None or message.created_at is not when:
                break
            ids.append(message.message_id)
            statuses.append(message.status)  # JSON writes an enum member as its value
        else:
            journal.settle_accepted(row, _iso(when), ids, statuses)
            return
    journal.settle(row, _journal_entries(outcomes))


def _journal_entries(outcomes: list[BulkOutcome]) -> list[tuple[str, Any]]:
    """(state, outcome) for the journal: [id, status, created_at] when accepted (the
    recipient and sender are the request's), an error as JSON otherwise."""
    entries: list[tuple[str, Any]] = []
    for outcome in outcomes:
        error = outcome.error
        if error is None:
            message = outcome.message
            assert message is not None
            # str.__str__: a status's plain text (formatting the enum costs 1 us).
            status = str.__str__(message.status)
            when = _iso(message.created_at)
            entries.append((ACCEPTED, [message.message_id, status, when]))
        else:
            state = UNKNOWN if error.may_have_been_sent else FAILED
            entries.append((state, error_to_json(error)))
    return entries


@functools.lru_cache(maxsize=64)
def _iso(when: Any) -> str:
    # A batch's messages share one created_at: format it once.
    return str(when.isoformat())


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
