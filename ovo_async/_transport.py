"""The one place that talks HTTP: headers, auth, retries, status -> error, JSON decoding.

Knows nothing of SMS: it sends a method, a path and a JSON body, and returns decoded JSON.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from . import _compat, _json, _serde, _validation
from ._defaults import DEFAULT_MAX_RESPONSE_BYTES
from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    OVOError,
    ResponseTooLargeError,
    ValidationError,
    error_class_for_status,
)
from ._pool import AiohttpIO, Answer, NotBuilt, Pool, ShardedTransport
from ._retry import RETRY_HOOKS, RetryPolicy, fate, retrying
from ._version import __version__

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "APIKey",
    "Pool",
    "Transport",
    "new_idempotency_key",
    "user_agent",
]

T = TypeVar("T")

#: Only encodings the SDK can decompress in bounded steps (no brotli or zstd bombs).
ACCEPT_ENCODING = "gzip, deflate"

logger = logging.getLogger("ovo_async")

_PYTHON = "{}.{}.{}".format(*sys.version_info[:3])
USER_AGENT = f"ovo-async/{__version__} python/{_PYTHON} httpx/{httpx.__version__}"


_UUID4_BITS = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_UUID4_MASK = ~((0xF000 << 64) | (0xC000 << 48))


def new_idempotency_key() -> str:
    """A random UUID4 as text: what `str(uuid.uuid4())` gives, for a third of its cost
    (a bulk run without a prefix makes one per request)."""
    n = (int.from_bytes(os.urandom(16), "big") & _UUID4_MASK) | _UUID4_BITS
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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

    def stripped(self) -> APIKey:
        """This key without surrounding whitespace (a secrets file's newline)."""
        return APIKey(self.__value.strip())

    def __bool__(self) -> bool:
        return bool(self.__value)

    def problem(self) -> str | None:
        """Why this key cannot be sent in a header, without showing it; None if it can."""
        if not self.__value.isascii() or not self.__value.isprintable():
            return "holds control or non-ASCII characters"
        if any(c.isspace() for c in self.__value):
            return "holds whitespace"
        return None

    def __repr__(self) -> str:
        return "APIKey('****')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an API key holder cannot be pickled")


class BearerAuth(httpx.Auth):
    """Sets `Authorization` on each request as it leaves, so no SDK frame holds the key.

    Tracebacks with locals (Sentry, `pytest -l`, rich) print what frames hold: a dict
    of headers would show the key; this object and the request's `httpx.Headers` do not.
    """

    def __init__(self, key: APIKey) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._key.bearer()
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(****)"


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


# Errors raised before any byte of the request could leave this process.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.ProxyError,
)


def _reached(exc: Exception) -> bool:
    """Whether a request that failed with `exc` may have reached the server."""
    if isinstance(exc, _NOT_SENT):
        return False
    # socksio's errors come only from the SOCKS handshake, before the request is sent;
    # httpcore lets its ProtocolError (a malformed reply) through unmapped.
    return not type(exc).__module__.startswith("socksio")


def _connection_error(exc: Exception, method: str) -> APIConnectionError:
    """Any failure to get an answer, from httpx or from a library under it."""
    reached = _reached(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"request timed out ({type(exc).__name__}): {text}",
            may_have_been_sent=fate(method, reached=reached),
        )
    if not isinstance(exc, httpx.HTTPError):
        # aiohttp, h11, a caller's transport: we cannot tell how far it got.
        text = f"{type(exc).__module__}.{type(exc).__qualname__}: {text}"
    return APIConnectionError(
        f"connection failed ({type(exc).__name__}): {text}"[:1000],
        may_have_been_sent=fate(method, reached=reached),
    )


class _Decoder:
    """Content-Encoding decoding in bounded steps: a gzip bomb never inflates past the cap."""

    def __init__(self, encoding: str) -> None:
        self._stages: list[Any] = []
        for name in reversed([e.strip().lower() for e in encoding.split(",") if e.strip()]):
            if name == "identity":
                continue
            if name in ("gzip", "x-gzip"):
                self._stages.append(zlib.decompressobj(zlib.MAX_WBITS | 16))
            elif name == "deflate":
                self._stages.append(_Deflate())
            else:
                raise ValueError(f"unsupported Content-Encoding {name!r}")

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decode `data` in pieces of at most `_STEP` bytes, so the caller can stop early."""
        return _inflate(self._stages, data)

    def finish(self) -> None:
        for stage in self._stages:
            if not stage.eof:
                raise ValueError("compressed body is truncated")


#: The most bytes one decompression step produces.
_STEP = 256 * 1024


def _inflate(stages: list[Any], data: bytes) -> Iterator[bytes]:
    if not stages:
        if data:
            yield data
        return
    first, rest = stages[0], stages[1:]
    while data:
        out = first.decompress(data, _STEP)
        data = first.unconsumed_tail
        yield from _inflate(rest, out)


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped, or raw (the first bytes tell)."""

    def __init__(self) -> None:
        self._inner: Any = None

    @property
    def eof(self) -> bool:
        return self._inner is None or bool(self._inner.eof)

    @property
    def unconsumed_tail(self) -> bytes:
        return b"" if self._inner is None else bytes(self._inner.unconsumed_tail)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            if not data:
                return b""
            raw = (data[0] & 0x0F) != 8  # zlib's header names the deflate method
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        out: bytes = self._inner.decompress(data, max_length)
        return out


