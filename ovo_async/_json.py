"""JSON for request bodies, answers and the journal: orjson when it is installed (the
`fast` extra), else the standard library, with the same results either way.

orjson is stricter than the standard library (no `NaN`, UTF-8 only, 1,024 levels of
nesting): what it refuses to read is read again by `json`. It also reads an integer past
64 bits as a float, so a text with a run of 19 or more digits goes to `json` directly.
An answer means the same whichever is installed. The SDK's bodies hold only strings.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

_orjson: Any
try:
    _orjson = importlib.import_module("orjson")
except ImportError:  # pragma: no cover - the test extra installs it; see test_json
    _orjson = None

__all__ = ["dumps", "dumps_text", "loads"]


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _std_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")


def _fast_loads(data: bytes | str) -> Any:
    if isinstance(data, str):
        long = _LONG_DIGITS_TEXT.search(data) is not None
    else:
        long = _LONG_DIGITS.search(data) is not None
    if long:
        return _std_loads(data)
    try:
        return _orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError; whatever it refuses, json decides
        return _std_loads(data)


def _fast_dumps(value: Any) -> bytes:
    return _orjson.dumps(value)  # type: ignore[no-any-return]


#: Compact UTF-8 JSON. `TypeError`/`ValueError` for what JSON cannot hold (a lone
#: surrogate, an object that is not a str, number, list, dict, bool or None).
dumps = _std_dumps if _orjson is None else _fast_dumps
#: JSON from UTF-8 bytes or text. `ValueError` for what is not JSON, including nesting
#: too deep to decode.
loads = _std_loads if _orjson is None else _fast_loads


def dumps_text(value: Any) -> str:
    """`dumps` as text (the journal's columns)."""
    return dumps(value).decode()
