"""The SDK's own pool: sharded httpx pools, and the opt-in aiohttp I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Literal

import httpx
import pytest
import trio

from ovo_async import APIConnectionError, AsyncOVOClient, OVOError, RetryPolicy
from ovo_async._pool import ShardedTransport

from .conftest import API_KEY, sent_json
from .loopback import DROP, Reply, ScriptedServer, scripted_server

TO = "+14155550123"
Backend = Literal["httpx", "aiohttp"]
QUICK = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=False)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server(Reply(201, sent_json())) as s:
        yield s


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_sequential_calls_reuse_one_connection(
    server: ScriptedServer, io_backend: Backend
) -> None:
    async with AsyncOVOClient(
        api_key=API_KEY, base_url=server.url, io_backend=io_backend
    ) as client:
        for _ in range(20):
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert server.count == 20
    assert server.connections == 1


async def test_concurrency_spreads_over_shards_within_the_limit(server: ScriptedServer) -> None:
    server.default = Reply(201, sent_json(), delay=0.05)
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as client:
        transport = client._transport.pool.http._transport
        assert isinstance(transport, ShardedTransport) and transport.shard_count == 20
        await asyncio.gather(
            *(client.sms.send(to=TO, from_="OVO", message="Hi") for _ in range(30))
        )
    assert server.count == 30
    assert server.connections == 30


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_dropped_post_is_never_resent(server: ScriptedServer, io_backend: Backend) -> None:
    """httpx-aiohttp reports a server that hung up as ConnectTimeout ("never connected");
    taken at its word, the POST would be retried and the SMS sent twice."""
    server.queue(DROP)
    async with AsyncOVOClient(
        api_key=API_KEY,
        base_url=server.url,
        retry=QUICK,
        io_backend=io_backend,
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert server.count == 1
    assert info.value.may_have_been_sent is True


async def test_aiohttp_refused_connection_is_retried_and_not_sent() -> None:
    with scripted_server() as gone:
        url = gone.url
    async with AsyncOVOClient(
        api_key=API_KEY, base_url=url, retry=QUICK, io_backend="aiohttp"
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is False


def test_aiohttp_backend_falls_back_to_httpx_under_trio(server: ScriptedServer) -> None:
    async def main() -> str:
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=server.url, io_backend="aiohttp"
        ) as client:
            return (await client.sms.send(to=TO, from_="OVO", message="Hi")).message_id

    assert trio.run(main) == "sm_123"
    assert server.count == 1


def test_aiohttp_backend_is_only_for_the_sdk_pool() -> None:
    import httpx

    with pytest.raises(OVOError, match="io_backend"):
        AsyncOVOClient(api_key=API_KEY, io_backend="curl")  # type: ignore[arg-type]
    with pytest.raises(OVOError, match="io_backend"):
        AsyncOVOClient(api_key=API_KEY, io_backend="aiohttp", http_client=httpx.AsyncClient())


def test_proxy_environment_keeps_httpx_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    client = AsyncOVOClient(api_key=API_KEY)
    assert not isinstance(client._transport.pool.http._transport, ShardedTransport)


def test_httpcore_errors_become_the_httpx_errors_httpx_would_raise() -> None:
    """The direct path maps httpcore's errors itself: each must come out as the httpx
    class of the same name (the fate of a request depends on which)."""
    import httpcore

    from ovo_async._pool import _as_httpx

    names = [
        "ConnectError",
        "ConnectTimeout",
        "PoolTimeout",
        "ReadError",
        "ReadTimeout",
        "WriteError",
        "WriteTimeout",
        "LocalProtocolError",
        "RemoteProtocolError",
        "ProxyError",
        "UnsupportedProtocol",
    ]
    for name in names:
        mapped = _as_httpx(getattr(httpcore, name)("boom"))
        assert type(mapped) is getattr(httpx, name) and str(mapped) == "boom", name
    other = ValueError("not httpcore's")
    assert _as_httpx(other) is other


def test_idle_connections_expire_before_common_servers_close_them() -> None:
    """uvicorn, Node.js and Apache close an idle keep-alive connection after 5 s; httpx's
    default kept them 5 s too, so a send could meet the server's close unread."""
    from ovo_async._client import DEFAULT_LIMITS

    assert DEFAULT_LIMITS.keepalive_expiry is not None and DEFAULT_LIMITS.keepalive_expiry < 5


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_a_connection_idle_past_the_expiry_is_not_reused(
    io_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import httpx

    from ovo_async import AsyncOVOClient, RetryPolicy, _client

    from .conftest import sent_json
    from .loopback import Reply, scripted_server

    monkeypatch.setattr(
        _client,
        "DEFAULT_LIMITS",
        httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=0.2),
    )
    with scripted_server(Reply(201, sent_json())) as server:
        async with AsyncOVOClient(
            api_key="k",
            base_url=server.url,
            retry=RetryPolicy(max_retries=0),
            io_backend=io_backend,  # type: ignore[arg-type]
        ) as client:
            await client.sms.send(to="+14155550123", from_="OVO", message="one")
            await client.sms.send(to="+14155550123", from_="OVO", message="two")
            assert server.connections == 1  # reused while fresh
            await asyncio.sleep(0.4)  # idle past the expiry: the time is the test
            await client.sms.send(to="+14155550123", from_="OVO", message="three")
        assert server.connections == 2
