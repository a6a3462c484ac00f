"""Segment counting, exact to GSM 03.38: reference vectors, a property, the client guard."""

from __future__ import annotations

from typing import Any

import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from ovo_async import AsyncOVOClient, SegmentInfo, ValidationError, count_segments
from ovo_async.testing import FakeOVO

from .conftest import API_KEY

EURO, EMOJI = "€", "😀"  # an extension character (2 septets); a surrogate pair (2 units)

VECTORS = [
    # (text, encoding, segments, units)
    ("", "GSM-7", 1, 0),
    ("a" * 160, "GSM-7", 1, 160),
    ("a" * 161, "GSM-7", 2, 161),
    ("a" * 158 + EURO, "GSM-7", 1, 160),  # the escape fits exactly
    ("a" * 159 + EURO, "GSM-7", 2, 161),  # 160/161 septet boundary, escape last
    ("a" * 152 + EURO + "a" * 152, "GSM-7", 3, 306),  # 2 x 153, but the escape won't split
    ("a" * 306, "GSM-7", 2, 306),
    ("a" * 307, "GSM-7", 3, 307),  # the last segment holds one character
    ("[" * 80, "GSM-7", 1, 160),
    ("{}" * 40 + "x", "GSM-7", 2, 161),
    ("ж" * 70, "UCS-2", 1, 70),
    ("ж" * 71, "UCS-2", 2, 71),
    (EMOJI * 35, "UCS-2", 1, 70),  # 70/71 unit boundary with pairs
    (EMOJI * 35 + "a", "UCS-2", 2, 71),
    ("a" * 69 + EMOJI, "UCS-2", 2, 71),  # the pair would straddle 70
    (EMOJI * 67, "UCS-2", 3, 134),  # 2 x 67 units, but pairs won't split
    ("ж" * 135, "UCS-2", 3, 135),  # last segment: one character
]


@pytest.mark.parametrize(("text", "encoding", "segments", "units"), VECTORS)
def test_reference_vectors(text: str, encoding: str, segments: int, units: int) -> None:
    info = count_segments(text)
    assert (info.encoding, info.segments, info.units) == (encoding, segments, units)


def test_gsm_alphabet_includes_accents_it_has_and_not_those_it_lacks() -> None:
    assert count_segments("Grüße aus Köln, señor, ça va? ¿Dónde?").encoding == "UCS-2"
    info = count_segments("Grüße aus Köln, señor")  # ü ß ö ñ are in GSM 03.38
    assert (info.encoding, info.units, info.non_gsm) == ("GSM-7", 21, ())
    smart = count_segments("It\u2019s \u201cquoted\u201d \u2014 and 😀 and \u2019 again")
    assert smart.encoding == "UCS-2"
    assert smart.non_gsm == ("\u2019", "\u201c", "\u201d", "\u2014", EMOJI)  # each once, in order


@pytest.mark.parametrize("bad", [None, 3, b"bytes", "half \ud83d"])
def test_not_text_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(ValidationError, match="message"):
        count_segments(bad)


def reference_chunks(text: str) -> list[str]:
    """An independent splitter: build each part by encoding, as a modem would."""
    gsm = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    gsm += "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    ext = "\f^{}\\[~]|€"
    if all(c in gsm or c in ext for c in text):
        cost, single, part = (lambda c: 2 if c in ext else 1), 160, 153
    else:
        cost, single, part = (lambda c: len(c.encode("utf-16-be")) // 2), 70, 67
    if sum(map(cost, text)) <= single:
        return [text]
    chunks, current = [], ""
    for c in text:
        if sum(map(cost, current + c)) > part:
            chunks.append(current)
            current = ""
        current += c
    return [*chunks, current]


ALPHABET = st.sampled_from([*"aZ0 @£ñ\n{}[]~€^|\\", "ж", "\u2019", EMOJI, "é", "ß"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=400))
def test_segments_equal_a_reference_splitters_chunks(text: str) -> None:
    assert count_segments(text).segments == len(reference_chunks(text))


@given(st.text(max_size=300).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_any_text_counts_and_units_add_up(text: str) -> None:
    info = count_segments(text)
    if info.encoding == "UCS-2":
        assert info.units == len(text.encode("utf-16-le")) // 2
    else:
        assert info.non_gsm == ()
    assert isinstance(info, SegmentInfo) and info.segments >= 1


async def test_max_segments_guard_refuses_before_any_request(api: respx.MockRouter) -> None:
    route = api.post("/sms/send")
    batch = api.post("/sms/batch")
    async with AsyncOVOClient(api_key=API_KEY, default_from="OVO", max_segments=2) as client:
        with pytest.raises(ValidationError) as info:
            await client.sms.send(to="+14155550123", message="It\u2019s " + "x" * 140)
        assert info.value.field == "message"
        assert "3 segments" in str(info.value) and "\u2019" in str(info.value)
        with pytest.raises(ValidationError, match=r"messages\[1\]\.message"):
            await client.sms.batch(
                [
                    {"to": "+14155550123", "message": "ok"},
                    {"to": "+14155550123", "message": "x" * 400},
                ]
            )
        outcomes = [
            o
            async for o in client.sms.send_many(
                [{"to": "+14155550123", "message": "y" * 400}], batch_size=None
            )
        ]
    assert isinstance(outcomes[0].error, ValidationError)
    assert route.call_count == 0 and batch.call_count == 0


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_max_segments_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValidationError, match="max_segments"):
        AsyncOVOClient(api_key=API_KEY, max_segments=bad)


@pytest.mark.parametrize(("text", "encoding", "segments", "units"), VECTORS[1:])  # not ""
async def test_fake_counts_segments_by_the_same_rules(
    text: str, encoding: str, segments: int, units: int
) -> None:
    fake = FakeOVO()
    async with AsyncOVOClient(api_key=API_KEY, transport=fake.transport()) as client:
        sent = await client.sms.send(to="+14155550123", from_="OVO", message=text)
        message = await client.sms.retrieve(sent.message_id)
    assert message.segments == segments
