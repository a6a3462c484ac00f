"""AsyncOVOClient: configuration, lifecycle, `with_options`, and the `sms` resource."""

from __future__ import annotations

import os
import re
import ssl
import urllib.request
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

import attrs
import httpx

from . import _validation
from ._defaults import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT, NOT_GIVEN, PICKLE_REFUSAL
from ._errors import OVOError, ValidationError
from ._phone import check_region
from ._pool import AiohttpIO, Pool, ShardedTransport, default_ssl_context
from ._retry import RetryPolicy
from ._transport import APIKey, Transport, check_timeout
from .resources.sms import AsyncSMS

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_LIMITS", "DEFAULT_TIMEOUT", "AsyncOVOClient"]

DEFAULT_BASE_URL = "https://api.ovocommunications.com/v1"
#: Keep-alive equals the maximum: with fewer, a burst reopens connections on every wave.
#: Seconds an idle connection is kept for reuse: below the 5 s after which uvicorn, Node.js
#: and Apache close an idle keep-alive connection, so the SDK never reuses one just as
#: the server closes it (that request would be lost unread, and reported as possibly
#: sent). A connection the server has already closed is found out before reuse.
KEEPALIVE_EXPIRY = 4.0
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_EXPIRY
)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress  # only plain-http base URLs need it

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: A host name as it goes on the wire (IDNA applied): letters, digits, '.', '-', '_'.
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+").fullmatch


def _check_host_and_port(url: httpx.URL, field: str) -> None:
    """A host to connect to and a port in 1-65535, before any I/O: httpx accepts
    `https://[bad` or `:99999`, and a port out of range failed deep in asyncio's
    connect with an error that said the message may have been sent."""
    host = url.raw_host.decode("ascii", "replace")
    if host and not _HOST_NAME(host):
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValidationError(field, f"{host!r} is not a host name or IP address") from None
    port = url.port
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError(field, f"port {port} is not in 1-65535")