class _Body:
    """What was read of an answer: its bytes, or why they could not be read."""

    __slots__ = ("content", "problem")

    def __init__(self, content: bytes, problem: str | None) -> None:
        self.content = content
        self.problem = problem


async def _read_capped(response: httpx.Response, cap: int) -> _Body:
    """Read and decompress the body, never holding more than `cap` bytes of it.

    Raises `ValueError` past the cap; decoding trouble comes back as `problem`.
    """
    try:
        # A transport that read the body itself (mocks, in-process apps) hands it over
        # decoded by httpx: nothing more to stream.
        content = response.content
    except httpx.ResponseNotRead:
        pass
    else:
        if len(content) > cap:
            raise ValueError(f"answer body exceeds max_response_bytes ({cap:,} bytes)")
        return _Body(content, None)
    return await _read_stream(response.aiter_raw(), response.headers.get("content-encoding"), cap)


async def _read_stream(chunks: AsyncIterator[bytes], encoding: str | None, cap: int) -> _Body:
    """`_read_capped` for a stream of raw (still encoded) chunks."""
    decoder: _Decoder | None = None
    problem: str | None = None
    try:
        decoder = _Decoder(encoding or "")
    except ValueError as exc:
        problem = str(exc)
    buffer = bytearray()
    raw = 0
    async for chunk in chunks:
        raw += len(chunk)
        if raw > cap:
            raise ValueError(f"answer body exceeds max_response_bytes ({cap:,} bytes)")
        if decoder is None or problem is not None:
            continue  # drain, so the connection can be reused
        try:
            for piece in decoder.feed(chunk):
                if len(buffer) + len(piece) > cap:
                    raise ValueError(f"answer body exceeds max_response_bytes ({cap:,} bytes)")
                buffer += piece
        except zlib.error as exc:
            problem = f"could not decompress the body: {exc}"
    if decoder is not None and problem is None:
        try:
            decoder.finish()
        except ValueError as exc:
            problem = str(exc)
    return _Body(bytes(buffer), problem)


def _api_error(response: httpx.Response, body: _Body, method: str) -> APIError:
    """The error for a non-2xx answer, with whatever could be read of its body."""
    decoded: Any
    try:
        decoded = _json.loads(body.content) if body.problem is None else body.problem
    except ValueError:
        decoded = body.content.decode("utf-8", "replace")
    code = param = request_id = None
    message = response.reason_phrase or f"HTTP {response.status_code}"
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if isinstance(error, dict):
        code = _text(error.get("code"))
        param = _text(error.get("param"))
        request_id = _text(error.get("request_id"))
        message = _text(error.get("message")) or message
    elif isinstance(error, str) and error:
        message = error[:1000]
    retry_after = None
    if response.status_code in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    api_error = error_class_for_status(response.status_code)(
        message,
        response=response,
        body=decoded,
        code=code,
        param=param,
        request_id=request_id or response.headers.get("x-request-id"),
        retry_after=retry_after,
    )
    if 300 <= response.status_code < 400:
        location = response.headers.get("location")
        api_error.args = (f"{api_error} (redirect to {location!r} not followed)",)
    elif response.status_code in (401, 403, 404):
        # A wrong key, or a base_url missing its `/v1`: the URL is what tells them apart.
        url = response.request.url.copy_with(userinfo=b"")
        api_error.args = (f"{api_error} ({method} {url})",)
    api_error.may_have_been_sent = fate(
        method, reached=True, status=response.status_code, retry_after=retry_after
    )
    return api_error


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:1000]


