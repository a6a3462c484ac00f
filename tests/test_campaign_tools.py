"""Waiting for a final status, estimating a campaign, and FakeOVO behaving as a server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ovo_async import (
    APITimeoutError,
    AsyncOVOClient,
    ConflictError,
    MessageStatus,
    OVOClient,
    RetryPolicy,
    ValidationError,
    count_segments,
    estimate,
)
from ovo_async.testing import FakeOVO

TO = "+14155550123"


async def test_wait_until_final_polls_to_a_final_status() -> None:
    fake = FakeOVO(real_time=True, sent_after=0.05, delivered_after=0.1)
    fake.mark_unreachable("+14155550199")
    async with AsyncOVOClient(api_key="k", transport=fake.transport()) as client:
        good = await client.sms.send(to=TO, from_="OVO", message="Hi")
        bad = await client.sms.send(to="+14155550199", from_="OVO", message="Hi")
        done = await client.sms.wait_until_final(good.message_id, interval=0.02, timeout=5)
        failed = await client.sms.wait_until_final(bad.message_id, interval=0.02, timeout=5)
    assert done.status is MessageStatus.DELIVERED and done.is_final
    assert failed.status is MessageStatus.FAILED
    polls = [r for r in fake.requests if r.endpoint == "retrieve"]
    assert len(polls) >= 2  # it really polled, more than once


def test_wait_until_final_times_out_in_the_blocking_face_too() -> None:
    fake = FakeOVO(real_time=True, sent_after=60, delivered_after=60)
    with OVOClient(api_key="k", transport=fake.transport()) as client:
        sent = client.sms.send(to=TO, from_="OVO", message="Hi")
        with pytest.raises(APITimeoutError, match="still queued"):
            client.sms.wait_until_final(sent.message_id, interval=0.05, timeout=0.2)
        for bad in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValidationError):
                client.sms.wait_until_final(sent.message_id, timeout=bad)
        polls = len(fake.requests)
        # 1e-9 polled thousands of times a second, against the account's rate limit.
        for bad in (0, float("nan"), 1e-9):
            with pytest.raises(ValidationError) as info:
                client.sms.wait_until_final(sent.message_id, interval=bad, timeout=0.2)
            assert info.value.field == "interval"
        assert len(fake.requests) == polls


def test_estimate_counts_without_sending() -> None:
    rows: list[Any] = [
        {"to": TO, "message": "Plain GSM text"},
        {"to": TO, "message": "Smart \u2019quote\u2019"},
        {"to": TO, "message": "x" * 200},
        {"to": "nope", "message": "bad number"},
        {"to": TO, "message": ""},
        {"to": "07700 900123", "message": "national \u20ac"},
        "not a mapping",
    ]
    result = estimate(iter(rows), default_region="GB")
    valid = [r["message"] for i, r in enumerate(rows) if i in (0, 1, 2, 5)]
    assert result.messages == 4 and result.invalid == 3
    assert result.segments == sum(count_segments(m).segments for m in valid)
    assert (result.gsm7, result.ucs2) == (3, 1)
    assert result.non_gsm == ("\u2019",)
    assert [index for index, _ in result.errors] == [3, 4, 6]
    assert estimate([{"to": TO, "message": "y" * 400}], max_segments=2).invalid == 1


async def test_fake_answers_409_while_the_same_key_is_being_answered() -> None:
    fake = FakeOVO(latency=0.3)
    async with AsyncOVOClient(
        api_key="k", transport=fake.transport(), retry=RetryPolicy(max_retries=0)
    ) as client:

        async def send() -> Any:
            return await client.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="k1")

        first = asyncio.ensure_future(send())
        await asyncio.sleep(0.05)  # the first is now being answered (acted, not answered)
        with pytest.raises(ConflictError):
            await send()
        sent = await first
        again = await send()  # answered now: the repeat replays it
    assert again.message_id == sent.message_id
    assert len(fake.messages) == 1


@pytest.mark.parametrize("field", ["to", "from"])
async def test_fake_refuses_a_trailing_newline_as_a_server_would(field: str) -> None:
    body = {"to": TO, "from": "+14155550100", "message": "Hi"}
    body[field] += "\n"
    fake = FakeOVO()
    async with httpx.AsyncClient(transport=fake.transport(), base_url="http://fake/v1") as raw:
        answer = await raw.post("/sms/send", json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == field


@pytest.mark.parametrize("status", [100, 101, 199, 304, 600, True, "500"])
def test_fail_next_refuses_statuses_it_cannot_serve(status: Any) -> None:
    with pytest.raises(ValueError, match="status"):
        FakeOVO().fail_next("send", status=status)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "example.com"])
def test_fake_serves_on_loopback_only(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"), FakeOVO().serve(host=host):
        pass


@pytest.mark.parametrize("port", [65536, -1, 1.5, True, "8787"])
def test_fake_refuses_a_port_that_does_not_exist(port: Any) -> None:
    with pytest.raises(ValueError, match="port"), FakeOVO().serve(port=port):
        pass
