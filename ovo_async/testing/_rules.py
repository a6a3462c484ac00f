"""The OVO API's rules as the fake applies them: its own copy, so that a mistake in the
SDK's validation or segment counting shows up in tests instead of being shared."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from ._records import _Problem

# \Z, not $: `$` also matches before a trailing newline, which a real server refuses.
_PHONE = re.compile(r"\A\+[1-9][0-9]{1,14}\Z")
_ALPHA_SENDER = re.compile(r"\A[A-Za-z0-9 ]{1,11}\Z")
MAX_BATCH = 1000
ENDPOINTS = ("send", "batch", "retrieve")


def _now_iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# GSM 03.38 as its code table, written out by position (0x1B, the escape, as "\x00"):
# the fake's own copy, so that a mistake in the SDK's counting shows up in tests.
_GSM_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x00ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_ESCAPED = "\f^{}\\[~]|€"


def _segments(text: str) -> int:
    """Segments as a carrier counts them: GSM-7 septets (escapes cost 2) or UTF-16 units
    (surrogate pairs cost 2), 160/70 in one part, else 153/67 per part, no pair split."""
    if all((c in _GSM_TABLE and c != "\x00") or c in _GSM_ESCAPED for c in text):
        sizes = [2 if c in _GSM_ESCAPED else 1 for c in text]
        single, part = 160, 153
    else:
        sizes = [len(c.encode("utf-16-le")) // 2 for c in text]
        single, part = 70, 67
    if sum(sizes) <= single:
        return 1
    parts, room = 0, 0
    for size in sizes:
        if size > room:
            parts, room = parts + 1, part
        room -= size
    return parts


def _seconds(value: float) -> str:
    return str(max(0, math.ceil(value)))


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _check_item(item: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _Problem(
            400, "invalid_parameter", "each message must be an object", prefix.rstrip(".")
        )
    to, sender, text = item.get("to"), item.get("from"), item.get("message")
    if not isinstance(to, str) or not _PHONE.match(to):
        raise _Problem(400, "invalid_parameter", "to must be an E.164 number", prefix + "to")
    if not isinstance(sender, str) or not (_PHONE.match(sender) or _ALPHA_SENDER.match(sender)):
        raise _Problem(
            400, "invalid_parameter", "from must be a sender ID or number", prefix + "from"
        )
    if not isinstance(text, str) or not text:
        raise _Problem(
            400, "invalid_parameter", "message must be non-empty text", prefix + "message"
        )
    callback = item.get("callback_url")
    if callback is not None and not _is_url(callback):
        raise _Problem(
            400, "invalid_parameter", "callback_url is not a URL", prefix + "callback_url"
        )
    return item
