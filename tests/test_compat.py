"""Private upstream names (DESIGN 7.1): each probe, with its name taken away as a new
upstream release would, says so with a WARNING and never switches a check off silently."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from ovo_async import _compat


@pytest.fixture(autouse=True)
def fresh_probes() -> Iterator[None]:
    """Each test sees each miss for the first time (a miss is warned about once)."""
    _compat._warned.clear()
    _compat.tunnel_connection_class.cache_clear()
    _compat.is_socket_readable.cache_clear()
    yield
    _compat._warned.clear()
    _compat.tunnel_connection_class.cache_clear()
    _compat.is_socket_readable.cache_clear()


def warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ovo_async" and r.levelno == logging.WARNING and name in r.getMessage()
    ]


def test_every_probe_finds_its_name_in_the_supported_versions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ovo_async")
    transport = httpx.AsyncHTTPTransport()
    pool = _compat.transport_pool(transport)
    assert isinstance(pool, httpcore.AsyncConnectionPool)
    assert _compat.set_network_backend(pool, httpcore.AnyIOBackend())
    assert _compat.tunnel_connection_class() is not None
    assert _compat.client_transport(httpx.AsyncClient()) is not None
    assert _compat.is_socket_readable() is not _compat._readable_by_select
    _compat.check_versions()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_httpx_transport_pool_gone(caplog: pytest.LogCaptureFixture) -> None:
    transport = httpx.AsyncHTTPTransport()
    del transport._pool
    assert _compat.transport_pool(transport) is None
    assert warnings_about(caplog, "AsyncHTTPTransport._pool")


def test_httpcore_network_backend_gone(caplog: pytest.LogCaptureFixture) -> None:
    # With it gone the SDK's asyncio streams were quietly not used.
    pool: Any = httpx.AsyncHTTPTransport()._pool
    del pool._network_backend
    assert _compat.set_network_backend(pool, httpcore.AnyIOBackend()) is False
    assert warnings_about(caplog, "_network_backend")


def test_httpcore_tunnel_class_gone(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpcore._async.http_proxy as proxy

    monkeypatch.delattr(proxy, "AsyncTunnelHTTPConnection")
    assert _compat.tunnel_connection_class() is None
    assert warnings_about(caplog, "AsyncTunnelHTTPConnection")


def test_httpcore_tunnel_state_gone(caplog: pytest.LogCaptureFixture) -> None:
    tunnel = object.__new__(httpcore.AsyncHTTPConnection)  # no _connected on it
    # Not known: taken as up, so a failure keeps the fate that never sends twice.
    assert _compat.tunnel_is_up(tunnel) is True
    assert warnings_about(caplog, "_connected")


def test_httpx_response_stream_gone(caplog: pytest.LogCaptureFixture) -> None:
    # With it gone the surplus-bytes defence stopped on the httpx-client path, silently.
    assert _compat.httpcore_stream(httpx.ByteStream(b"")) is None
    assert warnings_about(caplog, "_httpcore_stream")


def test_h11_state_gone(caplog: pytest.LogCaptureFixture) -> None:
    connection = object.__new__(httpcore.AsyncHTTP11Connection)  # no _h11_state on it

    class Inner:
        _connection = connection

    class PoolStream:
        _stream = Inner()

    assert _compat.h11_state(PoolStream()) is None
    assert warnings_about(caplog, "_h11_state")


def test_httpx_client_transport_gone(caplog: pytest.LogCaptureFixture) -> None:
    client = httpx.AsyncClient()
    del client._transport
    assert _compat.client_transport(client) is None
    assert warnings_about(caplog, "AsyncClient._transport")


def test_is_socket_readable_gone_is_checked_the_same_way(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module-level import of it made a renamed helper a raw ImportError from
    # AsyncOVOClient().
    import httpcore._utils

    monkeypatch.delattr(httpcore._utils, "is_socket_readable")
    readable = _compat.is_socket_readable()
    assert readable is _compat._readable_by_select
    assert warnings_about(caplog, "is_socket_readable")
    left, right = socket.socketpair()
    try:
        assert readable(left) is False
        right.send(b"x")
        assert readable(left) is True
        right.close()
        left.recv(1)
        assert readable(left) is True  # the peer's close is readable too
    finally:
        left.close()


async def test_a_client_still_sends_with_every_private_name_gone(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without any of them the SDK works on public behaviour, and says what is off."""
    import httpcore._async.http_proxy as proxy
    import httpcore._utils

    from ovo_async import AsyncOVOClient
    from ovo_async.testing import FakeOVO

    caplog.set_level(logging.WARNING, logger="ovo_async")
    monkeypatch.delattr(httpcore._utils, "is_socket_readable")
    monkeypatch.delattr(proxy, "AsyncTunnelHTTPConnection")
    made = httpx.AsyncHTTPTransport.__init__

    def without_pool(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self._pool_renamed = self._pool  # what a release renaming it would leave
        del self._pool

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "__init__", without_pool)
    for method in ("handle_async_request", "aclose"):
        own = getattr(httpx.AsyncHTTPTransport, method)
        monkeypatch.setattr(httpx.AsyncHTTPTransport, method, _through_renamed_pool(own))
    fake = FakeOVO()
    with fake.serve() as url:
        async with AsyncOVOClient(api_key="k", base_url=url) as client:
            sent = await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
    assert sent.message_id and len(fake.messages) == 1
    assert warnings_about(caplog, "AsyncHTTPTransport._pool")


def _through_renamed_pool(method: Any) -> Any:
    """httpx's own methods still find their pool (only the SDK's probe misses it)."""

    async def call(self: Any, *args: Any) -> Any:
        self._calls = getattr(self, "_calls", 0) + 1
        self._pool = self._pool_renamed
        try:
            return await method(self, *args)
        finally:
            self._calls -= 1
            if not self._calls:
                del self._pool

    return call


def test_a_version_outside_the_checked_ones_is_warned_about(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "1.1.0" if name == "httpcore" else real(name)
    )
    _compat.check_versions.cache_clear()
    try:
        _compat.check_versions()
    finally:
        _compat.check_versions.cache_clear()
    assert warnings_about(caplog, "httpcore 1.1.0 is outside")
