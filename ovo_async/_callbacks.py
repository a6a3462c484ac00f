"""Status callbacks: what OVO POSTs to a message's `callback_url`, read as a `Message`.

A callback's body is the message object exactly as `sms.retrieve` returns it, sent each
time the status changes. Unknown fields and statuses are kept or ignored as for any
answer; anything else that is not such an object is a `ValidationError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._errors import ValidationError
from ._serde import BodyMismatch, structure
from ._validation import _SURROGATE_OR_NUL, message_id
from .models import Message

__all__ = ["MAX_CALLBACK_BYTES", "parse_status_callback"]

#: A callback body is a few hundred bytes; anything past this is not one.
MAX_CALLBACK_BYTES = 64 * 1024


def parse_status_callback(body: bytes | str | Mapping[str, Any]) -> Message:
    """Read a status callback's body (raw bytes, text, or an already decoded mapping).

    Use it in your endpoint: `message = parse_status_callback(await request.body())`,
    then `message.status.is_final` tells whether more callbacks will follow.
    """
    data: Any
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        if len(raw) > MAX_CALLBACK_BYTES:
            raise ValidationError("body", f"is {len(raw):,} bytes: not a status callback")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("body", "is not UTF-8 text") from None
    if isinstance(body, str):
        if len(body) > MAX_CALLBACK_BYTES:
            raise ValidationError("body", f"is {len(body):,} characters: not a status callback")
        try:
            data = json.loads(body)
        except RecursionError:
            raise ValidationError("body", "is JSON nested too deeply") from None
        except ValueError as exc:
            raise ValidationError("body", f"is not JSON ({exc})") from None
    elif isinstance(body, Mapping):
        data = dict(body)
    else:
        raise ValidationError("body", f"must be bytes, str or a mapping, got {type(body).__name__}")
    try:
        message = structure(data, Message)
    except BodyMismatch as exc:
        raise ValidationError("body", f"is not a status callback: {exc}") from None
    _check_fields(message)
    return message


#: Most segments of one SMS (a concatenated message's part number is one byte).
MAX_SEGMENTS = 255


def _check_fields(message: Message) -> None:
    """What no message OVO sent carries. A callback URL is public, so its body is
    anyone's: an id with a line break would reach the caller's logs and lookups."""
    try:
        message_id("message_id", message.message_id)
    except ValidationError as exc:
        raise ValidationError("body", f"is not a status callback: {exc}") from None
    texts = {"to": message.to, "from": message.from_, "status": str(message.status)}
    for name, text in texts.items():
        if not text.strip():
            raise ValidationError("body", f"is not a status callback: {name} is empty")
        if not text.isprintable():
            raise ValidationError(
                "body", f"is not a status callback: {name} {text[:40]!r} holds control characters"
            )
    if _SURROGATE_OR_NUL.search(message.message):
        raise ValidationError(
            "body", "is not a status callback: message holds NUL or a lone surrogate"
        )
    if not 0 <= message.segments <= MAX_SEGMENTS:
        raise ValidationError(
            "body", f"is not a status callback: segments {message.segments} is not 0-{MAX_SEGMENTS}"
        )
