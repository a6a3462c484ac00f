"""What FakeOVO keeps and shows: requests, callbacks, stored messages, faults."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["CallbackRecord", "RecordedRequest"]


class DroppedConnection(Exception):
    """Raised by the app to make the server drop the connection without an answer."""


@attrs.define
class _Fault:
    status: int | None
    retry_after: float | None
    delay: float
    drop: bool
    body: Any


@attrs.frozen
class RecordedRequest:
    """A request the fake received. The Authorization header is masked."""

    method: str
    path: str
    endpoint: str | None
    headers: dict[str, str]
    body: Any
    status: int
    #: `time.monotonic()` when the request arrived.
    received_at: float = 0.0

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@attrs.frozen
class CallbackRecord:
    """A status callback the fake POSTed; `error` is set when it could not be delivered."""

    url: str
    payload: dict[str, Any]
    status_code: int | None = None
    error: str | None = None


@attrs.define
class _Stored:
    message_id: str
    to: str
    from_: str
    text: str
    callback_url: str | None
    created: float  # on the fake's clock
    unreachable: bool
    reported: str = "queued"


class _Problem(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
