"""Input checks run before any request: E.164 numbers, sender IDs, text, URLs.

Each check raises `ValidationError` naming the field, so a caller knows what to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from ._errors import ValidationError

E164 = re.compile(r"\+[1-9][0-9]{1,14}")
SENDER_ID = re.compile(r"[A-Za-z0-9 ]{1,11}")

#: The most messages one `sms.batch` call accepts; `send_many` splits larger jobs.
MAX_BATCH_SIZE = 1000
#: `send_many` batches by default: every message keeps its own recipient in a batch, and
#: one request of 100 messages costs the client a small fraction of 100 single sends.
DEFAULT_BATCH_SIZE = 100


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def phone_number(field: str, value: Any) -> str:
    """An E.164 number: `+` then 2 to 15 digits, the first 1-9."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if E164.fullmatch(value) is None:
        raise ValidationError(
            field,
            f"must be an E.164 number such as +14155550123, got {_show(value)} (for national "
            "formats set the client's default_region, or use normalize_number)",
        )
    return value


def sender(field: str, value: Any) -> str:
    """A sender ID (1-11 letters, digits or spaces, not all spaces) or an E.164 number."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if E164.fullmatch(value) or (SENDER_ID.fullmatch(value) and value.strip()):
        return value
    raise ValidationError(
        field,
        "must be a sender ID of 1-11 letters, digits or spaces, or an E.164 number, "
        f"got {_show(value)}",
    )


_SURROGATE_OR_NUL = re.compile("[\x00\ud800-\udfff]")


def message_text(field: str, value: Any) -> str:
    """Non-empty text that can travel as UTF-8 (no lone surrogates, no NUL)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValidationError(field, "must not be empty")
    bad = _SURROGATE_OR_NUL.search(value)
    if bad is not None:
        what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate"
        raise ValidationError(
            field, f"holds {what} ({bad.group()!r} at position {bad.start()}): not valid text"
        )
    return value


def callback_url(field: str, value: Any) -> str | None:
    """None, or an absolute http(s) URL."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(field, f"must be an absolute http(s) URL, got {_show(value)}")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValidationError(
            field,
            "must be a URL of printable ASCII without spaces or control characters "
            f"(percent-encode the rest), got {_show(value)}",
        )
    return value


def is_key_text(value: Any, most: int) -> TypeGuard[str]:
    """Whether `value` can be (part of) an Idempotency-Key exactly as given: 1 to `most`
    printable ASCII characters, not starting or ending with a space (a server strips
    those from a header value, so " k" would name the same key as "k")."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= most
        and value.isascii()
        and value.isprintable()
        and value[0] != " "
        and value[-1] != " "
    )


def idempotency_key(field: str, value: Any) -> str | None:
    """None, or a header value `is_key_text` accepts, of at most 255 characters."""
    if value is None:
        return None
    if not is_key_text(value, 255):
        raise ValidationError(
            field,
            "must be 1-255 printable ASCII characters, not starting or ending with a space, "
            f"got {_show(value)}",
        )
    return value


#: Longest message id taken: ids are short, and one goes into a URL path.
MAX_MESSAGE_ID = 255


def message_id(field: str, value: Any) -> str:
    """A message id: 1-255 printable characters (no control characters or lone
    surrogates), not `.` or `..`."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if value in ("", ".", "..") or not value.isprintable() or len(value) > MAX_MESSAGE_ID:
        raise ValidationError(
            field,
            f"must be a message id such as 'sm_123' (1-{MAX_MESSAGE_ID} printable "
            f"characters), got {_show(value)}",
        )
    return value


# RFC 9110 token characters for a header name.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the SDK sets itself; a caller's value would break auth, framing or retries.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "idempotency-key",
        "content-length",
        "transfer-encoding",
        "host",
        "content-type",
    }
)


def headers(field: str, value: Any) -> dict[str, str]:
    """Extra headers: `str` names (tokens) and `str` printable ASCII values, none reserved."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping of str to str, got {type(value).__name__}")
    checked: dict[str, str] = {}
    for name, val in value.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ValidationError(field, f"header name {_show(name)} is not a valid str token")
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"{field}[{name!r}]", "is set by the SDK and may not be given")
        if not isinstance(val, str) or not val.isascii() or not val.isprintable():
            raise ValidationError(
                f"{field}[{name!r}]", f"must be a str of printable ASCII, got {_show(val)}"
            )
        checked[name] = val
    return checked


def seconds(field: str, value: Any, *, allow_zero: bool = True) -> float:
    """A finite, non-negative number of seconds (positive when `allow_zero` is False)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (not allow_zero and value == 0):
        need = "non-negative" if allow_zero else "positive"
        raise ValidationError(field, f"must be a finite, {need} number, got {value!r}")
    return float(value)


def count(field: str, value: Any) -> int:
    """A non-negative int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(field, f"must be a non-negative int, got {value!r}")
    return value
