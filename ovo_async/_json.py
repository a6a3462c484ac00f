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
from typing import Any

__all__ = ["dumps", "dumps_text", "loads"]


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _std_loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


#: Digits to "9", everything else to " ": a run of 19 digits is then a plain substring
#: search (a regex took three times orjson's time on a batch answer).
_DIGITS = bytes(57 if 48 <= b <= 57 else 32 for b in range(256))
_LONG_RUN = b"9" * 19


def _fast_loads(data: bytes | str) -> Any:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _LONG_RUN in raw.translate(_DIGITS):
        return _std_loads(data)
    try:
        return _orjson.loads(data)
    except ValueError:  # orjson.JSONDecodeError; whatever it refuses, json decides
        return _std_loads(data)


def _fast_dumps(value: Any) -> bytes:
    return _orjson.dumps(value)  # type: ignore[no-any-return]


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. `TypeError`/`ValueError` for what JSON cannot hold (a lone
    surrogate, an object that is not a str, number, list, dict, bool or None)."""
    _choose()
    return dumps(value)


def loads(data: bytes | str) -> Any:
    """JSON from UTF-8 bytes or text. `ValueError` for what is not JSON, including
    nesting too deep to decode."""
    _choose()
    return loads(data)


_orjson: Any = None


def _choose() -> None:
    # On first use, not at import: importing orjson costs about 2 ms, which
    # `from ovo_async import OVOClient` need not pay.
    global _orjson, dumps, loads
    try:
        _orjson = importlib.import_module("orjson")
    except ImportError:  # pragma: no cover - the test extra installs it; see test_json
        dumps, loads = _std_dumps, _std_loads
    else:
        dumps, loads = _fast_dumps, _fast_loads


def dumps_text(value: Any) -> str:
    """`dumps` as text (the journal's columns). Text that UTF-8 cannot carry (a lone
    surrogate, which a server's JSON may hold as `\\ud800`) is written escaped, so it
    reads back as it was."""
    try:
        return dumps(value).decode()
    except (TypeError, ValueError):
        return json.dumps(value, separators=(",", ":"))
