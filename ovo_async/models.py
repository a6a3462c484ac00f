"""Value objects sent to and returned by the OVO API.

All models are frozen, slotted attrs classes. The Python attribute `from_` is the JSON
field `from`. Statuses the SDK does not know are kept as plain strings.
"""

from __future__ import annotations

import collections
import enum
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

import attrs

from . import _validation as v
from ._errors import OVOError

__all__ = [
    "BatchMessage",
    "BatchResult",
    "BulkOutcome",
    "ErrorDetail",
    "Message",
    "MessageStatus",
    "SMSRequest",
    "SentMessage",
]

T = TypeVar("T")


class MessageStatus(str, enum.Enum):
    """A message's delivery status. Compares equal to its string value."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    REJECTED = "rejected"

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        """True for statuses no later callback changes: delivered, failed, undelivered,
        rejected."""
        return self not in (MessageStatus.QUEUED, MessageStatus.SENT)


def _check(check: Any) -> Any:
    def validator(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check(attribute.name, value)

    return validator


def _optional_sender(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        v.sender(attribute.name, value)


@attrs.frozen(kw_only=True)
class SMSRequest:
    """One SMS to send. Checked when made: a bad field raises `ValidationError`.

    `from_` may be left out when the client has a `default_from`.
    """

    to: str = attrs.field(validator=_check(v.phone_number))
    message: str = attrs.field(validator=_check(v.message_text))
    from_: str | None = attrs.field(default=None, validator=_optional_sender)
    callback_url: str | None = attrs.field(default=None, validator=_check(v.callback_url))

    @classmethod
    def _checked(
        cls, to: str, message: str, from_: str | None, callback_url: str | None = None
    ) -> SMSRequest:
        # Fields the caller has already put through the validators above (bulk input's
        # fast path); skips running them a second time.
        return _new_request(to, message, from_, callback_url)


@attrs.frozen(kw_only=True)
class SentMessage:
    """The server's receipt for an accepted message."""

    message_id: str
    status: MessageStatus | str
    to: str
    from_: str
    created_at: datetime

    #: The server's `X-Request-Id` for the call that returned this (quote it to support).
    request_id: str | None = attrs.field(default=None, eq=False)
    #: That response's headers (lower-case names).
    headers: Mapping[str, str] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class ErrorDetail:
    """Why one item of a batch failed."""

    code: str | None = None
    message: str | None = None
    param: str | None = None


@attrs.frozen(kw_only=True)
class BatchMessage:
    """The outcome of one item of a batch; `message_id` is None when it was not accepted.

    `problem` is set when the server's entry did not fit this model (its fields are then
    what could be read): the batch was accepted, so this message may have been sent.
    """

    status: MessageStatus | str
    to: str
    from_: str
    message_id: str | None = None
    error: ErrorDetail | None = None
    problem: str | None = None


@attrs.frozen(kw_only=True)
class BatchResult:
    """The server's answer to `sms.batch`: counts and one entry per submitted item, in order."""

    batch_id: str
    total_messages: int
    successful: int
    failed: int
    messages: tuple[BatchMessage, ...]
    created_at: datetime

    #: The server's `X-Request-Id` for the call that returned this (quote it to support).
    request_id: str | None = attrs.field(default=None, eq=False)
    #: That response's headers (lower-case names).
    headers: Mapping[str, str] | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Message:
    """A message as stored by OVO, with its current status."""

    message_id: str
    status: MessageStatus | str
    to: str
    from_: str
    message: str
    segments: int
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None

    #: The server's `X-Request-Id` for the call that returned this (quote it to support).
    request_id: str | None = attrs.field(default=None, eq=False)
    #: That response's headers (lower-case names).
    headers: Mapping[str, str] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def is_final(self) -> bool:
        """True once the status will not change again (an unknown status counts as final:
        no known status follows it)."""
        status = self.status
        return status.is_final if isinstance(status, MessageStatus) else True


@attrs.frozen(kw_only=True)
class BulkOutcome:
    """The result of one input of `sms.send_many`.

    `index` is the input's 0-based position; `request` is the `SMSRequest` made from it
    (or the input as given when it could not be made one); exactly one of `message` and
    `error` is set. `replayed` is True when the outcome comes from the run's journal (an
    earlier run settled it) rather than from a request this input caused now.
    """

    index: int
    request: SMSRequest | Any
    message: SentMessage | None = None
    error: OVOError | None = None
    replayed: bool = False
    #: True when the message was accepted by the server (`error` is None). Stored, not
    #: a property: a loop over a million outcomes reads it a million times.
    ok: bool = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(lambda self: self.error is None, takes_self=True),
    )


def _trusted(cls: type[T]) -> Callable[..., T]:
    """A constructor for `cls` taking every field, in order, positionally, with no checks.

    For values the SDK has already checked or that it made itself, on bulk paths that
    build millions of these: setting slots through their descriptors costs about half
    of a frozen class's `__init__`. Never for what a caller hands in.
    """
    names = [field.name for field in attrs.fields(cast(Any, cls))]
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = [f"def build({', '.join(names)}):", "    obj = new(cls)"]
    for i, name in enumerate(names):
        namespace[f"set{i}"] = cls.__dict__[name].__set__
        lines.append(f"    set{i}(obj, {name})")
    lines.append("    return obj")
    exec("\n".join(lines), namespace)  # our own field names only, as attrs does
    build: Callable[..., T] = namespace["build"]
    return build


def _trusted_many(cls: type[T]) -> Callable[..., list[T]]:
    """`_trusted` for many at once: `build(n, column, ...)` with a column of `n` values
    per field, in order. Each slot is set from C, a column at a time: no interpreted
    step per object, about 40 % less per object than `_trusted`."""
    # starmap over zip, not map: zip hands back the same argument tuple each time (its
    # count drops back to one after the call), where map would make a tuple per call for
    # the slot's `__set__`, which takes no vectorcall: a third less per slot set.
    setters = [cls.__dict__[field.name].__set__ for field in attrs.fields(cast(Any, cls))]
    new = cast("Callable[[type[T]], T]", object.__new__)
    only_cls = (cls,)

    def build(n: int, *columns: Iterable[Any]) -> list[T]:
        # One argument tuple, repeated: `object.__new__` takes no vectorcall either.
        objs: list[T] = list(itertools.starmap(new, itertools.repeat(only_cls, n)))
        for setter, column in zip(setters, columns, strict=True):
            calls = itertools.starmap(setter, zip(objs, column, strict=True))
            collections.deque(calls, maxlen=0)  # run them, keep nothing
        return objs

    return build


_new_request = _trusted(SMSRequest)
#: (message_id, status, to, from_, created_at, request_id, headers)
_new_sent_message = _trusted(SentMessage)
#: (status, to, from_, message_id, error, problem)
_new_batch_message = _trusted(BatchMessage)
#: (index, request, message, error, replayed, ok)
_new_bulk_outcome = _trusted(BulkOutcome)
_new_requests = _trusted_many(SMSRequest)
_new_sent_messages = _trusted_many(SentMessage)
_new_bulk_outcomes = _trusted_many(BulkOutcome)
