"""Every private name of httpx, httpcore and h11 that the SDK still uses, in one place.

Each is looked up here when first needed. Found, it is used. Missing (an upstream
release moved it), the SDK logs one WARNING on the `ovo_async` logger that names it and
says what is off without it, and carries on with the public behaviour: a miss is never
silent, and `AsyncOVOClient()` never raises a foreign `ImportError` for it. The versions
these names were checked against are the ones `pyproject.toml` allows (`CHECKED`); an
installed version outside them is warned about once too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "CHECKED",
    "client_transport",
    "h11_state",
    "httpcore_stream",
    "is_socket_readable",
    "set_network_backend",
    "transport_pool",
    "tunnel_connection_class",
    "tunnel_is_up",
]

logger = logging.getLogger("ovo_async")

#: The upstream versions (lowest allowed, first not allowed) these names were checked on.
CHECKED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "httpx": ((0, 27), (1,)),
    "httpcore": ((1, 0, 9), (1, 1)),
    "h11": ((0, 16), (0, 17)),
}

_warned: set[str] = set()


def missing(name: str, off: str) -> None:
    """Say once that upstream's `name` is gone and what is off without it."""
    if name in _warned:
        return
    _warned.add(name)
    logger.warning(
        "ovo_async: %s is not there in the installed version (%s): %s. Install a version "
        "pyproject.toml allows, or report it.",
        name,
        _installed(name.split(".", 1)[0]),
        off,
    )


def _installed(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} not installed"


@functools.cache
def check_versions() -> None:
    """Warn once if httpx, httpcore or h11 is outside the versions checked here."""
    from importlib.metadata import PackageNotFoundError, version

    for package, (low, high) in CHECKED.items():
        try:
            text = version(package)
        except PackageNotFoundError:
            continue
        parts = tuple(int(p) for p in text.split(".")[:3] if p.isdigit())
        if not low <= parts < high:
            logger.warning(
                "ovo_async: %s %s is outside the versions its private names were checked "
                "on (>=%s,<%s); the SDK's defences that rely on them may be off",
                package,
                text,
                ".".join(map(str, low)),
                ".".join(map(str, high)),
            )


def _attribute(obj: Any, attribute: str, name: str, off: str) -> Any:
    value = getattr(obj, attribute, None)
    if value is None:
        missing(name, off)
    return value


def transport_pool(transport: Any) -> Any:
    """httpx's `AsyncHTTPTransport._pool`: the httpcore pool it sends through."""
    return _attribute(
        transport,
        "_pool",
        "httpx.AsyncHTTPTransport._pool",
        "requests go through httpx's transport layer (slower), and orphaned "
        "connections are not looked for",
    )


def set_network_backend(pool: Any, backend: Any) -> bool:
    """Give an httpcore pool (or proxy) its network backend: httpcore's public
    `network_backend=` argument, set after httpx made the pool. False if it cannot."""
    if not hasattr(pool, "_network_backend"):
        missing(
            "httpcore.AsyncConnectionPool._network_backend",
            "the SDK's asyncio streams are not used (httpcore's own are)",
        )
        return False
    pool._network_backend = backend
    return True


@functools.cache
def tunnel_connection_class() -> type | None:
    """httpcore's proxy tunnel connection, to subclass (None if it moved)."""
    try:
        from httpcore._async.http_proxy import AsyncTunnelHTTPConnection
    except ImportError:
        missing(
            "httpcore._async.http_proxy.AsyncTunnelHTTPConnection",
            "a proxy that fails before its tunnel is up is reported as may-have-been-sent "
            "and not retried",
        )
        return None
    return AsyncTunnelHTTPConnection


def tunnel_is_up(tunnel: Any) -> bool:
    """Whether an httpcore proxy tunnel got through CONNECT (its `_connected`). True when
    that cannot be told: a failure is then taken as after the request went out, the
    fate that never sends twice."""
    connected = getattr(tunnel, "_connected", None)
    if connected is None:
        missing(
            "httpcore.AsyncTunnelHTTPConnection._connected",
            "a proxy that fails before its tunnel is up is reported as may-have-been-sent",
        )
        return True
    return bool(connected)


def httpcore_stream(response_stream: Any) -> Any:
    """httpx's response stream's `_httpcore_stream`: the pool's stream under it."""
    return _attribute(
        response_stream,
        "_httpcore_stream",
        "httpx's response stream _httpcore_stream",
        "the check for bytes a server sent after its answer is off (on the httpx-client "
        "path): such bytes could be read as the next request's answer",
    )


def h11_state(pool_stream: Any) -> Any:
    """The h11 connection state of an httpcore pool stream's HTTP/1.1 connection."""
    connection = getattr(getattr(pool_stream, "_stream", None), "_connection", None)
    if connection is None:
        # HTTP/2 or a connection already released: nothing to look at.
        return None
    import httpcore

    if not isinstance(connection, httpcore.AsyncHTTP11Connection):
        return None
    return _attribute(
        connection,
        "_h11_state",
        "httpcore.AsyncHTTP11Connection._h11_state",
        "the check for bytes a server sent after its answer is off: such bytes could "
        "be read as the next request's answer",
    )


def client_transport(client: Any) -> Any:
    """httpx's `AsyncClient._transport`: the transport a client sends through."""
    return _attribute(
        client,
        "_transport",
        "httpx.AsyncClient._transport",
        "the SDK's own pool is used through httpx's client layer (slower)",
    )


@functools.cache
def is_socket_readable() -> Callable[[Any], bool]:
    """httpcore's `is_socket_readable` (poll(), or select() where there is none), or
    the same check made here if it moved."""
    try:
        from httpcore._utils import is_socket_readable as readable
    except ImportError:
        missing(
            "httpcore._utils.is_socket_readable",
            "idle connections are checked by the SDK's own select() instead",
        )
        return _readable_by_select
    return readable


def _readable_by_select(sock: Any) -> bool:
    """Whether a socket has something to read (data, or the peer's close)."""
    import select

    if sock is None or sock.fileno() == -1:
        return True
    readable, _, _ = select.select([sock], [], [], 0)
    return bool(readable)
