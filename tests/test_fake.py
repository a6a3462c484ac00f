"""FakeOVO: the wire contract as a server, faults, lifecycle, callbacks, serving, plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ovo_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncOVOClient,
    AuthenticationError,
    InternalServerError,
    MessageStatus,
    NotFoundError,
    OVOClient,
    RateLimitError,
    RetryPolicy,
)
from ovo_async.testing import FakeOVO

from .loopback import Reply, scripted_server

TO = "+14155550123"
ROOT = Path(__file__).resolve().parent.parent
NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def fake() -> FakeOVO:
    return FakeOVO()


@pytest.fixture
async def raw(fake: FakeOVO) -> AsyncIterator[httpx.AsyncClient]:
    """Plain httpx against the fake: sends what the SDK's validation would refuse."""
    async with httpx.AsyncClient(
        transport=fake.transport(),
        base_url="https://api.ovocommunications.com/v1",
        headers={"Authorization": "Bearer any"},
    ) as client:
        yield client


async def test_auth(fake: FakeOVO) -> None:
    strict = FakeOVO(api_key="right")
    async with AsyncOVOClient(api_key="wrong", transport=strict.transport()) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.code == "invalid_api_key" and info.value.request_id.startswith("req_")  # type: ignore[union-attr]
    async with httpx.AsyncClient(transport=fake.transport()) as plain:
        response = await plain.post("https://x/v1/sms/send", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"to": "123", "from": "OVO", "message": "x"}, "to"),
        ({"to": TO, "from": "Far too long!", "message": "x"}, "from"),
        ({"to": TO, "from": "OVO", "message": ""}, "message"),
        ({"to": TO, "from": "OVO", "message": "x", "callback_url": "nope"}, "callback_url"),
    ],
)
async def test_validation_errors(raw: httpx.AsyncClient, body: dict[str, Any], param: str) -> None:
    response = await raw.post("/sms/send", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and error["param"] == param
    assert error["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == error["request_id"]


async def test_batch_reports_invalid_items_in_the_result(raw: httpx.AsyncClient) -> None:
    response = await raw.post(
        "/sms/batch",
        json={
            "messages": [
                {"to": TO, "from": "OVO", "message": "ok"},
                {"to": "bad", "from": "OVO", "message": "x"},
            ]
        },
    )
    assert response.status_code == 201
    result = response.json()
    assert result["batch_id"].startswith("batch_")
    assert (result["successful"], result["failed"]) == (1, 1)
    assert result["messages"][0]["message_id"].startswith("sm_")
    assert result["messages"][1]["error"]["param"] == "messages[1].to"


async def test_round_trip_and_lifecycle(fake: FakeOVO) -> None:
    fake.mark_unreachable("+19990000000")
    async with AsyncOVOClient(api_key="k", transport=fake.transport()) as client:
        ok = await client.sms.send(to=TO, from_="OVO", message="Hi")
        bad = await client.sms.send(to="+19990000000", from_="OVO", message="Hi")
        assert ok.message_id.startswith("sm_")
        assert (await client.sms.retrieve(ok.message_id)).status is MessageStatus.QUEUED
        fake.advance(1.0)
        assert (await client.sms.retrieve(ok.message_id)).status is MessageStatus.SENT
        fake.advance(1.0)
        final = await client.sms.retrieve(ok.message_id)
        assert final.status is MessageStatus.DELIVERED and final.delivered_at is not None
        assert (await client.sms.retrieve(bad.message_id)).status is MessageStatus.FAILED
        with pytest.raises(NotFoundError):
            await client.sms.retrieve("sm_unknown")
    assert [m["to"] for m in fake.messages] == [TO, "+19990000000"]
    assert [r.endpoint for r in fake.requests][:2] == ["send", "send"]
    assert all(r.headers["authorization"] == "Bearer ****" for r in fake.requests)


async def test_callbacks_in_process(fake: FakeOVO) -> None:
    received: list[dict[str, Any]] = []

    def hook(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(204)

    fake = FakeOVO(callback_transport=httpx.MockTransport(hook))
    async with AsyncOVOClient(api_key="k", transport=fake.transport()) as client:
        sent = await client.sms.send(
            to=TO, from_="OVO", message="Hi", callback_url="https://hooks.example/ovo"
        )
    fake.advance(1.0)
    fake.advance(1.0)
    fake.advance(5.0)
    fake.wait_for_callbacks()
    assert [(c["message_id"], c["status"]) for c in received] == [
        (sent.message_id, "sent"),
        (sent.message_id, "delivered"),
    ]
    assert [c.status_code for c in fake.callbacks] == [204, 204]


async def test_fault_injection_in_process(fake: FakeOVO) -> None:
    async with AsyncOVOClient(api_key="k", transport=fake.transport(), retry=NO_RETRY) as client:
        fake.fail_next("send", status=503)
        with pytest.raises(InternalServerError):
            await client.sms.send(to=TO, from_="OVO", message="Hi")
        fake.fail_next("send", status=429, retry_after=120)
        with pytest.raises(RateLimitError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
        assert info.value.retry_after == 120
        fake.fail_next("send", status=502, body="<html>Bad Gateway</html>")
        with pytest.raises(InternalServerError) as gateway:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
        assert gateway.value.body == "<html>Bad Gateway</html>"
        fake.fail_next("send", status=None, delay=5)
        with pytest.raises(APITimeoutError):
            await client.with_options(timeout=0.05).sms.send(to=TO, from_="OVO", message="Hi")
        fake.fail_next("send", drop=True)
        with pytest.raises(APIConnectionError) as dropped:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
        assert dropped.value.may_have_been_sent is True
    # The timed-out and the dropped requests were acted on; the rejected ones were not.
    assert len(fake.messages) == 2


async def test_idempotency_key_replays_instead_of_sending_again(fake: FakeOVO) -> None:
    policy = RetryPolicy(retry_non_idempotent=True, initial_backoff=0.001, jitter=False)
    async with AsyncOVOClient(api_key="k", transport=fake.transport(), retry=policy) as client:
        fake.fail_next("send", drop=True)
        sent = await client.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="o-1")
        again = await client.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="o-1")
    assert sent.message_id == again.message_id
    assert len(fake.messages) == 1
    assert len(fake.requests) == 3


async def test_rate_limit(fake: FakeOVO) -> None:
    fake.rate_limit(2, retry_after=30)
    async with AsyncOVOClient(api_key="k", transport=fake.transport(), retry=NO_RETRY) as client:
        await client.sms.send(to=TO, from_="OVO", message="1")
        await client.sms.send(to=TO, from_="OVO", message="2")
        with pytest.raises(RateLimitError) as info:
            await client.sms.send(to=TO, from_="OVO", message="3")
    assert info.value.retry_after == 30


def test_served_on_loopback_round_trip_errors_and_callbacks() -> None:
    fake = FakeOVO(sent_after=0.05, delivered_after=0.1)
    with scripted_server(Reply(204)) as hooks, fake.serve() as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with OVOClient(api_key="k", base_url=url, retry=NO_RETRY) as client:
            sent = client.sms.send(
                to=TO, from_="OVO", message="Hi", callback_url=hooks.url + "/hook"
            )
            batch = client.sms.batch(
                [{"to": TO, "from": "OVO", "message": str(i)} for i in range(3)]
            )
            assert batch.successful == 3
            with pytest.raises(NotFoundError):
                client.sms.retrieve("sm_nope")
            fake.fail_next("send", drop=True)
            with pytest.raises(APIConnectionError):
                client.sms.send(to=TO, from_="OVO", message="lost answer")
            fake.advance(1.0)
            assert client.sms.retrieve(sent.message_id).status == "delivered"
        assert hooks.wait_for(2)
    statuses = [json.loads(r.body)["status"] for r in hooks.received]
    assert statuses == ["sent", "delivered"]
    assert all(json.loads(r.body)["message_id"] == sent.message_id for r in hooks.received)


def test_command_line_server() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ovo_async.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split()[3]
        with OVOClient(api_key="k", base_url=url) as client:
            assert client.sms.send(to=TO, from_="OVO", message="Hi").message_id.startswith("sm_")
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def test_demo_runs_and_prints_a_summary() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ovo_async", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "Summary" in result.stdout
    assert "queued -> sent -> delivered" in result.stdout
    assert "3/3 accepted" in result.stdout
    assert "All steps succeeded." in result.stdout


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        from ovo_async import AsyncOVOClient, OVOClient
        from ovo_async.testing import FakeOVO

        def test_sync(ovo_client, ovo_fake):
            assert isinstance(ovo_client, OVOClient) and isinstance(ovo_fake, FakeOVO)
            sent = ovo_client.sms.send(to="+14155550123", from_="OVO", message="Hi")
            assert ovo_fake.messages[0]["message_id"] == sent.message_id

        def test_async(ovo_async_client, ovo_fake):
            async def main():
                async with ovo_async_client as client:
                    return await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
            sent = asyncio.run(main())
            assert [m["message_id"] for m in ovo_fake.messages] == [sent.message_id]

        def test_fresh(ovo_fake):
            assert ovo_fake.messages == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
