"""The retry policy: what is retried, how long to wait, and the tenacity loop built from it.

Safe by default: a POST (which costs money) is retried only when the server provably did
not act on it. Cancellation is never retried: the predicate only accepts `OVOError`s.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from . import _validation
from ._errors import APIConnectionError, APIError, OVOError

if TYPE_CHECKING:
    from tenacity import AsyncRetrying, RetryCallState

__all__ = [
    "RETRY_HOOKS",
    "RetryHooks",
    "RetryPolicy",
    "fate",
    "may_have_been_sent",
    "should_retry",
]

logger = logging.getLogger("ovo_async")


def _seconds(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    # nan or inf here once meant 3,000 retries in 3 s on a 429 storm.
    _validation.seconds(attribute.name, value)


def _count(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _validation.count(attribute.name, value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How failed requests are retried.

    - `max_retries`: retries after the first attempt (default 2, so 3 attempts).
    - `initial_backoff`, `max_backoff`: exponential backoff in seconds (0.5 doubling, capped at 8).
    - `jitter`: take up to a quarter off each backoff at random, so clients spread out.
    - `max_retry_after`: the longest `Retry-After` honoured; a longer one is raised at once.
    - `retry_non_idempotent`: also retry POST when its fate is unknown (read errors, read
      timeouts, 409, 5xx). Only safe against a server that honours `Idempotency-Key`.

    Numbers must be finite and non-negative, else `ValidationError`.
    """

    max_retries: int = attrs.field(default=2, validator=_count)
    initial_backoff: float = attrs.field(default=0.5, validator=_seconds)
    max_backoff: float = attrs.field(default=8.0, validator=_seconds)
    jitter: bool = True
    max_retry_after: float = attrs.field(default=60.0, validator=_seconds)
    retry_non_idempotent: bool = False

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry number `retry_number` (1-based) without a Retry-After."""
        delay = min(self.max_backoff, self.initial_backoff * 2.0 ** (retry_number - 1))
        if self.jitter:
            delay *= 1.0 - 0.25 * random.random()
        return delay


_GET_STATUSES = frozenset({408, 409, 429})
_POST_STATUSES = frozenset({408, 429})


def should_retry(error: BaseException, *, idempotent: bool, policy: RetryPolicy) -> bool:
    """The classification table of DESIGN section 3."""
    if not isinstance(error, OVOError):
        # Cancellation, KeyboardInterrupt and bugs are never retried.
        return False
    if isinstance(error, APIConnectionError):
        return idempotent or not error.may_have_been_sent or policy.retry_non_idempotent
    if not isinstance(error, APIError):
        return False
    if error.retry_after is not None and error.retry_after > policy.max_retry_after:
        return False
    status = error.status_code
    if idempotent:
        return status in _GET_STATUSES or status >= 500
    if status in _POST_STATUSES or (status == 503 and error.retry_after is not None):
        return True
    return policy.retry_non_idempotent and (status == 409 or status >= 500)


def may_have_been_sent(status_code: int, retry_after: float | None) -> bool:
    """Whether a POST answered with this status may have been acted on by the server."""
    if 200 <= status_code < 300:
        return True
    if status_code == 503 and retry_after is not None:
        return False
    return status_code >= 500 or status_code == 409


def fate(
    method: str, *, reached: bool, status: int | None = None, retry_after: float | None = None
) -> bool:
    """The one decision of whether the server may have acted on a request.

    A GET changes nothing, so it never "may have been sent". `reached`: some byte of
    the request may have left (False only for failures before that: connect, pool
    wait, a header refused locally). `status`: the answer's status,
    None when no answer arrived. A 2xx, even one whose body we cannot read, was acted on.
    """
    if method == "GET" or not reached:
        return False
    if status is None:
        return True
    return may_have_been_sent(status, retry_after)


class RetryHooks(Protocol):
    """What a caller up the stack (bulk sending's pacer) learns about retries.

    Set in `RETRY_HOOKS` for the current task; the resource and transport signatures
    carry no pacing: the retry loop looks the hooks up itself.
    """

    def waiting(self, seconds: float, error: BaseException) -> None:
        """A retry will wait `seconds` because of `error` (a 429's `Retry-After`, say)."""

    async def before_retry(self) -> None:
        """Awaited before each retry attempt goes out (after the wait)."""


#: The hooks of the current task, if any (contextvars are per task).
RETRY_HOOKS: ContextVar[RetryHooks | None] = ContextVar("ovo_async_retry_hooks", default=None)


class _Wait:
    """`Retry-After` when the server gave one, else the policy's backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, APIError) and error.retry_after is not None:
            return error.retry_after
        return self.policy.backoff(retry_state.attempt_number)


#: How many `instant_retries()` blocks are open: while any is, retries do not wait.
_instant = 0


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """Within this block retries happen as configured but without waiting (for tests of
    code that retries: a 429 with Retry-After: 2 should not cost the test suite 2 s)."""
    global _instant
    _instant += 1
    try:
        yield
    finally:
        _instant -= 1


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(0 if _instant else seconds)


def retrying(policy: RetryPolicy, *, idempotent: bool, describe: str) -> AsyncRetrying:
    """A tenacity loop for one call: `async for attempt in retrying(...): with attempt: ...`.

    `describe` names the call in log lines (for example `POST /sms/send`). The task's
    `RETRY_HOOKS`, if set, are told each wait before it starts.
    """
    hooks = RETRY_HOOKS.get()
    # Imported here: only a failed attempt needs them, and they add to import time.
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        assert error is not None
        logger.warning(
            "retrying %s (attempt %d of %d) in %.2f s after %s: %s",
            describe,
            state.attempt_number + 1,
            policy.max_retries + 1,
            wait,
            type(error).__name__,
            error,
        )
        if hooks is not None:
            hooks.waiting(wait, error)

    return AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        wait=_Wait(policy),
        retry=retry_if_exception(lambda e: should_retry(e, idempotent=idempotent, policy=policy)),
        sleep=_sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
