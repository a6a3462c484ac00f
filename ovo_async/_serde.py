"""The one cattrs converter: JSON <-> models (`from_` <-> `from`, ISO 8601, open statuses)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from .models import (
    BatchMessage,
    BatchResult,
    ErrorDetail,
    Message,
    MessageStatus,
    SentMessage,
    SMSRequest,
    _new_batch_message,
    _new_sent_message,
)

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")

_STATUSES = {s.value: s for s in MessageStatus}
#: Known statuses by their text.
STATUSES: Mapping[str, MessageStatus] = _STATUSES


# One grammar on every Python: 3.10's `fromisoformat` refuses `Z`, `+0000` and anything
# but 3 or 6 fractional digits, which servers do send.
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,  # `\d` would take any script's digits
)


def parse_datetime(value: Any, _type: Any = datetime) -> datetime:
    """ISO 8601 -> an aware datetime, the same on every Python version.

    Takes 0-9 fractional digits (kept to the microsecond), `Z`, `+HH:MM`, `+HHMM` or
    `+HH`; a value without an offset is taken as UTC.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    if type(value) is str:
        return _parse_text(value)
    return _parse_text(str(value))


@functools.lru_cache(maxsize=256)
def _parse_text(value: str) -> datetime:
    # Cached: receipts of one second share their timestamp, and parsing cost half of
    # reading a receipt. Datetimes are immutable, so sharing one is safe.
    match = _ISO.fullmatch(value)
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {value[:40]!r}")
    year, month, day, hour, minute, second, fraction, _zulu, sign, oh, om = match.groups()
    tz = timezone.utc
    if sign is not None:
        offset = timedelta(hours=int(oh), minutes=int(om or 0))
        if offset >= timedelta(hours=24):
            raise ValueError(f"offset out of range in {value[:40]!r}")
        tz = timezone(-offset if sign == "-" else offset)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tz
    )


def status(value: str) -> MessageStatus | str:
    """A status string as a `MessageStatus` when known, else kept as is."""
    return _STATUSES.get(value, value)


def _status(value: Any, _type: Any) -> MessageStatus | str:
    if not isinstance(value, str):
        raise TypeError(f"expected a status string, got {type(value).__name__}")
    return _STATUSES.get(value, value)


def _str(value: Any, _type: Any) -> str:
    # cattrs would turn 123 into "123"; a field of the wrong JSON type is a bad body.
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: Any, _type: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


@functools.lru_cache(maxsize=1)
def converter() -> cattrs.Converter:
    """The converter, built on first use (cattrs adds to import time)."""
    import cattrs
    from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

    conv = cattrs.Converter()
    conv.register_structure_hook(datetime, parse_datetime)
    conv.register_structure_hook(MessageStatus | str, _status)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(int, _int)

    def batch_message(data: Any, _type: Any) -> BatchMessage:
        # Hand-written: a batch result holds up to 1,000 of these, and this is about twice
        # as fast as the generated hook. An entry that does not fit is kept with `problem`
        # set, so one odd entry never costs the other entries of an accepted batch.
        try:
            error = data.get("error")
            message_id = data.get("message_id")
            status, to, from_ = data["status"], data["to"], data["from"]
            if (
                error is None
                and type(status) is str
                and type(to) is str
                and type(from_) is str
                and type(message_id) is str
            ):  # an accepted entry, as nearly all are
                return _new_batch_message(
                    _STATUSES.get(status, status), to, from_, message_id, None, None
                )
            return _new_batch_message(
                _status(data["status"], None),
                _str(data["to"], None),
                _str(data["from"], None),
                None if message_id is None else _str(message_id, None),
                None if error is None else conv.structure(error, ErrorDetail),
                None,
            )
        except Exception as exc:
            return _odd_entry(data, exc)

    conv.register_structure_hook(BatchMessage, batch_message)

    def batch_messages(data: Any, _type: Any) -> tuple[BatchMessage, ...]:
        # cattrs would iterate a string into one odd entry per character.
        if not isinstance(data, list):
            raise TypeError(f"expected a list of entries, got {type(data).__name__}")
        return tuple([batch_message(item, None) for item in data])

    entries = tuple[BatchMessage, ...]
    conv.register_structure_hook_func(lambda t: t == entries, batch_messages)
    # `request_id` and `headers` come from the response's headers, never from its body.
    omit = override(omit=True)
    for cls in (SentMessage, Message):
        conv.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls, conv, from_=override(rename="from"), request_id=omit, headers=omit
            ),
        )
    conv.register_structure_hook(
        BatchResult, make_dict_structure_fn(BatchResult, conv, request_id=omit, headers=omit)
    )
    conv.register_unstructure_hook(
        SMSRequest,
        make_dict_unstructure_fn(
            SMSRequest, conv, _cattrs_omit_if_default=True, from_=override(rename="from")
        ),
    )
    return conv


