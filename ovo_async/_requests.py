"""Turning what callers pass (keywords, mappings, SMSRequest) into checked SMSRequests."""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Mapping
from typing import Any

from . import _validation as v
from ._errors import ValidationError
from ._phone import normalize_number
from .models import SMSRequest, _new_request, _new_requests

_KEYS = frozenset({"to", "from", "from_", "message", "callback_url"})


def make_request(
    item: Any,
    *,
    default_from: str | None,
    prefix: str = "",
    max_segments: int | None = None,
    region: str | None = None,
) -> SMSRequest:
    """An `SMSRequest` from an `SMSRequest` or a mapping, with `from_` filled from the default.

    With `region`, a mapping's `to` may be written as people do and is made E.164; with
    `max_segments`, a longer message is refused. A `ValidationError` names the field
    under `prefix` (for example `messages[3].to`).
    """
    try:
        # Bulk input is mostly plain dicts: try the fast path before the ABC checks.
        fast = _from_plain_dict(item) if type(item) is dict and region is None else None
        if fast is not None:
            request = fast
        elif isinstance(item, SMSRequest):
            request = item
        elif isinstance(item, Mapping):
            request = _from_mapping(item, region)
        else:
            raise ValidationError(
                "", f"must be an SMSRequest or a mapping, got {type(item).__name__}"
            )
        if request.from_ is None:
            if default_from is None:
                raise ValidationError(
                    "from_", "is required (pass from_=... or set default_from on the client)"
                )
            # Every field already passed its check (the client checked default_from).
            request = SMSRequest._checked(
                request.to, request.message, default_from, request.callback_url
            )
        if max_segments is not None:
            _check_segments(request.message, max_segments)
        return request
    except ValidationError as exc:
        if not prefix:
            raise
        field = f"{prefix}.{exc.field}" if exc.field else prefix
        raise ValidationError(field, str(exc).split(": ", 1)[1]) from None


def _from_mapping(item: Mapping[Any, Any], region: str | None) -> SMSRequest:
    if not _KEYS.issuperset(item):
        unknown = [key for key in item if key not in _KEYS]
        raise ValidationError(
            str(unknown[0]), "is not a field of an SMS (to, from, message, callback_url)"
        )
    if "from_" in item and "from" in item:
        raise ValidationError("from_", "give either 'from' or 'from_', not both")
    for key in ("to", "message"):
        if key not in item:
            raise ValidationError(key, "is required")
    to = item["to"]
    if region is not None:
        to = normalize_number(to, region)
    return SMSRequest(
        to=to,
        message=item["message"],
        from_=item.get("from_", item.get("from")),
        callback_url=item.get("callback_url"),
    )


def _from_plain_dict(item: dict[Any, Any]) -> SMSRequest | None:
    """The common case, `{"to", "from", "message"}` of plain strings, checked by the same
    rules as `SMSRequest` at about half the cost (bulk input is mostly this); None for
    anything else, which takes the general path and its precise errors."""
    n = len(item)
    if n == 3:
        if "from" not in item:
            return None
        from_ = item["from"]
    elif n == 2:
        from_ = None
    else:
        return None
    to, message = item.get("to"), item.get("message")
    if (
        type(to) is not str
        or type(message) is not str
        or (from_ is not None and type(from_) is not str)
    ):
        return None
    # The validators' rules, inline; on any doubt the validator itself runs and raises
    # its precise error.
    if _E164(to) is None:
        v.phone_number("to", to)
    # ASCII text (most of it) holds no surrogate: only NUL is left to look for.
    if not message.strip() or (
        "\x00" in message if message.isascii() else _BAD_TEXT(message) is not None
    ):
        v.message_text("message", message)
    if from_ is not None and from_ not in _GOOD_SENDERS:
        v.sender("from_", from_)
        if len(_GOOD_SENDERS) < 256:
            _GOOD_SENDERS.add(from_)
    return _new_request(to, message, from_, None)


def _from_plain_dicts(items: list[Any], default_from: str | None) -> list[SMSRequest] | None:
    """`_from_plain_dict` for a whole chunk, in whole-list steps (no interpreted step
    per item); None unless every item is a plain dict that passes it with a sender (its
    own or `default_from`), so that the item-by-item path gives each input its own
    answer."""
    n = len(items)
    if set(map(type, items)) != _JUST_DICT:
        return None
    sizes = set(map(len, items))
    try:
        tos, messages = list(map(_TO, items)), list(map(_MESSAGE, items))
        if sizes == _THREE:
            froms: Any = list(map(_FROM, items))
            texts = itertools.chain(tos, messages, froms)
        elif sizes == _TWO and default_from is not None:
            froms = itertools.repeat(default_from, n)  # checked when the client was made
            texts = itertools.chain(tos, messages)
        else:
            return None
    except KeyError:  # other keys than these: the item-by-item path names them
        return None
    if set(map(type, texts)) - _JUST_STR:
        return None
    # Every number E.164: one match over them all, a line each (a number holding a line
    # break adds a line and fails the count).
    lines = "\n".join(tos)
    if lines.count("\n") != n - 1 or _E164_LINES(lines) is None:
        return None
    # The rules of `_from_plain_dict` for ASCII text: not blank, no NUL. Joined, the
    # texts are checked in two scans of memory.
    text = "".join(messages)
    if not text.isascii() or "\x00" in text or not all(map(str.strip, messages)):
        return None
    if type(froms) is list and not _GOOD_SENDERS.issuperset(froms):
        return None
    return _new_requests(n, tos, messages, froms, itertools.repeat(None, n))


_TO, _MESSAGE, _FROM = (operator.itemgetter(key) for key in ("to", "message", "from"))
#: What every item (or every field) of a list must be for a list-at-a-time path.
_JUST_DICT, _JUST_STR = {dict}, {str}
_TWO, _THREE = {2}, {3}
_E164 = v.E164.fullmatch
_E164_LINES = re.compile(f"{v.E164.pattern}(?:\\n{v.E164.pattern})*").fullmatch
_BAD_TEXT = v._SURROGATE_OR_NUL.search


#: Senders that passed `v.sender`: a campaign has one or a few, checked a million times.
_GOOD_SENDERS: set[str] = set()


def _check_segments(message: str, max_segments: int) -> None:
    from ._segments import count_segments  # only with max_segments: not at import time

    info = count_segments(message)
    if info.segments <= max_segments:
        return
    why = ""
    if info.non_gsm:
        shown = "".join(info.non_gsm[:10]) + ("..." if len(info.non_gsm) > 10 else "")
        why = f"; it is UCS-2 because of {shown!r}, without those it could be GSM-7"
    raise ValidationError(
        "message",
        f"costs {info.segments} segments ({info.encoding}, {info.units} units), more than "
        f"max_segments={max_segments}{why}",
    )
