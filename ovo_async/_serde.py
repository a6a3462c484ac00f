"""The one cattrs converter: JSON <-> models (`from_` <-> `from`, ISO 8601, open statuses)."""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ._errors import APIResponseValidationError
from .models import (
    BatchMessage,
    BatchResult,
    ErrorDetail,
    Message,
    MessageStatus,
    SentMessage,
    SMSRequest,
)

if TYPE_CHECKING:
    import cattrs

T = TypeVar("T")

_STATUSES = {s.value: s for s in MessageStatus}


def parse_datetime(value: Any, _type: Any = datetime) -> datetime:
    """ISO 8601 with `Z` or an offset -> an aware datetime (naive values are taken as UTC)."""
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


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
        # as fast as the generated hook. Same rules: missing keys and wrong types raise.
        error = data.get("error")
        message_id = data.get("message_id")
        return BatchMessage(
            status=_status(data["status"], None),
            to=_str(data["to"], None),
            from_=_str(data["from"], None),
            message_id=None if message_id is None else _str(message_id, None),
            error=None if error is None else conv.structure(error, ErrorDetail),
        )

    conv.register_structure_hook(BatchMessage, batch_message)
    for cls in (SentMessage, Message):
        conv.register_structure_hook(
            cls, make_dict_structure_fn(cls, conv, from_=override(rename="from"))
        )
    conv.register_unstructure_hook(
        SMSRequest,
        make_dict_unstructure_fn(
            SMSRequest, conv, _cattrs_omit_if_default=True, from_=override(rename="from")
        ),
    )
    return conv


def request_body(request: SMSRequest) -> dict[str, Any]:
    """The JSON object for one message; `callback_url` is left out when not set."""
    body: dict[str, Any] = converter().unstructure(request)
    return body


def structure(response: httpx.Response, data: Any, cls: type[T]) -> T:
    """Turn a decoded 2xx body into `cls`, or raise `APIResponseValidationError`."""
    if not isinstance(data, dict):
        raise APIResponseValidationError(
            f"expected a JSON object for {cls.__name__}, got {type(data).__name__}",
            response=response,
            body=data,
        )
    try:
        return converter().structure(data, cls)
    except Exception as exc:
        reasons = "; ".join(_reasons(exc)) or str(exc)
        raise APIResponseValidationError(
            f"response does not fit {cls.__name__}: {reasons}", response=response, body=data
        ) from exc


def _reasons(exc: BaseException) -> list[str]:
    import cattrs

    if isinstance(exc, cattrs.BaseValidationError):
        return cattrs.transform_error(exc)
    return [f"{type(exc).__name__}: {exc}"]


__all__ = ["BatchResult", "ErrorDetail", "converter", "request_body", "structure"]
