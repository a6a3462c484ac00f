"""sms.send, sms.batch and sms.retrieve on the wire: headers, bodies, paths, models."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
import trio

import ovo_async
from ovo_async import (
    APIResponseValidationError,
    AsyncOVOClient,
    BatchResult,
    Message,
    MessageStatus,
    SentMessage,
    SMSRequest,
    ValidationError,
)

from .conftest import API_KEY, BASE_URL, batch_json, message_json, sent_json

TO = "+14155550123"


async def test_send_headers_and_body(api: respx.MockRouter, client: AsyncOVOClient) -> None:
    route = api.post("/sms/send").respond(201, json=sent_json())
    sent = await client.sms.send(to=TO, from_="OVO", message="Hello")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    ua = request.headers["user-agent"]
    assert ua.startswith(f"ovo-async/{ovo_async.__version__} python/")
    assert f"httpx/{httpx.__version__}" in ua
    key = request.headers["idempotency-key"]
    assert uuid.UUID(key).version == 4 and uuid.UUID(key).variant == uuid.RFC_4122
    assert str(uuid.UUID(key)) == key  # canonical lower-case text
    # callback_url is left out, never sent as null
    assert json.loads(request.content) == {"to": TO, "from": "OVO", "message": "Hello"}
    assert sent == SentMessage(
        message_id="sm_123",
        status=MessageStatus.QUEUED,
        to=TO,
        from_="OVO",
        created_at=datetime(2025, 5, 17, 12, 34, 56, tzinfo=timezone.utc),
    )


async def test_send_with_callback_default_from_and_own_key(api: respx.MockRouter) -> None:
    route = api.post("/sms/send").respond(200, json=sent_json())
    async with AsyncOVOClient(
        api_key=API_KEY, default_from="+15550001111", default_headers={"X-Team": "growth"}
    ) as client:
        await client.sms.send(
            to=TO, message="Hi", callback_url="https://hooks.example/ovo", idempotency_key="order-7"
        )
    request = route.calls.last.request
    assert json.loads(request.content) == {
        "to": TO,
        "from": "+15550001111",
        "message": "Hi",
        "callback_url": "https://hooks.example/ovo",
    }
    assert request.headers["idempotency-key"] == "order-7"
    assert request.headers["x-team"] == "growth"


async def test_each_post_gets_its_own_generated_key(
    api: respx.MockRouter, client: AsyncOVOClient
) -> None:
    route = api.post("/sms/send").respond(202, json=sent_json())
    await client.sms.send(to=TO, from_="OVO", message="a")
    await client.sms.send(to=TO, from_="OVO", message="b")
    keys = {c.request.headers["idempotency-key"] for c in route.calls}
    assert len(keys) == 2


async def test_unknown_status_and_extra_fields_kept_and_ignored(
    api: respx.MockRouter, client: AsyncOVOClient
) -> None:
    api.post("/sms/send").respond(201, json=sent_json(status="scheduled", brand_new_field=1))
    sent = await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert sent.status == "scheduled"
    assert not isinstance(sent.status, MessageStatus)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2025-05-17T12:34:56Z", datetime(2025, 5, 17, 12, 34, 56, tzinfo=timezone.utc)),
        (
            "2025-05-17T12:34:56.250+02:00",
            datetime(2025, 5, 17, 12, 34, 56, 250000, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-05-17T12:34:56", datetime(2025, 5, 17, 12, 34, 56, tzinfo=timezone.utc)),
    ],
)
async def test_timestamps_become_aware_datetimes(
    api: respx.MockRouter, client: AsyncOVOClient, raw: str, expected: datetime
) -> None:
    api.get("/sms/sm_1").respond(200, json=message_json(created_at=raw, delivered_at=raw))
    msg = await client.sms.retrieve("sm_1")
    assert msg.created_at == expected and msg.created_at.tzinfo is not None
    assert msg.delivered_at == expected


async def test_retrieve_model(api: respx.MockRouter, client: AsyncOVOClient) -> None:
    api.get("/sms/sm_123").respond(200, json=message_json())
    msg = await client.sms.retrieve("sm_123")
    assert isinstance(msg, Message)
    assert msg.status is MessageStatus.DELIVERED
    assert str(msg.status) == "delivered" and msg.status == MessageStatus("delivered")
    assert msg.from_ == "OVO" and msg.segments == 1 and msg.delivered_at is None
    assert msg.updated_at.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("message_id", "raw_path"),
    [
        ("../../admin", "/v1/sms/..%2F..%2Fadmin"),
        ("a/b?c=d#e", "/v1/sms/a%2Fb%3Fc%3Dd%23e"),
        ("sm 1%", "/v1/sms/sm%201%25"),
        ("...", "/v1/sms/..."),
    ],
)
async def test_retrieve_encodes_id_as_one_segment(
    client: AsyncOVOClient, message_id: str, raw_path: str
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=message_json(message_id=message_id))

    with respx.mock:
        respx.route(host="api.ovocommunications.com").mock(side_effect=handler)
        await client.sms.retrieve(message_id)
    assert seen[0].url.raw_path.decode() == raw_path


# A lone surrogate came out of urllib's quote() as a UnicodeEncodeError.
@pytest.mark.parametrize(
    "bad_id", ["", ".", "..", None, 5, "sm_\ud800", "sm\r\n1", "sm\x001", "x" * 256]
)
async def test_retrieve_refuses_bad_ids_without_request(
    api: respx.MockRouter, client: AsyncOVOClient, bad_id: Any
) -> None:
    with pytest.raises(ValidationError, match="message_id"):
        await client.sms.retrieve(bad_id)
    assert not api.calls


async def test_batch_body_and_result(api: respx.MockRouter, client: AsyncOVOClient) -> None:
    failed_item = {
        "status": "rejected",
        "to": "+19995550000",
        "from": "OVO",
        "error": {"code": "unreachable", "message": "no route", "param": "to"},
    }
    result_json = batch_json(2, failed=1, successful=1)
    result_json["messages"][1] = failed_item
    route = api.post("/sms/batch").respond(201, json=result_json)
    result = await client.sms.batch(
        [
            SMSRequest(to=TO, from_="OVO", message="one"),
            {
                "to": "+19995550000",
                "from": "OVO",
                "message": "two",
                "callback_url": "https://h.example/x",
            },
        ],
        callback_url="https://h.example/all",
    )
    body = json.loads(route.calls.last.request.content)
    assert body == {
        "messages": [
            {"to": TO, "from": "OVO", "message": "one"},
            {
                "to": "+19995550000",
                "from": "OVO",
                "message": "two",
                "callback_url": "https://h.example/x",
            },
        ],
        "callback_url": "https://h.example/all",
    }
    assert "idempotency-key" in route.calls.last.request.headers
    assert isinstance(result, BatchResult)
    assert result.successful == 1 and result.failed == 1
    assert result.messages[0].message_id == "sm_0"
    bad = result.messages[1]
    assert bad.message_id is None and bad.status == MessageStatus.REJECTED
    assert bad.error is not None and bad.error.code == "unreachable" and bad.error.param == "to"


async def test_batch_accepts_from_underscore_key_and_default_from(api: respx.MockRouter) -> None:
    route = api.post("/sms/batch").respond(201, json=batch_json(2))
    async with AsyncOVOClient(api_key=API_KEY, default_from="Shop") as client:
        await client.sms.batch(
            [{"to": TO, "from_": "OVO", "message": "a"}, {"to": TO, "message": "b"}]
        )
    sent = json.loads(route.calls.last.request.content)["messages"]
    assert [m["from"] for m in sent] == ["OVO", "Shop"]


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (
            [
                {"to": TO, "from": "OVO", "message": "ok"},
                {"to": "555", "from": "OVO", "message": "x"},
            ],
            "messages[1].to",
        ),
        ([{"to": TO, "from": "OVO", "message": ""}], "messages[0].message"),
        ([{"to": TO, "message": "no sender"}], "messages[0].from_"),
        ([{"to": TO, "from": "OVO", "message": "x", "colour": "red"}], "messages[0].colour"),
        ([{"to": TO, "from": "OVO", "from_": "X", "message": "x"}], "messages[0].from_"),
        ([{"to": TO, "from": "OVO"}], "messages[0].message"),
        ([{"to": TO, "from": "OVO", "message": "x"}, "junk"], "messages[1]"),
        ([], "messages"),
        ({"to": TO}, "messages"),
        ([{"to": TO, "from": "OVO", "message": "x"}] * 1001, "messages"),
    ],
)
async def test_batch_validation_names_the_item_and_sends_nothing(
    api: respx.MockRouter, client: AsyncOVOClient, items: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await client.sms.batch(items)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")
    assert not api.calls


async def test_batch_refuses_bad_callback_url(
    api: respx.MockRouter, client: AsyncOVOClient
) -> None:
    with pytest.raises(ValidationError, match="callback_url"):
        await client.sms.batch([{"to": TO, "from": "OVO", "message": "x"}], callback_url="ftp://x")
    assert not api.calls


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"to": "4155550123"}, "to"),
        ({"to": "+0155550123"}, "to"),
        ({"to": "+1"}, "to"),
        ({"to": "+1234567890123456"}, "to"),
        ({"to": 14155550123}, "to"),
        ({"from_": "TwelveChars!"}, "from_"),
        ({"from_": "ABCDEFGHIJKL"}, "from_"),
        ({"from_": "   "}, "from_"),
        ({"from_": None}, "from_"),
        ({"message": ""}, "message"),
        ({"message": "  \n"}, "message"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"callback_url": "/relative/path"}, "callback_url"),
        ({"callback_url": "javascript:alert(1)"}, "callback_url"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "bad\nkey"}, "idempotency_key"),
        # A server strips these from the header: " k" would be the key "k".
        ({"idempotency_key": " key"}, "idempotency_key"),
        ({"idempotency_key": "key "}, "idempotency_key"),
    ],
)
async def test_send_validation_names_field_before_any_request(
    api: respx.MockRouter, client: AsyncOVOClient, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"to": TO, "from_": "OVO", "message": "Hi", **kwargs}
    with pytest.raises(ValidationError) as info:
        await client.sms.send(**args)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert not api.calls


@pytest.mark.parametrize("sender", ["OVO", "My Shop 24", "A", "+447700900123"])
async def test_valid_senders_accepted(
    api: respx.MockRouter, client: AsyncOVOClient, sender: str
) -> None:
    api.post("/sms/send").respond(201, json=sent_json())
    await client.sms.send(to=TO, from_=sender, message="Hi")


@pytest.mark.parametrize(
    "body",
    [
        {"message_id": "sm_1"},  # missing fields
        sent_json(created_at="yesterday"),
        sent_json(status=7),
        sent_json(to=None),
        ["not", "an", "object"],
    ],
)
async def test_2xx_body_that_does_not_fit_keeps_raw_body(
    api: respx.MockRouter, client: AsyncOVOClient, body: Any
) -> None:
    api.post("/sms/send").respond(201, json=body)
    with pytest.raises(APIResponseValidationError) as info:
        await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.body == body
    assert info.value.status_code == 201


async def test_2xx_not_json(api: respx.MockRouter, client: AsyncOVOClient) -> None:
    api.get("/sms/sm_1").respond(200, text="<html>ok</html>")
    with pytest.raises(APIResponseValidationError, match="not JSON") as info:
        await client.sms.retrieve("sm_1")
    assert info.value.body == "<html>ok</html>"


def test_round_trip_under_trio() -> None:
    async def main() -> tuple[SentMessage, BatchResult, Message]:
        with respx.mock(base_url=BASE_URL) as api:
            api.post("/sms/send").respond(201, json=sent_json())
            api.post("/sms/batch").respond(201, json=batch_json(1))
            api.get("/sms/sm_123").respond(200, json=message_json())
            async with AsyncOVOClient(api_key=API_KEY) as client:
                sent = await client.sms.send(to=TO, from_="OVO", message="Hi")
                batch = await client.sms.batch([{"to": TO, "from": "OVO", "message": "Hi"}])
                msg = await client.sms.retrieve(sent.message_id)
                return sent, batch, msg

    sent, batch, msg = trio.run(main)
    assert sent.message_id == "sm_123" and batch.total_messages == 1 and msg.status == "delivered"


def test_models_are_frozen_and_validate() -> None:
    req = SMSRequest(to=TO, from_="OVO", message="Hi")
    with pytest.raises(AttributeError):
        req.to = "+1999"  # type: ignore[misc]
    with pytest.raises(ValidationError, match=r"^to:"):
        SMSRequest(to="nope", message="Hi")


def test_default_keys_are_distinct_random_uuid4s() -> None:
    from ovo_async._transport import new_idempotency_key

    keys = {new_idempotency_key() for _ in range(10_000)}
    assert len(keys) == 10_000
    for key in list(keys)[:500]:
        parsed = uuid.UUID(key)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, key)
    # every one of the 122 random bits varies
    bits = 0
    for key in keys:
        bits |= uuid.UUID(key).int ^ uuid.UUID(next(iter(keys))).int
    assert bin(bits).count("1") == 122


RECEIPTS: list[Any] = [
    {
        "message_id": "sm_1",
        "status": "queued",
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
    },
    {
        "message_id": "sm_1",
        "status": "teleported",
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56.123456789+05:30",
        "extra": [1],
    },
    {
        "message_id": "sm_1",
        "status": "sent",
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
        "request_id": "body_lies",
        "headers": {"a": "b"},
    },
    {"message_id": "sm_1", "status": "queued", "to": TO, "from": "OVO", "created_at": "soon"},
    {
        "message_id": "sm_1",
        "status": "queued",
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56+24:00",
    },
    {"message_id": "sm_1", "status": "queued", "to": TO, "from": "OVO"},
    {
        "message_id": 1,
        "status": "queued",
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
    },
    {
        "message_id": "sm_1",
        "status": None,
        "to": TO,
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
    },
    {"message_id": "sm_1", "status": "queued", "to": TO, "from": "OVO", "created_at": 5},
    ["not", "an", "object"],
    None,
]


@pytest.mark.parametrize("data", RECEIPTS, ids=range(len(RECEIPTS)))
def test_receipts_read_the_same_on_the_fast_path(data: Any) -> None:
    """Single sends read their receipt on a fast path; it must give what the general
    path gives: the same model, or the same error."""
    from ovo_async import _serde

    def read(fn: Any) -> Any:
        try:
            result = fn(data)
        except _serde.BodyMismatch as exc:
            return ("error", str(exc))
        return ("ok", result, type(result.status), result.request_id, result.headers)

    fast = read(_serde.parser(SentMessage))
    general = read(lambda d: _serde.structure(d, SentMessage))
    assert fast == general
