"""Phone numbers as people write them: E.164 out, or an error that says how to get there."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import respx

from ovo_async import AsyncOVOClient, ValidationError, normalize_number
from ovo_async.testing import FakeOVO

from .conftest import API_KEY

FORMATS = [
    # (as typed, region, E.164)
    ("+1 415 555 0123", None, "+14155550123"),
    ("+1 (415) 555-0123", "GB", "+14155550123"),  # international: the region is moot
    ("(415) 555-0123", "US", "+14155550123"),
    ("415.555.0123", "US", "+14155550123"),
    ("1-415-555-0123", "US", "+14155550123"),
    ("415 555 0123", "us", "+14155550123"),  # region codes in any case
    ("07700 900123", "GB", "+447700900123"),  # Ofcom's drama range: possible, not assigned
    ("+44 7700 900123", None, "+447700900123"),
    ("0044 7700 900123", "GB", "+447700900123"),  # international prefix from the UK
    ("020 7946 0018", "GB", "+442079460018"),
    ("030 901820", "DE", "+4930901820"),
    ("0151 23456789", "DE", "+4915123456789"),
    ("+49 (0)30 901820", None, "+4930901820"),  # the national 0 in brackets
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("01.23.45.67.89", "FR", "+33123456789"),
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("090-1234-5678", "JP", "+819012345678"),
    ("03-1234-5678", "JP", "+81312345678"),
    ("98765 43210", "IN", "+919876543210"),
    ("+91 98765-43210", None, "+919876543210"),
    ("+14155550123", None, "+14155550123"),  # already E.164: no extra needed
]


@pytest.mark.parametrize(("raw", "region", "e164"), FORMATS)
def test_formats_become_e164(raw: str, region: str | None, e164: str) -> None:
    assert normalize_number(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "says"),
    [
        ("12", "US", "too few or too many digits"),
        ("+1 415", None, "too few or too many digits"),
        ("415 555 0123 999 999 999", "US", "too long"),
        ("07700", "GB", "too few or too many digits"),
        ("call me maybe", "US", "not a phone number"),
        ("", "US", "not a phone number"),
        ("415 555 0123", None, "give its region"),
        ("+1 415 555 0123\r\nX-Injected: 1", None, "not a phone number"),
        ("+1 415\x00555 0123", None, "not a phone number"),
        ("9" * 500, "US", "not a phone number"),
    ],
)
def test_bad_numbers_say_why(raw: str, region: str | None, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_number(raw, region)
    assert info.value.field == "to"
    assert says in str(info.value)


@pytest.mark.parametrize("region", ["USA", "U", "ZZ", 1, "é1"])
def test_bad_regions_are_refused(region: Any) -> None:
    with pytest.raises(ValidationError, match="region"):
        normalize_number("415 555 0123", region)
    with pytest.raises(ValidationError, match="default_region"):
        AsyncOVOClient(api_key=API_KEY, default_region=region)


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "phonenumbers", None)  # as if not installed
    assert normalize_number("+14155550123") == "+14155550123"  # E.164 needs no extra
    with pytest.raises(ValidationError, match=r"ovo-async\[phone\]"):
        normalize_number("(415) 555-0123", None)
    with pytest.raises(ValidationError, match=r"ovo-async\[phone\]"):
        AsyncOVOClient(api_key=API_KEY, default_region="US")


async def test_without_default_region_a_national_number_says_to_set_it(
    api: respx.MockRouter,
) -> None:
    route = api.post("/sms/send")
    async with AsyncOVOClient(api_key=API_KEY) as client:
        with pytest.raises(ValidationError, match="default_region") as info:
            await client.sms.send(to="(415) 555-0123", from_="OVO", message="Hi")
    assert info.value.field == "to" and route.call_count == 0


async def test_default_region_normalises_send_batch_and_send_many() -> None:
    fake = FakeOVO()
    async with AsyncOVOClient(
        api_key=API_KEY, transport=fake.transport(), default_from="OVO", default_region="GB"
    ) as client:
        sent = await client.sms.send(to="07700 900123", message="one")
        assert sent.to == "+447700900123"
        batch = await client.sms.batch([{"to": "07700 900124", "message": "two"}])
        assert batch.messages[0].to == "+447700900124"
        with pytest.raises(ValidationError, match=r"messages\[0\]\.to"):
            await client.sms.batch([{"to": "07700", "message": "short"}])
        outcomes = [
            o
            async for o in client.sms.send_many(
                [{"to": "+1 (415) 555-0123", "message": "three"}, {"to": "nope", "message": "x"}]
            )
        ]
    by_index = sorted(outcomes, key=lambda o: o.index)
    assert by_index[0].ok and by_index[0].request.to == "+14155550123"
    assert isinstance(by_index[1].error, ValidationError) and by_index[1].error.field == "to"
    assert sorted(m["to"] for m in fake.messages) == [
        "+14155550123",
        "+447700900123",
        "+447700900124",
    ]
