"""The error hierarchy. Every error the SDK raises is an `OVOError`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "MessageRejectedError",
    "NotFoundError",
    "OVOError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "UnprocessableEntityError",
    "ValidationError",
    "error_class_for_status",
]

#: Attributes an error keeps through `pickle` (Celery, multiprocessing). The response is
#: dropped: it holds the request, and the request holds the key's header.
_PICKLED = (
    "message",
    "field",
    "status_code",
    "code",
    "param",
    "request_id",
    "retry_after",
    "body",
    "may_have_been_sent",
    "idempotency_key",
    "status",
    "batch_id",
)


def _rebuild(cls: type[OVOError], args: tuple[Any, ...], state: dict[str, Any]) -> OVOError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    for name, value in state.items():
        setattr(error, name, value)
    if isinstance(error, (APIError, APIResponseValidationError)):
        error.response = None
    return error


class OVOError(Exception):
    """Base class of every error raised by ovo-async.

    Errors raised by a POST carry `idempotency_key` (the key sent with every attempt)
    and `may_have_been_sent`: True when the server may have acted on the request (the
    answer was lost, or it failed with a 5xx), False when it provably did not.
    """

    idempotency_key: str | None = None
    may_have_been_sent: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        state = {name: getattr(self, name) for name in _PICKLED if name in self.__dict__}
        state["may_have_been_sent"] = self.may_have_been_sent
        state["idempotency_key"] = self.idempotency_key
        return (_rebuild, (type(self), self.args, state))


class ValidationError(OVOError, ValueError):
    """Bad input, raised before any request is sent. `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class APIError(OVOError):
    """The API answered with a non-2xx status.

    `status_code`, `code`, `message`, `param` and `request_id` come from the error body
    (or the `X-Request-Id` header); `body` is the decoded body (or its text) and
    `response` the `httpx.Response` (None after unpickling). `retry_after` is the
    server's `Retry-After` in seconds (on 429 and 503), else None.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: Any = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code: int = response.status_code
        self.response: httpx.Response | None = response
        self.body = body
        self.code = code
        self.param = param
        self.request_id = request_id
        self.retry_after = retry_after
        detail = f"{self.status_code} {message}"
        if code:
            detail += f" (code={code}"
            detail += f", param={param})" if param else ")"
        if request_id:
            detail += f" [request_id={request_id}]"
        super().__init__(detail)
        # `message` is the server's own text, without the status decoration.
        self.message = message


class BadRequestError(APIError):
    """400: the server rejected the request's content."""


class AuthenticationError(APIError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """403: the key may not do this."""


class NotFoundError(APIError):
    """404: no such resource (for example an unknown message id)."""


class ConflictError(APIError):
    """409: conflicts with another request, such as one in flight with the same idempotency key."""


class UnprocessableEntityError(APIError):
    """422: well-formed but semantically invalid."""


class RateLimitError(APIError):
    """429: too many requests. `retry_after` is the server's requested wait in seconds."""


class InternalServerError(APIError):
    """5xx: the server (or a proxy in front of it) failed."""


class APIConnectionError(OVOError):
    """No usable answer arrived: the connection failed, broke, or the protocol was violated."""

    def __init__(self, message: str, *, may_have_been_sent: bool) -> None:
        super().__init__(message)
        self.may_have_been_sent = may_have_been_sent


class APITimeoutError(APIConnectionError):
    """A timeout expired (connect, write, read or waiting for a pooled connection)."""


class ResponseTooLargeError(APIConnectionError):
    """The answer's body (decompressed) exceeded the client's `max_response_bytes`.

    Reading stopped at the cap. For a POST the server did act, so `may_have_been_sent`
    is True unless the status says otherwise.
    """


class MessageRejectedError(OVOError):
    """The server refused one message of a batch; the rest of the batch went ahead.

    `code`, `param` and `status` come from the batch result's entry; `batch_id` names
    the batch.
    """

    def __init__(
        self, message: str, *, code: str | None, param: str | None, status: str, batch_id: str
    ) -> None:
        super().__init__(message)
        self.code: str | None = code
        self.param: str | None = param
        self.status: str = status
        self.batch_id: str = batch_id


class APIResponseValidationError(OVOError):
    """A 2xx response whose body does not fit the expected model.

    `body` keeps the raw body (decoded JSON, or text when it is not JSON). The server
    accepted the request, so for a POST `may_have_been_sent` is True: check with
    `retrieve`, or re-send with the same `idempotency_key`.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response | None,
        body: Any,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.response = response
        self.status_code: int | None = status_code if response is None else response.status_code
        self.body = body


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for_status(status_code: int) -> type[APIError]:
    """The error class for a non-2xx status code."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIError)
