"""Per-call options and what a successful call tells: timeouts per call, request ids and
headers on every answer, and 401/404 errors that name the request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ovo_async import (
    APITimeoutError,
    AsyncOVOClient,
    AuthenticationError,
    NotFoundError,
    OVOClient,
    RetryPolicy,
    ValidationError,
)
from ovo_async.testing import FakeOVO

from .conftest import API_KEY, message_json, sent_json
from .loopback import Reply, ScriptedServer, scripted_server

TO = "+14155550123"
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as s:
        yield s


async def test_a_per_call_timeout_cuts_one_slow_call_short(server: ScriptedServer) -> None:
    """An OTP that must go in 0.3 s, on a client whose default is 30 s."""
    server.queue(Reply(201, sent_json(), delay=5), Reply(201, sent_json()))
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url, retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await client.sms.send(to=TO, from_="OVO", message="123456", timeout=0.3)
        assert time.monotonic() - started < 2
        assert info.value.may_have_been_sent is True
        # The next call has the client's own timeout again.
        assert client.timeout.read == 30
        await client.sms.send(to=TO, from_="OVO", message="next")
    assert server.count == 2


def test_the_sync_face_takes_a_per_call_timeout(server: ScriptedServer) -> None:
    server.queue(Reply(200, message_json(), delay=5))
    with OVOClient(api_key=API_KEY, base_url=server.url, retry=NO_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            client.sms.retrieve("sm_1", timeout=httpx.Timeout(0.3))
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "1", True])
async def test_a_bad_per_call_timeout_is_refused_before_sending(
    server: ScriptedServer, bad: object
) -> None:
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as client:
        with pytest.raises(ValidationError, match="timeout"):
            await client.sms.send(to=TO, from_="OVO", message="Hi", timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="timeout"):
            await client.sms.batch([{"to": TO, "from": "OVO", "message": "Hi"}], timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="timeout"):
            client.sms.send_many([], timeout=bad)  # type: ignore[arg-type]
    assert server.count == 0


async def test_every_answer_carries_its_request_id_and_headers() -> None:
    fake = FakeOVO()
    async with AsyncOVOClient(api_key="k", transport=fake.transport(), default_from="OVO") as c:
        sent = await c.sms.send(to=TO, message="Hi")
        batch = await c.sms.batch([{"to": TO, "message": "Hi"}])
        message = await c.sms.retrieve(sent.message_id)
        outcomes = [o async for o in c.sms.send_many([{"to": TO, "message": "Yo"}])]
    ids = [sent.request_id, batch.request_id, message.request_id, outcomes[0].message.request_id]  # type: ignore[union-attr]
    assert all(i and i.startswith("req_") for i in ids)
    assert len(set(ids)) == 4
    assert sent.headers is not None and sent.headers["x-request-id"] == sent.request_id
    assert sent.headers["content-type"].startswith("application/json")
    # Not part of a message's value: the same message read twice is equal.
    assert message == await_retrieve_again(fake, sent.message_id)


def await_retrieve_again(fake: FakeOVO, message_id: str) -> object:
    with OVOClient(api_key="k", transport=fake.transport()) as client:
        again = client.sms.retrieve(message_id)
    return again


async def test_a_request_id_in_the_body_is_not_taken_for_the_servers(
    server: ScriptedServer,
) -> None:
    """Only the response header says which request this was."""
    body = {**sent_json(), "request_id": "req_from_body", "headers": {"x": "y"}}
    server.queue(Reply(201, body, headers={"X-Request-Id": "req_header"}))
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as client:
        sent = await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert sent.request_id == "req_header"


@pytest.mark.parametrize(("status", "error"), [(401, AuthenticationError), (404, NotFoundError)])
async def test_401_and_404_name_the_method_and_url(
    server: ScriptedServer, status: int, error: type[Exception]
) -> None:
    """A wrong key or a base_url missing its /v1: the URL in the message tells which."""
    server.queue(Reply(status, {"error": {"message": "nope"}}))
    base = server.url.removesuffix("/v1")
    async with AsyncOVOClient(api_key=API_KEY, base_url=base, retry=NO_RETRY) as client:
        with pytest.raises(error) as info:
            await client.sms.retrieve("sm_1")
    text = str(info.value)
    assert f"GET {base}/sms/sm_1" in text
    assert API_KEY not in text