def _check_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise ValidationError("base_url", f"must be a str, got {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except Exception as exc:
        raise ValidationError("base_url", f"{base_url!r} is not a valid URL: {exc}") from None
    if url.userinfo:
        # Never echo it: userinfo is a credential.
        raise ValidationError("base_url", "may not carry a user name or password (user@host)")
    if url.query or url.fragment or "?" in base_url or "#" in base_url:
        raise ValidationError(
            "base_url",
            f"{base_url!r} has a query or fragment; every path is appended to it, "
            "so calls would go to the wrong URL",
        )
    if not base_url.isascii() or not base_url.isprintable():
        raise ValidationError("base_url", f"{base_url!r} holds control or non-ASCII characters")
    _check_host_and_port(url, "base_url")
    if url.scheme == "https" and url.host:
        return base_url
    if url.scheme == "http" and url.host and _is_loopback(url.host):
        return base_url
    if url.scheme == "http":
        raise OVOError(
            f"base_url {base_url!r} uses plain http to a non-loopback host; "
            "the API key would travel unencrypted: use https"
        )
    raise OVOError(f"base_url {base_url!r} must be an absolute https URL")


class _Connection:
    """How the SDK builds its own pool; kept to build it again after fork or a new loop.

    A plain class: an attrs one costs about a millisecond of `import ovo_async`."""

    __slots__ = ("base_url", "io_backend", "proxy", "tls")

    def __init__(
        self, io_backend: str, base_url: str, tls: ssl.SSLContext, proxy: httpx.Proxy | None
    ) -> None:
        self.io_backend = io_backend
        self.base_url = base_url
        self.tls = tls
        self.proxy = proxy

    def make(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The SDK-owned `httpx.AsyncClient`: sharded pools unless a transport or env proxy.

        A plain-http loopback URL never goes through a proxy from the environment: the
        proxy would see the key in clear text.
        """
        loopback = _is_plain_loopback(self.base_url)
        env_proxy = not loopback and self.proxy is None and _proxies_configured()
        if transport is None and not env_proxy:
            options: dict[str, Any] = {"verify": self.tls, "proxy": self.proxy}
            # Through a proxy, httpx's pool whatever the io_backend: aiohttp has no SOCKS
            # (it sent an HTTP CONNECT to a SOCKS proxy), and only httpx's pool can tell a
            # tunnel that failed (not sent) from a request that lost its answer.
            if self.io_backend == "aiohttp" and self.proxy is None:
                try:
                    transport = AiohttpIO(DEFAULT_LIMITS, verify=self.tls)
                except ImportError:
                    raise OVOError(
                        "io_backend='aiohttp' needs the aiohttp extra: "
                        "pip install 'ovo-async[aiohttp]'"
                    ) from None
            else:
                transport = ShardedTransport(DEFAULT_LIMITS, **options)
        return httpx.AsyncClient(
            transport=transport,
            limits=DEFAULT_LIMITS,
            follow_redirects=False,
            trust_env=not loopback,
            verify=self.tls,
        )


def _tls_context(verify: Any, cert: Any) -> ssl.SSLContext:
    """One TLS context from `verify` (bool, CA path or SSLContext) and `cert` (client cert)."""
    if verify is True and cert is None:
        return default_ssl_context()
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        context = httpx.create_ssl_context()
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        try:
            if os.path.isdir(path):
                context = ssl.create_default_context(capath=path)
            else:
                context = ssl.create_default_context(cafile=path)
        except (OSError, ValueError) as exc:
            raise ValidationError(
                "verify", f"cannot load CA certificates from {path!r}: {exc}"
            ) from None
    else:
        raise ValidationError(
            "verify",
            f"must be True, False, a CA bundle path or an ssl.SSLContext, got {verify!r}",
        )
    if cert is not None:
        parts = (cert,) if isinstance(cert, (str, os.PathLike)) else cert
        if not isinstance(parts, tuple) or not 1 <= len(parts) <= 3:
            raise ValidationError("cert", "must be a path, (cert, key) or (cert, key, password)")
        try:
            # The password may be str, bytes or a callable: ssl checks it at run time.
            chain: tuple[Any, ...] = parts
            context.load_cert_chain(*chain)
        except (OSError, ValueError, TypeError) as exc:
            raise ValidationError("cert", f"cannot load the client certificate: {exc}") from None
    return context


def _proxy(proxy: Any) -> httpx.Proxy | None:
    if proxy is None:
        return None
    try:
        parsed = proxy if isinstance(proxy, httpx.Proxy) else httpx.Proxy(proxy)
    except Exception as exc:
        raise ValidationError("proxy", f"is not a usable proxy URL: {exc}") from None
    if not parsed.url.host:
        raise ValidationError("proxy", "has no host")
    _check_host_and_port(parsed.url, "proxy")
    if _is_socks(parsed):
        import importlib.util

        if importlib.util.find_spec("socksio") is None:
            raise OVOError("a SOCKS proxy needs the socks extra: pip install 'ovo-async[socks]'")
    return parsed


def _is_socks(proxy: httpx.Proxy | None) -> bool:
    return proxy is not None and proxy.url.scheme in ("socks5", "socks5h")


def _is_plain_loopback(base_url: str) -> bool:
    url = httpx.URL(base_url)
    return url.scheme == "http" and _is_loopback(url.host)


def _proxies_configured() -> bool:
    # httpx only honours HTTP(S)_PROXY when it builds its own transport: leave it to it then.
    return any(k in ("http", "https", "all") for k in urllib.request.getproxies())


def _retry_policy(max_retries: int | None, retry: RetryPolicy | None) -> RetryPolicy:
    policy = retry if retry is not None else RetryPolicy()
    if not isinstance(policy, RetryPolicy):
        raise ValidationError("retry", f"must be a RetryPolicy, got {type(policy).__name__}")
    if max_retries is not None:
        policy = attrs.evolve(policy, max_retries=_validation.count("max_retries", max_retries))
    return policy


def _hold_key(api_key: Any) -> APIKey | None:
    """The key (argument, else `OVO_API_KEY` stripped) in its masking holder, unchecked.

    It never raises, so no frame holding the plain key is ever part of a traceback.
    """
    if api_key is None:
        # Secrets files and `echo` leave a trailing newline: forgive it in the variable.
        return APIKey(os.environ.get("OVO_API_KEY", "")).stripped()
    return APIKey(api_key) if isinstance(api_key, str) else None


def _checked_key(key: APIKey | None, *, from_env: bool, given: type) -> APIKey:
    source = "OVO_API_KEY" if from_env else "api_key"
    if key is None:
        raise ValidationError("api_key", f"must be a str, got {given.__name__}")
    if not key:
        raise OVOError("no API key: pass api_key=... or set the OVO_API_KEY environment variable")
    problem = key.problem()
    if problem is not None:
        raise ValidationError(
            source, f"the API key {problem}; copy it again without them (it is not shown here)"
        )
    return key


def _bulk_run(*args: Any, **kwargs: Any) -> Any:
    """`sms.send_many`'s engine, loaded on first use (it pulls in anyio)."""
    from ._bulk import AsyncBulkRun

    return AsyncBulkRun(*args, **kwargs)


class AsyncOVOClient:
    """The async client for the OVO SMS API.

    Use it as `async with AsyncOVOClient(api_key=...) as client:` (or call `aclose()`), then
    `await client.sms.send(...)`. The key and base URL default to the `OVO_API_KEY` and
    `OVO_BASE_URL` environment variables. One pooled `httpx.AsyncClient` serves every call;
    pass `http_client` to use your own (the SDK never closes it) or `transport` to plug in
    an httpx async transport (for example `FakeOVO().transport()` in tests).
    `io_backend="aiohttp"` (the `aiohttp` extra) uses aiohttp's faster I/O under asyncio
    and httpx's own under trio; behaviour is otherwise the same.

    `verify` (True, False, a CA bundle path or an `ssl.SSLContext`), `cert` (a client
    certificate for mTLS) and `proxy` configure the SDK's own pool, which is rebuilt
    after `fork()` and for a new event loop; a client on a caller's `transport` or
    `http_client` refuses to send from a forked child.

    Everything is checked here, before any request: a bad key, header, URL, timeout or
    retry number raises `ValidationError` (the key's value is never shown). An answer
    body larger than `max_response_bytes` (10 MiB, decompressed) is refused unread, and
    with `max_segments` a message costing more SMS segments is a `ValidationError`.
    `default_region` (the `phone` extra) reads `to` numbers written as people do, such as
    `(415) 555-0123` for "US", and sends them as E.164.
    """

    sms: AsyncSMS

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        default_from: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        io_backend: Literal["httpx", "aiohttp"] = "httpx",
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        verify: bool | str | os.PathLike[str] | ssl.SSLContext = True,
        cert: str | tuple[str, str] | tuple[str, str, str] | None = None,
        proxy: str | httpx.Proxy | None = None,
        max_segments: int | None = None,
        default_region: str | None = None,
    ) -> None:
        held, from_env, given = _hold_key(api_key), api_key is None, type(api_key)
        # From here on no frame of ours holds the plain key: tracebacks with locals
        # (Sentry, `pytest -l`) print what frames hold.
        api_key = None
        key = _checked_key(held, from_env=from_env, given=given)
        if io_backend not in ("httpx", "aiohttp"):
            raise ValidationError("io_backend", f"must be 'httpx' or 'aiohttp', got {io_backend!r}")
        if io_backend == "aiohttp" and (http_client is not None or transport is not None):
            raise OVOError("io_backend='aiohttp' is for the SDK's own pool, not with transport")
        if http_client is not None and transport is not None:
            raise OVOError("pass either http_client or transport, not both")
        own_tls = verify is not True or cert is not None or proxy is not None
        if own_tls and (http_client is not None or transport is not None):
            raise OVOError(
                "verify, cert and proxy configure the SDK's own pool; "
                "set them on your http_client or transport instead"
            )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise OVOError(
                f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}"
            )
        url = _check_base_url(base_url or os.environ.get("OVO_BASE_URL") or DEFAULT_BASE_URL)
        if default_from is not None:
            _validation.sender("default_from", default_from)
        checked_timeout = check_timeout(timeout)
        policy = _retry_policy(max_retries, retry)
        headers = _validation.headers("default_headers", default_headers)
        cap = _validation.count("max_response_bytes", max_response_bytes)
        if max_segments is not None and (
            isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1
        ):
            raise ValidationError("max_segments", f"must be a positive int, got {max_segments!r}")
        connection = _Connection(io_backend, url, _tls_context(verify, cert), _proxy(proxy))
        if http_client is not None:
            pool = Pool(http_client, owned=False)
        elif transport is not None:
            # The SDK's httpx client around the caller's transport: it cannot be rebuilt
            # after fork (the transport's connections are the parent's).
            pool = Pool(connection.make(transport), owned=True)
        else:
            pool = Pool(connection.make(), owned=True, rebuild=connection.make)
        self._owns_pool = True
        self._transport = Transport(
            pool=pool,
            base_url=url,
            api_key=key,
            timeout=checked_timeout,
            retry=policy,
            default_headers=headers,
            max_response_bytes=cap,
        )
        self.default_from = default_from
        self._max_segments = max_segments
        self._region = check_region(default_region, field="default_region")
        self.sms = AsyncSMS(
            self._transport,
            default_from=default_from,
            bulk=_bulk_run,
            max_segments=max_segments,
            region=self._region,
        )

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._transport.base_url

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout applied to each attempt."""
        return self._transport.timeout

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy."""
        return self._transport.retry

    @property
    def is_closed(self) -> bool:
        """True once this client (or the client whose pool it shares) has been closed."""
        return self._transport.closed or self._transport.pool.closed

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout = NOT_GIVEN,
        max_retries: int = NOT_GIVEN,
        retry: RetryPolicy = NOT_GIVEN,
    ) -> AsyncOVOClient:
        """A client with other options that shares this one's connection pool.

        Cheap to make per call; closing it leaves this client open.
        """
        policy = self._transport.retry if retry is NOT_GIVEN else retry
        transport = self._transport.derive(
            pool=self._transport.pool,
            timeout=self._transport.timeout if timeout is NOT_GIVEN else check_timeout(timeout),
            retry=_retry_policy(None if max_retries is NOT_GIVEN else max_retries, policy),
        )
        return self._sibling(transport, owns_pool=False)

    def _sibling(self, transport: Transport, *, owns_pool: bool) -> AsyncOVOClient:
        client = object.__new__(type(self))
        client._owns_pool = owns_pool
        client._transport = transport
        client.default_from = self.default_from
        client._max_segments = self._max_segments
        client._region = self._region
        client.sms = AsyncSMS(
            transport,
            default_from=self.default_from,
            bulk=_bulk_run,
            max_segments=self._max_segments,
            region=self._region,
        )
        return client

    async def aclose(self) -> None:
        """Close the connection pool (unless it is a caller's `http_client`). Safe to repeat."""
        self._transport.closed = True
        if self._owns_pool:
            await self._transport.pool.aclose()

    def __reduce__(self) -> Any:
        raise TypeError(PICKLE_REFUSAL)

    async def __aenter__(self) -> AsyncOVOClient:
        if self.is_closed:
            raise OVOError("this client is closed; make a new one")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        # Also called on a half-built client (tracebacks with locals of a failed __init__).
        transport = getattr(self, "_transport", None)
        return f"<{type(self).__name__} base_url={getattr(transport, 'base_url', None)!r}>"
