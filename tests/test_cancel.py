"""The pool survives cancellation: a thousand calls cut at random points, then it sends.

httpcore 1.0.x leaves a connection in its pool for good when a request is cancelled
while that connection is being opened (encode/httpcore #1093); five of them wedge a
5-connection shard. The SDK avoids such a shard and replaces it once it has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
from typing import Any

import httpx
import pytest

from ovo_async import AsyncOVOClient, OVOError, RetryPolicy
from ovo_async._client import DEFAULT_LIMITS

from .conftest import API_KEY, sent_json
from .loopback import Reply, scripted_server


def client_sockets_to(port: int) -> int:
    """Sockets of this process connected to `port` on loopback, counted from /proc/self/fd."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            state = fields[3]
            if remote_port == port and fields[9] in inodes and state == "01":  # ESTABLISHED
                count += 1
    return count


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_a_thousand_random_cancellations_leave_a_working_pool(io_backend: Any) -> None:
    rng = random.Random(1093)
    with scripted_server(Reply(200, sent_json(), delay=0.002)) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        client = AsyncOVOClient(
            api_key=API_KEY,
            base_url=server.url,
            retry=RetryPolicy(max_retries=0),
            timeout=httpx.Timeout(5.0, pool=2.0),
            io_backend=io_backend,
        )
        async with client:

            async def cut_short() -> None:
                call = client.sms.send(to="+14155550123", from_="OVO", message="Hi")
                with contextlib.suppress(asyncio.TimeoutError, OVOError):
                    await asyncio.wait_for(call, rng.uniform(0, 0.006))

            # Waves of 50 concurrent calls, each cancelled at a random point: in the pool
            # wait, while connecting, writing, or waiting for the answer.
            for _ in range(20):
                await asyncio.gather(*(cut_short() for _ in range(50)))
            sent = [
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
                for _ in range(100)
            ]
            assert len(sent) == 100
            gc.collect()
            assert client_sockets_to(port) <= (DEFAULT_LIMITS.max_connections or 0)


async def test_a_shard_wedged_by_orphaned_connections_is_replaced() -> None:
    """The state httpcore #1093 leaves, planted directly: without the fix, PoolTimeout."""
    import anyio
    import httpcore

    from ovo_async._pool import ShardedTransport

    with scripted_server(Reply(200, sent_json())) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        server.queue(Reply(200, sent_json(), delay=0.5))
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url=server.url,
            retry=RetryPolicy(max_retries=0),
            timeout=httpx.Timeout(5.0, pool=0.3),
        ) as client:
            sharded = client._transport.pool.http._transport
            assert isinstance(sharded, ShardedTransport)
            with anyio.move_on_after(0.1):  # cancelled mid-call, as wait_for would
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
            wedged = sharded._shards[0]
            pool = wedged.transport._pool
            origin = httpcore.Origin(b"http", b"127.0.0.1", port)
            # Five never-connected connections that no request owns: a full shard.
            pool._connections.extend(httpcore.AsyncHTTPConnection(origin) for _ in range(5))
            for _ in range(10):
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
            assert wedged not in sharded._shards
