"""JSON reads and writes the same with orjson (the `fast` extra) as without it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ovo_async import _json

#: What a server might send, odd ones included: each must decode to the same value (or
#: fail with ValueError) on both implementations.
ANSWERS: list[bytes] = [
    b'{"message_id":"sm_1","status":"queued"}',
    '{"to":"+1","message":"h\u00e9llo \U0001f600"}'.encode(),
    b'{"n": NaN, "i": Infinity}',  # json reads these; orjson does not
    b'{"big": 123456789012345678901234567890}',  # past 64 bits
    '{"utf16": "ok"}'.encode("utf-16"),  # json detects UTF-16; orjson wants UTF-8
    b'{"a": 1, "a": 2}',
    b"[" * 5000 + b"]" * 5000,  # too deep for both
    b"{not json",
    b"",
    b'"\xff\xfe"',  # not UTF-8
    b'{"x": "\\ud800"}',  # an escaped lone surrogate
]


def _outcome(fn: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        value = fn(data)
    except ValueError:
        return "ValueError"
    # NaN != NaN: compare what a caller would see printed
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("data", ANSWERS, ids=range(len(ANSWERS)))
def test_answers_decode_the_same_with_and_without_orjson(data: bytes) -> None:
    _json.loads(b"1")  # orjson is chosen on first use
    assert _json.loads is _json._fast_loads  # the test extra installs orjson
    assert _outcome(_json._fast_loads, data) == _outcome(_json._std_loads, data)


BODIES: list[Any] = [
    {"messages": [{"to": "+14155550123", "from": "OVO", "message": "Hi \u00e9 \U0001f600"}]},
    {"to": "+1", "message": 'tab\tnew\nline \x01 quote" back\\ slash / <>&'},
]


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_bodies_encode_to_the_same_value(body: Any) -> None:
    fast, std = _json._fast_dumps(body), _json._std_dumps(body)
    assert json.loads(fast) == json.loads(std) == body
    assert fast.startswith(b'{"') and b'": ' not in fast and b', "' not in fast  # compact


@pytest.mark.parametrize("dumps", [_json._fast_dumps, _json._std_dumps])
@pytest.mark.parametrize("bad", ["lone \ud800 surrogate", object()])
def test_what_json_cannot_hold_is_a_type_or_value_error(
    dumps: Callable[[Any], bytes], bad: Any
) -> None:
    with pytest.raises((TypeError, ValueError)):
        dumps({"message": bad})


def test_long_numbers_keep_every_digit_in_text_too() -> None:
    assert _json.loads('{"n": 123456789012345678901}') == {"n": 123456789012345678901}
    assert _json.loads(b'{"n": 18446744073709551615}') == {"n": 18446744073709551615}