def _odd_entry(data: Any, exc: Exception) -> BatchMessage:
    get = data.get if isinstance(data, dict) else {}.get
    reasons = "; ".join(_reasons(exc)) or repr(exc)

    def text(key: str) -> str:
        value = get(key)
        return value if isinstance(value, str) else ""

    message_id = get("message_id")
    return BatchMessage(
        status=text("status") or "unknown",
        to=text("to"),
        from_=text("from"),
        message_id=message_id if isinstance(message_id, str) else None,
        problem=f"entry does not fit BatchMessage: {reasons}"[:500],
    )


def request_body(request: SMSRequest) -> dict[str, Any]:
    """The JSON object for one message; `from` and `callback_url` are left out when not
    set. Written out rather than through cattrs: a batch builds a thousand of these."""
    body: dict[str, Any] = {"to": request.to, "message": request.message}
    if request.from_ is not None:
        body["from"] = request.from_
    if request.callback_url is not None:
        body["callback_url"] = request.callback_url
    return body


class BodyMismatch(ValueError):
    """A decoded 2xx body that does not fit the model; the transport gives it its fate."""


def structure(data: Any, cls: type[T]) -> T:
    """Turn a decoded 2xx body into `cls`, or raise `BodyMismatch` saying why."""
    if not isinstance(data, dict):
        raise BodyMismatch(f"expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    try:
        return converter().structure(data, cls)
    except Exception as exc:
        reasons = "; ".join(_reasons(exc)) or str(exc)
        raise BodyMismatch(f"response does not fit {cls.__name__}: {reasons}"[:1000]) from None


def parser(cls: type[T]) -> Callable[[Any], T]:
    """`structure` for one model, as the transport's parse callback."""
    if cls is SentMessage:
        return _sent_message  # type: ignore[return-value]  # pyright: ignore[reportReturnType]
    return functools.partial(structure, cls=cls)


def _sent_message(data: Any) -> SentMessage:
    """`structure(data, SentMessage)`, with a fast path for a receipt of plain strings
    (one per single send); anything else takes the general path and its errors."""
    if type(data) is dict:
        get = data.get
        message_id, status, to, from_ = get("message_id"), get("status"), get("to"), get("from")
        created_at = get("created_at")
        if (
            type(message_id) is str
            and type(status) is str
            and type(to) is str
            and type(from_) is str
            and type(created_at) is str
        ):
            try:
                when = _parse_text(created_at)
            except ValueError:
                pass  # the general path says why
            else:
                return _new_sent_message(
                    message_id, _STATUSES.get(status, status), to, from_, when, None, None
                )
    return structure(data, SentMessage)


class BatchParts:
    """A batch answer for the bulk engine: its head (a `BatchResult` without entries) and
    its entries as decoded, which the engine turns into outcomes in one pass (an accepted
    entry never becomes a `BatchMessage`)."""

    __slots__ = ("entries", "head")

    def __init__(self, head: BatchResult, entries: list[Any]) -> None:
        self.head = head
        self.entries = entries


def batch_parts(data: Any) -> BatchParts:
    """`structure(data, BatchResult)`, with the entries left as decoded."""
    entries = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        structure(data, BatchResult)  # raises the same BodyMismatch as for sms.batch
        raise AssertionError("unreachable")  # pragma: no cover
    return BatchParts(structure({**data, "messages": []}, BatchResult), entries)


def batch_entry(data: Any) -> BatchMessage:
    """One entry of a batch answer; one that does not fit has `problem` set."""
    return converter().structure(data, BatchMessage)


def with_response(result: T, headers: Mapping[str, str]) -> T:
    """Put the response's request id and headers on a model that has room for them."""
    if isinstance(result, BatchParts):
        with_response(result.head, headers)
    elif isinstance(result, (SentMessage, BatchResult, Message)):
        # Frozen models: set once, here, before the caller ever sees the object.
        setattr_ = object.__setattr__
        setattr_(result, "request_id", headers.get("x-request-id"))
        setattr_(result, "headers", headers)
    return result


def _reasons(exc: BaseException) -> list[str]:
    import cattrs

    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc)
    return [f"{type(exc).__name__}: {exc}"]


__all__ = [
    "BatchParts",
    "BatchResult",
    "BodyMismatch",
    "ErrorDetail",
    "batch_entry",
    "batch_parts",
    "converter",
    "parse_datetime",
    "parser",
    "request_body",
    "structure",
    "with_response",
]
