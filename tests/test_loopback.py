"""Retries, timeouts and cancellation against a real HTTP server on 127.0.0.1.

Counts are what the server received, so "sent once" means once on a real socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from ovo_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncOVOClient,
    InternalServerError,
    RetryPolicy,
)

from .conftest import API_KEY, message_json, sent_json
from .loopback import DROP, Reply, ScriptedServer, scripted_server

TO = "+14155550123"
SMALL = RetryPolicy(max_retries=2, initial_backoff=0.01, max_backoff=0.02, jitter=False)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as s:
        yield s


#: Every test runs on both I/O paths: httpx's, and aiohttp's that goes around httpx.
BACKEND = {"io_backend": "httpx"}


@pytest.fixture(autouse=True, params=["httpx", "aiohttp"])
def io_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    BACKEND["io_backend"] = request.param
    yield request.param
    BACKEND["io_backend"] = "httpx"


def make(server: ScriptedServer, **kwargs: object) -> AsyncOVOClient:
    options: dict[str, object] = {"retry": SMALL, **BACKEND, **kwargs}
    return AsyncOVOClient(api_key=API_KEY, base_url=server.url, **options)  # type: ignore[arg-type]


async def test_post_answer_delayed_past_timeout_is_sent_once(server: ScriptedServer) -> None:
    server.queue(Reply(201, sent_json(), delay=5))
    async with make(server, timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="job-1")
        assert time.monotonic() - started < 2
    assert server.count == 1
    assert info.value.may_have_been_sent is True
    assert info.value.idempotency_key == "job-1"
    assert server.received[0].headers["idempotency-key"] == "job-1"


async def test_post_dropped_connection_is_not_resent(server: ScriptedServer) -> None:
    server.queue(DROP)
    async with make(server) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert server.count == 1
    assert info.value.may_have_been_sent is True


async def test_post_dropped_connection_retried_when_server_honours_keys(
    server: ScriptedServer,
) -> None:
    server.queue(DROP, Reply(201, sent_json()))
    policy = RetryPolicy(initial_backoff=0.01, jitter=False, retry_non_idempotent=True)
    async with make(server, retry=policy) as client:
        await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert server.count == 2
    keys = {r.headers["idempotency-key"] for r in server.received}
    assert len(keys) == 1


async def test_get_dropped_connection_is_retried(server: ScriptedServer) -> None:
    server.queue(DROP, Reply(200, message_json()))
    async with make(server) as client:
        msg = await client.sms.retrieve("sm_123")
    assert msg.message_id == "sm_123"
    assert server.count == 2


async def test_get_read_timeout_is_retried(server: ScriptedServer) -> None:
    server.queue(Reply(200, message_json(), delay=5), Reply(200, message_json()))
    async with make(server, timeout=0.2) as client:
        await client.sms.retrieve("sm_123")
    assert server.count == 2


async def test_503_503_200_get_succeeds_on_third_request(server: ScriptedServer) -> None:
    server.queue(Reply(503), Reply(503), Reply(200, message_json()))
    async with make(server) as client:
        msg = await client.sms.retrieve("sm_123")
    assert msg.status == "delivered"
    assert server.count == 3


async def test_503_503_503_gives_up_after_three(server: ScriptedServer) -> None:
    server.default = Reply(503)
    async with make(server) as client:
        with pytest.raises(InternalServerError):
            await client.sms.retrieve("sm_123")
    assert server.count == 3


async def test_429_retry_after_one_waits_about_a_second(server: ScriptedServer) -> None:
    server.queue(Reply(429, headers={"Retry-After": "1"}), Reply(201, sent_json()))
    async with make(server) as client:
        started = time.monotonic()
        await client.sms.send(to=TO, from_="OVO", message="Hi")
        elapsed = time.monotonic() - started
    assert server.count == 2
    assert 0.9 <= elapsed < 2.0


async def test_connection_refused_post_is_retried_and_not_sent() -> None:
    with scripted_server() as gone:
        url = gone.url
    async with AsyncOVOClient(
        api_key=API_KEY,
        base_url=url,
        retry=SMALL,
        io_backend=BACKEND["io_backend"],  # type: ignore[arg-type]
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is False
    assert "ConnectError" in str(info.value)


async def test_wait_for_bounds_a_call_that_keeps_getting_503_and_client_recovers(
    server: ScriptedServer,
) -> None:
    server.default = Reply(503)
    # A fixed 1 s backoff puts the 0.3 s deadline well inside the first wait, so exactly one
    # attempt has reached the server when the deadline fires. (With a jittered 0.5 s backoff
    # the second attempt could be on the wire at the deadline and counted a moment later.)
    policy = RetryPolicy(max_retries=10, initial_backoff=1.0, jitter=False)
    async with make(server, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.sms.retrieve("sm_123"), 0.3)
        elapsed = time.monotonic() - started
        # Not bounded, the call would sit out its backoff and pass 1 s; the slack above 0.3 s
        # is for a loaded machine.
        assert 0.25 <= elapsed < 0.9
        assert server.count == 1
        # The client still works, and only the new call reaches the server.
        server.default = Reply(200, message_json())
        assert (await client.sms.retrieve("sm_123")).message_id == "sm_123"
    assert server.count == 2


def test_trio_cancel_scope_bounds_a_slow_call_and_client_recovers(server: ScriptedServer) -> None:
    import trio

    server.queue(Reply(200, message_json(), delay=10), Reply(200, message_json()))

    async def main() -> tuple[float, str]:
        async with make(server, retry=RetryPolicy(max_retries=5)) as client:
            started = time.monotonic()
            with trio.move_on_after(0.3):
                await client.sms.retrieve("sm_123")
            elapsed = time.monotonic() - started
            return elapsed, (await client.sms.retrieve("sm_123")).message_id

    elapsed, message_id = trio.run(main)
    assert elapsed < 1.0
    assert message_id == "sm_123"
    assert server.count == 2  # the cancelled call was not retried
