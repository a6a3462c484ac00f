"""Hostile inputs are refused at construction or before any request, naming the field."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from ovo_async import AsyncOVOClient, RetryPolicy, SMSRequest, ValidationError
from ovo_async._requests import make_request
from ovo_async._serde import parse_datetime

from .conftest import API_KEY

BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1, -0.5]


@pytest.mark.parametrize("field", ["initial_backoff", "max_backoff", "max_retry_after"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_retry_policy_refuses_nan_inf_and_negatives(field: str, value: float) -> None:
    with pytest.raises(ValidationError) as info:
        RetryPolicy(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("value", [-1, 1.5, True, "2", None])
def test_retry_policy_max_retries_is_a_non_negative_int(value: Any) -> None:
    with pytest.raises(ValidationError, match="max_retries"):
        RetryPolicy(max_retries=value)


@pytest.mark.parametrize("value", [*BAD_NUMBERS, 0])
def test_timeout_refuses_nan_inf_zero_and_negatives(value: float) -> None:
    with pytest.raises(ValidationError, match="timeout"):
        AsyncOVOClient(api_key=API_KEY, timeout=value)
    if value != 0:
        with pytest.raises(ValidationError, match=r"timeout\.read"):
            AsyncOVOClient(api_key=API_KEY, timeout=httpx.Timeout(5.0, read=value))


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({b"Authorization": "x"}, "default_headers"),  # bytes name: two auth headers once
        ({"X-Ok": b"v"}, "default_headers['X-Ok']"),
        ({"X-Ok": 3}, "default_headers['X-Ok']"),
        ({"X-Bad\r\nInjected": "v"}, "default_headers"),
        ({"X-Ok": "v\r\nInjected: 1"}, "default_headers['X-Ok']"),
        ({"X-Ok": "caf\u00e9"}, "default_headers['X-Ok']"),
        ({"X-Ok": "nul\x00"}, "default_headers['X-Ok']"),
        ({"": "v"}, "default_headers"),
        ({"transfer-encoding": "chunked"}, "default_headers['transfer-encoding']"),
        ({"Content-Length": "1"}, "default_headers['Content-Length']"),
        ({"HOST": "evil"}, "default_headers['HOST']"),
        ({"Content-Type": "text/plain"}, "default_headers['Content-Type']"),
        ({"idempotency-key": "k"}, "default_headers['idempotency-key']"),
        ({"authorization": "Bearer other"}, "default_headers['authorization']"),
    ],
)
def test_default_headers_are_checked(headers: Any, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AsyncOVOClient(api_key=API_KEY, default_headers=headers)
    assert info.value.field == field


def test_good_default_headers_are_sent(api: respx.MockRouter) -> None:
    client = AsyncOVOClient(api_key=API_KEY, default_headers={"X-Team": "growth"})
    assert client._transport.default_headers == {"X-Team": "growth"}


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1?region=eu",
        "https://api.example.com/v1#frag",
        "https://api.example.com/v1?",
        "https://user:s3cr3t@api.example.com/v1",
        "https://api.example.com/v1\r\n",
        "https://api.example.com/v\u00e9",
        # Hosts and ports no connection can use: a port out of range failed deep in
        # asyncio's connect, as an error that said the message may have been sent.
        "http://127.0.0.1:99999/v1",
        "https://api.example.com:0/v1",
        "https://[bad/v1",
        "https://a b/v1",
    ],
)
def test_base_url_without_userinfo_query_or_fragment(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        AsyncOVOClient(api_key=API_KEY, base_url=url)
    assert info.value.field == "base_url"
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("io_backend", ["trio", "", "HTTPX", 5, None])
def test_io_backend_is_checked(io_backend: Any) -> None:
    with pytest.raises(ValidationError) as info:
        AsyncOVOClient(api_key=API_KEY, io_backend=io_backend)
    assert info.value.field == "io_backend"


@pytest.mark.parametrize(
    "proxy",
    [
        "http://user:s3cr3t@proxy.example.com:99999",
        "socks5://user:s3cr3t@127.0.0.1:99999",
        "http://user:s3cr3t@proxy.example.com:0",
        "http://user:s3cr3t@[bad",
        "http://:3128",
        "http://user:s3cr3t@a b:3128",
    ],
)
@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
def test_proxy_host_and_port_are_checked(proxy: str, io_backend: str) -> None:
    with pytest.raises(ValidationError) as info:
        AsyncOVOClient(api_key=API_KEY, proxy=proxy, io_backend=io_backend)  # type: ignore[arg-type]
    assert info.value.field == "proxy"
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message", "half an emoji \ud83d"),
        ("message", "nul \x00 inside"),
        ("callback_url", "https://hooks.example.com/a\r\nX-Injected: 1"),
        ("callback_url", "https://hooks.example.com/a b"),
        ("callback_url", "https://hooks.example.com/caf\u00e9"),
    ],
)
def test_hostile_text_is_a_validation_error(field: str, value: str) -> None:
    fields: dict[str, Any] = {"to": "+14155550123", "from_": "OVO", "message": "Hi"}
    fields[field] = value
    with pytest.raises(ValidationError) as info:
        SMSRequest(**fields)
    assert info.value.field == field


async def test_lone_surrogate_is_refused_before_any_request(api: respx.MockRouter) -> None:
    route = api.post("/sms/send")
    async with AsyncOVOClient(api_key=API_KEY) as client:
        with pytest.raises(ValidationError, match="surrogate"):
            await client.sms.send(to="+14155550123", from_="OVO", message="\udcff")
    assert route.call_count == 0


UTC = timezone.utc


@pytest.mark.parametrize("digits", range(10))
def test_timestamps_take_zero_to_nine_fractional_digits(digits: int) -> None:
    fraction = "." + "123456789"[:digits] if digits else ""
    parsed = parse_datetime(f"2025-05-17T12:34:56{fraction}Z")
    micro = int("123456789"[:digits][:6].ljust(6, "0")) if digits else 0
    assert parsed == datetime(2025, 5, 17, 12, 34, 56, micro, UTC)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("2025-05-17T12:34:56Z", timedelta(0)),
        ("2025-05-17T12:34:56z", timedelta(0)),
        ("2025-05-17T12:34:56+00:00", timedelta(0)),
        ("2025-05-17T12:34:56+0000", timedelta(0)),
        ("2025-05-17T12:34:56+02:00", timedelta(hours=2)),
        ("2025-05-17T12:34:56+0200", timedelta(hours=2)),
        ("2025-05-17T12:34:56-0530", -timedelta(hours=5, minutes=30)),
        ("2025-05-17T12:34:56-05:30", -timedelta(hours=5, minutes=30)),
        ("2025-05-17T12:34:56+05", timedelta(hours=5)),
        ("2025-05-17 12:34:56", timedelta(0)),  # no offset: taken as UTC
    ],
)
def test_timestamp_offsets(text: str, offset: timedelta) -> None:
    parsed = parse_datetime(text)
    assert parsed.utcoffset() == offset
    assert parsed.replace(tzinfo=None) == datetime(2025, 5, 17, 12, 34, 56)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2025-13-01T00:00:00Z",
        "2025-05-17T12:34:56+24:00",
        "2025-05-17T25:00Z",
        "2025-05-17T12:34:56.1234567890Z",
        "2025-05-17T12:34:56ZZ",
        "٢٠٢٥-05-17T12:34:56Z",
    ],
)
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_datetime(text)


_texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["+14155550123", "+1", "OVO", "Shop 1", " ", "a\x00b", "\ud800", "x" * 12]),
)


@given(to=_texts, message=_texts, from_=st.one_of(st.none(), _texts))
def test_the_plain_dict_fast_path_agrees_with_sms_request(
    to: str, message: str, from_: str | None
) -> None:
    """Bulk input's fast path accepts and refuses exactly what SMSRequest does, with the
    same field named."""
    item = (
        {"to": to, "message": message}
        if from_ is None
        else {"to": to, "from": from_, "message": message}
    )

    def outcome(make: Any) -> Any:
        try:
            return make()
        except ValidationError as exc:
            return ("error", exc.field)

    fast = outcome(lambda: make_request(item, default_from="OVO"))
    slow = outcome(
        lambda: SMSRequest(to=to, message=message, from_=from_ if from_ is not None else "OVO")
    )
    assert fast == slow


_ODD_ITEMS: list[Any] = [
    {"to": "+14155550123", "message": "Hi", "from": None},
    {"to": "+14155550123", "message": "Hi", "from_": "OVO"},
    {"to": "+14155550123", "message": 5, "from": "OVO"},
    {"to": "+14155550123", "body": "Hi", "from": "OVO"},
    {"to": "+14155550123", "message": "Hi", "from": "OVO", "x": 1},
    {"to": "+14155550123", "message": "caf\u00e9", "from": "OVO"},
    {"to": "+14155550123", "message": "a\x00b", "from": "OVO"},
    {"to": "+14155550123", "message": " \t", "from": "OVO"},
    {"to": "+14155550123", "message": "a\ud800", "from": "OVO"},
    {"to": "+14155550123", "message": "Hi", "from": "Shop 1"},
    {"to": "+14155550123", "message": "Hi", "from": "ABCDEFGHIJKL"},
    {"to": "+1", "message": "Hi", "from": "OVO"},
    {"to": "+14155550123\n", "message": "Hi", "from": "OVO"},
    {"to": "+14155550123\n+14155550124", "message": "Hi", "from": "OVO"},  # two, joined
    {"to": "+1415\n+5550123", "message": "Hi", "from": "OVO"},
    {"to": "+14155550123", "message": "Hi\r\nBcc: x", "from": "OVO"},
    {"to": "+14155550123", "message": "Hi", "from": "OVO\r\n"},
    {"to": "+14155550123", "message": "x" * 2_000_000, "from": "OVO"},
    {"to": "+14155550123", "message": float("nan"), "from": "OVO"},
    {"to": 14155550123, "message": "Hi", "from": "OVO"},
    {"to": "+14155550123", "message": "Hi"},
    ["+14155550123", "Hi"],
    None,
]
_GOOD_ITEM = {"to": "+14155550123", "message": "Hi", "from": "OVO"}

_items = st.one_of(
    st.fixed_dictionaries({"to": _texts, "message": _texts}),
    st.fixed_dictionaries({"to": _texts, "message": _texts, "from": _texts}),
    st.just(_GOOD_ITEM),
    st.sampled_from(_ODD_ITEMS),
)


def _agrees(items: list[Any], default_from: str | None) -> None:
    from ovo_async._requests import _from_plain_dicts

    make_request(_GOOD_ITEM, default_from=None)  # its sender is known good from now on
    whole = _from_plain_dicts(items, default_from)
    if whole is not None:
        assert whole == [make_request(item, default_from=default_from) for item in items]


@given(items=st.lists(_items, min_size=1, max_size=6), default_from=st.sampled_from([None, "OVO"]))
def test_a_chunk_is_taken_whole_only_when_each_item_passes_alone(
    items: list[Any], default_from: str | None
) -> None:
    """Bulk input's list-by-list check of a chunk gives the requests the item-by-item
    path would, or declines the chunk (then each item gets its own answer)."""
    _agrees(items, default_from)


@pytest.mark.parametrize("odd", _ODD_ITEMS)
@pytest.mark.parametrize("default_from", [None, "OVO"])
def test_one_odd_item_among_plain_ones(odd: Any, default_from: str | None) -> None:
    _agrees([_GOOD_ITEM, odd, _GOOD_ITEM], default_from)


def test_a_plain_chunk_is_taken_whole() -> None:
    from ovo_async._requests import _from_plain_dicts

    items: list[Any] = [
        {"to": f"+1415555{i:04d}", "message": f"Hi {i}", "from": "OVO"} for i in range(5)
    ]
    make_request(items[0], default_from=None)  # the sender is known good from now on
    assert _from_plain_dicts(items, None) == [make_request(i, default_from=None) for i in items]
    short = [{"to": i["to"], "message": i["message"]} for i in items]
    assert _from_plain_dicts(short, "OVO") == [make_request(i, default_from="OVO") for i in short]
    assert _from_plain_dicts(short, None) is None  # no sender: each item says so