def check_timeout(value: float | httpx.Timeout | None) -> httpx.Timeout:
    """A client's or a call's `timeout`: seconds for each phase, or an `httpx.Timeout`."""
    if isinstance(value, httpx.Timeout):
        for phase in ("connect", "read", "write", "pool"):
            seconds = getattr(value, phase)
            if seconds is not None:
                _validation.seconds(f"timeout.{phase}", seconds, allow_zero=False)
        return value
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(
            "timeout", f"must be a number of seconds or an httpx.Timeout, got {value!r}"
        )
    return httpx.Timeout(_validation.seconds("timeout", value, allow_zero=False))


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
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.pool: Pool = pool
        self.base_url: str = base_url.rstrip("/")
        self.api_key: APIKey = api_key
        self.timeout: httpx.Timeout = timeout
        self.retry: RetryPolicy = retry
        self.default_headers: dict[str, str] = dict(default_headers)
        self.max_response_bytes: int = max_response_bytes
        self.closed: bool = False
        self._auth = BearerAuth(api_key)
        self._headers = {
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
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
            max_response_bytes=self.max_response_bytes,
        )

    def __repr__(self) -> str:
        return f"<Transport base_url={self.base_url!r}>"

    async def request(
        self,
        method: str,
        path: str,
        *,
        parse: Callable[[Any], T],
        body: Any = None,
        idempotency_key: str | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> T:
        """Send with retries; return `parse(decoded JSON)` of the 2xx answer.

        `timeout` replaces the client's for this call (each phase of each attempt).

        Every POST carries an `Idempotency-Key` (the caller's or a new UUID4), the same on
        every attempt; every error from a POST carries it and `may_have_been_sent`. A 2xx
        whose body is not JSON or that `parse` rejects is an `APIResponseValidationError`
        that may have been sent. Retries tell the task's `RETRY_HOOKS` (bulk pacing).
        """
        if self.closed or self.pool.closed:
            raise OVOError("this client is closed; make a new one (or use `async with`)")
        headers = dict(self._headers)
        content = None
        idempotent = method == "GET"
        if not idempotent:
            if idempotency_key is None:
                idempotency_key = new_idempotency_key()
            headers["Idempotency-Key"] = idempotency_key
        if body is not None:
            headers["Content-Type"] = "application/json"
            try:
                content = _json.dumps(body)
            except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                raise ValidationError("body", f"cannot be sent as JSON: {exc}") from None
        url = self.base_url + path
        limits = timeout or self.timeout
        try:
            # The first attempt runs outside tenacity: its loop costs ~80 us per call,
            # more than everything else the SDK adds, and most calls succeed first time.
            return await self._attempt(method, url, path, headers, content, parse, limits)
        except OVOError as first:
            if not idempotent:
                first.idempotency_key = idempotency_key
            if self.retry.max_retries == 0:
                raise
            return await self._retry(
                first,
                method,
                url,
                path,
                headers,
                content,
                parse,
                idempotent,
                limits,
            )

    async def _retry(
        self,
        first: OVOError,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        parse: Callable[[Any], T],
        idempotent: bool,
        timeout: httpx.Timeout,
    ) -> T:
        """Attempts 2..n: tenacity decides, starting from the first attempt's error."""
        pending: OVOError | None = first
        maybe_sent = first.may_have_been_sent
        try:
            hooks = RETRY_HOOKS.get()
            async for attempt in retrying(
                self.retry, idempotent=idempotent, describe=f"{method} {path}"
            ):
                with attempt:
                    if pending is not None:
                        error, pending = pending, None
                        raise error
                    if hooks is not None:
                        await hooks.before_retry()
                    try:
                        return await self._attempt(
                            method, url, path, headers, content, parse, timeout
                        )
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
        self,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        parse: Callable[[Any], T],
        timeout: httpx.Timeout,
    ) -> T:
        """One request and its answer. Every failure leaves here as an `OVOError` whose
        `may_have_been_sent` comes from `fate()`; nothing else is raised but cancellation."""
        if self.pool.closed:
            raise OVOError("this client is closed; make a new one (or use `async with`)")
        http = self.pool.client()
        # httpx keeps a client's transport here. The SDK's own (sharded pools, aiohttp)
        # can skip the httpx client's layer; a caller's client or transport goes through it.
        io = _compat.client_transport(http)
        if isinstance(io, (ShardedTransport, AiohttpIO)) and io.direct():
            return await self._attempt_direct(
                io, method, url, path, headers, content, parse, timeout
            )
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            request = http.build_request(
                method, url, content=content, headers=headers, timeout=timeout
            )
        except Exception as exc:
            raise _not_built(f"{type(exc).__name__}: {exc}", method) from None
        if http.is_closed:
            raise OVOError("the http_client given to this client is closed")
        try:
            response = await http.send(
                request, auth=self._auth, stream=True, follow_redirects=False
            )
        except Exception as exc:
            raise self._send_failed(exc, method, path, debug) from None
        try:
            body = await _read_capped(response, self.max_response_bytes)
        except ValueError as exc:  # past the cap
            raise ResponseTooLargeError(
                f"{response.status_code} {exc}",
                may_have_been_sent=fate(method, reached=True, status=response.status_code),
            ) from None
        except Exception as exc:
            raise _connection_error(exc, method) from None
        finally:
            await _close_quietly(response)
        status = response.status_code
        if debug:
            _log_answer(method, path, status, started, response.headers.get("x-request-id"))
        if not 200 <= status < 300:
            raise _api_error(response, body, method)
        return _serde.with_response(
            self._parse(method, status, lambda: response, body, parse),
            response.headers,  # a case-insensitive Mapping; copied only if someone must
        )

    def _send_failed(self, exc: Exception, method: str, path: str, debug: bool) -> OVOError:
        """The error for a request that got no answer, with its fate."""
        if debug:
            logger.debug("%s %s -> %s", method, path, type(exc).__name__)
        if self.pool.closed:
            return APIConnectionError(
                "the client was closed while this request was in flight",
                may_have_been_sent=fate(method, reached=_reached(exc)),
            )
        return _connection_error(exc, method)

    async def _attempt_direct(
        self,
        io: ShardedTransport | AiohttpIO,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        content: bytes | None,
        parse: Callable[[Any], T],
        timeout: httpx.Timeout,
    ) -> T:
        """`_attempt` through the SDK's own I/O (`exchange`), without the httpx client:
        the same timeouts, fates, errors, size cap, decoding and log line. An httpx
        `Response` is made only for an error, which carries one."""
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        try:
            answer: Answer = await io.exchange(method, url, headers, content, timeout, self.api_key)
        except NotBuilt as exc:
            raise _not_built(str(exc), method) from None
        except Exception as exc:
            raise self._send_failed(exc, method, path, debug) from None
        status = answer.status
        complete = False
        try:
            body = await _read_stream(
                answer.chunks(), answer.headers.get("content-encoding"), self.max_response_bytes
            )
            complete = True
        except ValueError as exc:  # past the cap
            raise ResponseTooLargeError(
                f"{status} {exc}", may_have_been_sent=fate(method, reached=True, status=status)
            ) from None
        except Exception as exc:
            raise _connection_error(exc, method) from None
        finally:
            # Read to the end: the connection goes back to the pool. Otherwise (an error,
            # or cancellation) it is closed, never left half-read for the next request.
            try:
                await (answer.release() if complete else answer.close())
            except Exception as exc:  # the answer is read; failing to release is not yours
                logger.debug("closing a response failed: %s", type(exc).__name__)
        if debug:
            _log_answer(method, path, status, started, answer.headers.get("x-request-id"))

        def response() -> httpx.Response:
            # What errors carry: status, headers, reason and the request (without its key).
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k not in ("content-encoding", "content-length", "transfer-encoding")
            }
            return httpx.Response(
                status,
                headers=kept,
                content=body.content,
                request=httpx.Request(method, url, headers=headers),
                extensions=(
                    {}
                    if answer.reason is None
                    else {"reason_phrase": answer.reason.encode("latin-1", "replace")}
                ),
            )

        if not 200 <= status < 300:
            raise _api_error(response(), body, method)
        return _serde.with_response(
            self._parse(method, status, response, body, parse), answer.headers
        )

    def _parse(
        self,
        method: str,
        status: int,
        response: Callable[[], httpx.Response],
        body: _Body,
        parse: Callable[[Any], T],
    ) -> T:
        problem = body.problem
        data: Any = None
        if problem is None and not body.content.strip():
            problem = f"{status} answer has no body"
        if problem is None:
            try:
                data = _json.loads(body.content)
            except ValueError as exc:
                problem = f"{status} answer is not JSON: {exc}"
        if problem is None:
            try:
                return parse(data)
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                problem = f"{status} {exc}"
        if data is None:
            data = body.content.decode("utf-8", "replace")[:10_000]
        error = APIResponseValidationError(problem[:1000], response=response(), body=data)
        # The server accepted the request: whatever we failed to read, it may have acted.
        error.may_have_been_sent = fate(method, reached=True, status=status)
        raise error


def _not_built(reason: str, method: str) -> APIConnectionError:
    """A request that could not be made: nothing left this process."""
    return APIConnectionError(
        f"could not build the request ({reason})"[:1000],
        may_have_been_sent=fate(method, reached=False),
    )


def _log_answer(
    method: str, path: str, status: int, started: float, request_id: str | None
) -> None:
    # The one DEBUG line per request: never a header, never the key.
    elapsed = (time.perf_counter() - started) * 1000
    logger.debug("%s %s -> %d in %.1f ms request_id=%s", method, path, status, elapsed, request_id)


async def _close_quietly(response: httpx.Response) -> None:
    try:
        await response.aclose()
    except Exception as exc:  # the answer is read; a failure to release is not the caller's
        logger.debug("closing a response failed: %s", type(exc).__name__)
