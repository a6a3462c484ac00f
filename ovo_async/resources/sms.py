"""The `sms` resource: send one message, send a batch, retrieve a message, bulk-send."""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx

from .. import _serde
from .. import _validation as v
from .._errors import APITimeoutError, ValidationError
from .._phone import normalize_number
from .._requests import make_request
from .._transport import Transport, check_timeout
from .._validation import DEFAULT_BATCH_SIZE
from ..models import BatchResult, Message, SentMessage, SMSRequest

if TYPE_CHECKING:
    from .._bulk import AsyncBulkRun
    from .._pacer import RateLimiter

__all__ = ["AsyncSMS"]

T = TypeVar("T")

# Parsing runs inside the transport, so a 2xx that does not fit is raised with its fate.
_SENT = _serde.parser(SentMessage)
_BATCH = _serde.parser(BatchResult)
_MESSAGE = _serde.parser(Message)
#: Shortest wait between `wait_until_final` polls, in seconds.
MIN_POLL_INTERVAL = 0.01


class AsyncSMS:
    """SMS operations, reached as `client.sms`."""

    def __init__(
        self,
        transport: Transport,
        *,
        default_from: str | None,
        bulk: Callable[..., AsyncBulkRun],
        max_segments: int | None = None,
        region: str | None = None,
    ) -> None:
        self._transport = transport
        self._default_from = default_from
        self._max_segments = max_segments
        self._region = region
        # The bulk engine sits above this layer: the client hands in its constructor.
        self._bulk = bulk

    async def send(
        self,
        *,
        to: str,
        from_: str | None = None,
        message: str,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> SentMessage:
        """Send one SMS and return the server's receipt.

        `to` is an E.164 number; `from_` a sender ID or number (default: the client's
        `default_from`); `callback_url` receives status updates. Bad input raises
        `ValidationError` before any request. `idempotency_key` (default: a new UUID4) is
        sent with every attempt, so a retry cannot send the message twice on a server that
        honours it. `timeout` (seconds, or an `httpx.Timeout`) replaces the client's for
        this call. The receipt's `request_id` is the server's id for the request.
        """
        limits = None if timeout is None else check_timeout(timeout)
        if self._region is not None:
            to = normalize_number(to, self._region)
        request = make_request(
            SMSRequest(to=to, message=message, from_=from_, callback_url=callback_url),
            default_from=self._default_from,
            max_segments=self._max_segments,
        )
        v.idempotency_key("idempotency_key", idempotency_key)
        return await self._send(request, idempotency_key, limits)

    async def _send(
        self,
        request: SMSRequest,
        idempotency_key: str | None,
        timeout: httpx.Timeout | None = None,
    ) -> SentMessage:
        return await self._transport.request(
            "POST",
            "/sms/send",
            parse=_SENT,
            body=_serde.request_body(request),
            idempotency_key=idempotency_key,
            timeout=timeout,
        )

    async def batch(
        self,
        messages: Iterable[SMSRequest | Mapping[str, Any]],
        *,
        callback_url: str | None = None,
        idempotency_key: str | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> BatchResult:
        """Send up to `MAX_BATCH_SIZE` (1,000) messages in one request.

        Items are `SMSRequest`s or mappings with the keys `to`, `from` (or `from_`),
        `message` and `callback_url`. A bad item raises `ValidationError` naming it
        (`messages[3].to`) before any request. Items the server refuses are reported in the
        result's `messages`, in the order given, not raised. `timeout` replaces the
        client's for this call.
        """
        limits = None if timeout is None else check_timeout(timeout)
        requests = self._batch_requests(messages)
        v.callback_url("callback_url", callback_url)
        v.idempotency_key("idempotency_key", idempotency_key)
        return await self._send_batch(requests, callback_url, idempotency_key, limits)

    async def _send_batch(
        self,
        requests: list[SMSRequest],
        callback_url: str | None,
        idempotency_key: str | None,
        timeout: httpx.Timeout | None = None,
    ) -> BatchResult:
        return await self._post_batch(requests, callback_url, idempotency_key, timeout, _BATCH)

    async def _send_batch_parts(
        self,
        requests: list[SMSRequest],
        idempotency_key: str | None,
        timeout: httpx.Timeout | None = None,
    ) -> _serde.BatchParts:
        """`_send_batch` for the bulk engine: the answer's entries left as decoded."""
        return await self._post_batch(requests, None, idempotency_key, timeout, _serde.batch_parts)

    async def _post_batch(
        self,
        requests: list[SMSRequest],
        callback_url: str | None,
        idempotency_key: str | None,
        timeout: httpx.Timeout | None,
        parse: Callable[[Any], T],
    ) -> T:
        body_of = _serde.request_body
        body: dict[str, Any] = {
            "messages": [
                # Inline for the usual message (a sender, no callback): 1,000 per batch.
                {"to": r.to, "message": r.message, "from": r.from_}
                if r.callback_url is None and r.from_ is not None
                else body_of(r)
                for r in requests
            ]
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        return await self._transport.request(
            "POST",
            "/sms/batch",
            parse=parse,
            body=body,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )

    def _batch_requests(self, messages: Any) -> list[SMSRequest]:
        if isinstance(messages, (str, bytes, Mapping, SMSRequest)) or not isinstance(
            messages, Iterable
        ):
            raise ValidationError(
                "messages", f"must be a list of messages, got {type(messages).__name__}"
            )
        items = list(messages)
        if not items:
            raise ValidationError("messages", "must hold at least one message")
        if len(items) > v.MAX_BATCH_SIZE:
            raise ValidationError(
                "messages",
                f"holds {len(items)} messages; a batch takes at most {v.MAX_BATCH_SIZE} "
                "(use sms.send_many for larger jobs)",
            )
        return [
            make_request(
                item,
                default_from=self._default_from,
                prefix=f"messages[{i}]",
                max_segments=self._max_segments,
                region=self._region,
            )
            for i, item in enumerate(items)
        ]

    async def retrieve(
        self, message_id: str, *, timeout: float | httpx.Timeout | None = None
    ) -> Message:
        """Fetch a message and its current status by id. Unknown ids raise `NotFoundError`.
        `timeout` replaces the client's for this call."""
        limits = None if timeout is None else check_timeout(timeout)
        v.message_id("message_id", message_id)
        return await self._transport.request(
            "GET", "/sms/" + quote(message_id, safe=""), parse=_MESSAGE, timeout=limits
        )

    async def wait_until_final(
        self, message_id: str, *, timeout: float = 300.0, interval: float = 2.0
    ) -> Message:
        """Poll `retrieve` until the message's status is final (delivered, failed,
        undelivered, rejected, or one the SDK does not know), and return it.

        For scripts without a callback endpoint. Checks every `interval` seconds; raises
        `APITimeoutError` if the status is still changing after `timeout` seconds.
        """
        v.message_id("message_id", message_id)
        limit = v.seconds("timeout", timeout, allow_zero=False)
        every = v.seconds("interval", interval, allow_zero=False)
        if every < MIN_POLL_INTERVAL:
            # interval=1e-9 polled thousands of times a second, against the account's limit.
            raise ValidationError(
                "interval", f"must be at least {MIN_POLL_INTERVAL} s between polls, got {every!r}"
            )
        import anyio  # on first use: `import ovo_async` does not load anyio

        deadline = anyio.current_time() + limit
        while True:
            message = await self.retrieve(message_id)
            if message.is_final:
                return message
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise APITimeoutError(
                    f"message {message_id!r} is still {message.status} after {limit:g} s",
                    may_have_been_sent=False,
                )
            await anyio.sleep(min(every, remaining))

    def send_many(
        self,
        messages: Iterable[SMSRequest | Mapping[str, Any]]
        | AsyncIterable[SMSRequest | Mapping[str, Any]],
        *,
        concurrency: int | None = None,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        rate_limit: float | None = None,
        idempotency_prefix: str | None = None,
        key: Callable[[Any], str] | None = None,
        journal: str | os.PathLike[str] | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout: float | httpx.Timeout | None = None,
    ) -> AsyncBulkRun:
        """Send many messages at high concurrency; yields one `BulkOutcome` per input.

        `messages` is any iterable or async iterable of `SMSRequest`s or mappings, taken
        lazily: at most O(concurrency x batch_size) messages are held at once, so a
        generator of millions is fine. A message's failure (invalid input, refused,
        retries exhausted) is an outcome with `.error`, never an exception that ends the run.

        - `batch_size` (default 100): messages per `/sms/batch` request; `None` sends each
          through `/sms/send`. Batching is far cheaper and each message keeps its recipient.
        - `concurrency`: requests in flight (default 4 batches, or 20 single sends).
        - `rate_limit`: messages per second, client-side, bursting one second's worth;
          or `rate_limiter`, any object with `async acquire(n)` and `pause(seconds)`.
        - `idempotency_prefix`: keys derive from each message's identity, never its
          position: a single send's key is `{prefix}-{identity}`, a batch's a digest of
          its members' identities. The identity is `key(item)` if you give `key`, else a
          digest of `to`, `from`, `message` and `callback_url` plus the occurrence number
          among equal messages. A re-run of the same job, filtered or reordered, repeats
          the same keys for the same messages.
        - `journal`: a SQLite file recording each request before it is sent and each
          outcome after. Run again with the same journal and what was accepted comes
          back as `replayed` outcomes without being sent; what was in flight when the
          process died is sent again with the same key and body if the client's policy
          has `retry_non_idempotent`, else reported as possibly sent.
        - `timeout`: replaces the client's for each request of the run.

        A 429 pauses every worker until its `Retry-After` has passed. Outcomes arrive in
        completion order (see `outcome.index`); `progress` has live counts. Use
        `async with` (or `aclose()`) to stop early.
        """
        return self._bulk(
            self,
            messages,
            concurrency=concurrency,
            batch_size=batch_size,
            rate_limit=rate_limit,
            idempotency_prefix=idempotency_prefix,
            key=key,
            journal=journal,
            rate_limiter=rate_limiter,
            timeout=timeout,
        )
