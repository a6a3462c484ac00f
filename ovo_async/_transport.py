"""The one place that talks HTTP: headers, auth, retries, status -> error, JSON decoding.

Knows nothing of SMS: it sends a method, a path and a JSON body, and returns decoded JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    OVOError,
    error_class_for_status,
)
from ._retry import RetryPolicy, may_have_been_sent, retrying
from ._version import __version__

__all__ = ["APIKey", "Pool", "Transport", "user_agent"]

logger = logging.getLogger("ovo_async")

_PYTHON = "{}.{}.{}".format(*sys.version_info[:3])
USER_AGENT = f"ovo-async/{__version__} python/{_PYTHON} httpx/{httpx.__version__}"


def user_agent() -> str:
    """The `User-Agent` sent with every request."""
    return USER_AGENT


class APIKey:
    """Holds the API key so that no repr, str, vars() or log line can show it."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        self.__value = value

    def bearer(self) -> str:
        return "Bearer " + self.__value

    def __repr__(self) -> str:
        return "APIKey('****')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an API key holder cannot be pickled")


class Pool:
    """An `httpx.AsyncClient` shared by a client and the clients made by `with_options`.

    Only the client that made the pool closes it; a caller's `http_client` is never closed.
    """

    def __init__(self, http: httpx.AsyncClient, *, owned: bool) -> None:
        self.http = http
        self.owned = owned
        self.closed = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.owned:
            await self.http.aclose()


def _connection_error(exc: httpx.TransportError) -> APIConnectionError:
    # Before the request could be written (connect, pool wait, bad URL) the server cannot
    # have acted; after that the answer may just have been lost.
    not_sent = isinstance(
        exc,
        (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol),
    )
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"request timed out ({type(exc).__name__}): {text}", may_have_been_sent=not not_sent
        )
    return APIConnectionError(
        f"connection failed ({type(exc).__name__}): {text}", may_have_been_sent=not not_sent
    )


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds, from a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _api_error(response: httpx.Response) -> APIError:
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text
    code = param = request_id = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = _text(error.get("code"))
        param = _text(error.get("param"))
        request_id = _text(error.get("request_id"))
        message = _text(error.get("message")) or message
    elif isinstance(error, str) and error:
        message = error
    retry_after = None
    if response.status_code in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    error = error_class_for_status(response.status_code)(
        message,
        response=response,
        body=body,
        code=code,
        param=param,
        request_id=request_id or response.headers.get("x-request-id"),
        retry_after=retry_after,
    )
    if 300 <= response.status_code < 400:
        location = response.headers.get("location")
        error.args = (f"{error} (redirect to {location!r} not followed)",)
    return error


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class Transport:
    """Sends requests for one client configuration; shares its `Pool` with derived clients."""

    def __init__(
        self,
        *,
        pool: Pool,
        base_url: str,
        api_key: APIKey,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        default_headers: Mapping[str, str],
    ) -> None:
        self.pool = pool
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self.default_headers = dict(default_headers)
        self.closed = False
        self._headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **self.default_headers,
        }

    def derive(self, *, pool: Pool, timeout: httpx.Timeout, retry: RetryPolicy) -> Transport:
        """A transport with this one's key, URL and headers, and the given pool and options."""
        return Transport(
            pool=pool,
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=timeout,
            retry=retry,
            default_headers=self.default_headers,
        )

    def __repr__(self) -> str:
        return f"<Transport base_url={self.base_url!r}>"

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        idempotency_key: str | None = None,
        on_wait: Callable[[float, BaseException], None] | None = None,
        before_attempt: Callable[[], Any] | None = None,
    ) -> tuple[httpx.Response, Any]:
        """Send with retries; return the 2xx response and its decoded JSON.

        Every POST carries an `Idempotency-Key` (the caller's or a new UUID4), the same on
        every attempt; errors from a POST carry it and `may_have_been_sent`.
        `before_attempt` is awaited before each attempt (bulk sending paces with it).
        """
        if self.closed or self.pool.closed:
            raise OVOError("this client is closed; make a new one (or use `async with`)")
        headers = dict(self._headers)
        headers["Authorization"] = self.api_key.bearer()
        content = None
        idempotent = method == "GET"
        if not idempotent:
            if idempotency_key is None:
                idempotency_key = str(uuid.uuid4())
            headers["Idempotency-Key"] = idempotency_key
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        url = self.base_url + path
        try:
            # The first attempt runs outside tenacity: its loop costs ~80 us per call,
            # more than everything else the SDK adds, and most calls succeed first time.
            if before_attempt is not None:
                await before_attempt()
            return await self._attempt(method, url, path, headers, content)
        except OVOError as first:
            if not idempotent:
                first.idempotency_key = idempotency_key
            if self.retry.max_retries == 0:
                raise
            return await self._retry(
                first, method, url, path, headers, content, idempotent, on_wait, before_attempt
            )

    async def _retry(
        self,
        first: OVOError,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        idempotent: bool,
        on_wait: Callable[[float, BaseException], None] | None,
        before_attempt: Callable[[], Any] | None,
    ) -> tuple[httpx.Response, Any]:
        """Attempts 2..n: tenacity decides, starting from the first attempt's error."""
        pending: OVOError | None = first
        maybe_sent = first.may_have_been_sent
        try:
            async for attempt in retrying(
                self.retry, idempotent=idempotent, describe=f"{method} {path}", on_wait=on_wait
            ):
                with attempt:
                    if pending is not None:
                        error, pending = pending, None
                        raise error
                    if before_attempt is not None:
                        await before_attempt()
                    try:
                        return await self._attempt(method, url, path, headers, content)
                    except OVOError as exc:
                        maybe_sent = maybe_sent or exc.may_have_been_sent
                        raise
        except OVOError as exc:
            if not idempotent:
                exc.idempotency_key = first.idempotency_key
                exc.may_have_been_sent = maybe_sent
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _attempt(
        self, method: str, url: str, path: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[httpx.Response, Any]:
        if self.pool.closed:
            raise OVOError("this client is closed; make a new one (or use `async with`)")
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            response = await self.pool.http.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=self.timeout,
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            if debug:
                logger.debug("%s %s -> %s", method, path, type(exc).__name__)
            raise _connection_error(exc) from exc
        if debug:
            logger.debug(
                "%s %s -> %d in %.1f ms request_id=%s",
                method,
                path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
                response.headers.get("x-request-id"),
            )
        if not 200 <= response.status_code < 300:
            error = _api_error(response)
            error.may_have_been_sent = may_have_been_sent(response.status_code, error.retry_after)
            raise error
        try:
            data = response.json()
        except ValueError:
            raise APIResponseValidationError(
                f"{response.status_code} response is not JSON",
                response=response,
                body=response.text,
            ) from None
        return response, data
