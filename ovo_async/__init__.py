"""ovo-async: the async-first Python SDK for the OVO Communications SMS API.

`AsyncOVOClient` for async code (asyncio or trio), `OVOClient` for blocking code; both
have `client.sms.send`, `batch`, `retrieve` and `send_many`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    MessageRejectedError,
    NotFoundError,
    OVOError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    UnprocessableEntityError,
    ValidationError,
)
from ._version import __version__

if TYPE_CHECKING:
    from ._bulk import AsyncBulkRun, BulkProgress
    from ._callbacks import parse_status_callback
    from ._client import AsyncOVOClient
    from ._estimate import CampaignEstimate, estimate
    from ._phone import normalize_number
    from ._retry import RetryPolicy
    from ._runtime import BulkRun
    from ._segments import SegmentInfo, count_segments
    from ._sync import OVOClient
    from ._validation import MAX_BATCH_SIZE
    from .models import (
        BatchMessage,
        BatchResult,
        BulkOutcome,
        ErrorDetail,
        Message,
        MessageStatus,
        SentMessage,
        SMSRequest,
    )

# Everything but the errors loads on first use: `import ovo_async` should cost next to
# nothing, and each name pulls in only what it needs (attrs for the models, httpx for the
# clients, asyncio for the sync facade).
_LAZY = {
    "AsyncBulkRun": "._bulk",
    "BulkProgress": "._bulk",
    "parse_status_callback": "._callbacks",
    "AsyncOVOClient": "._client",
    "CampaignEstimate": "._estimate",
    "estimate": "._estimate",
    "normalize_number": "._phone",
    "RetryPolicy": "._retry",
    "BulkRun": "._runtime",
    "SegmentInfo": "._segments",
    "count_segments": "._segments",
    "OVOClient": "._sync",
    "MAX_BATCH_SIZE": "._validation",
    "BatchMessage": ".models",
    "BatchResult": ".models",
    "BulkOutcome": ".models",
    "ErrorDetail": ".models",
    "Message": ".models",
    "MessageStatus": ".models",
    "SentMessage": ".models",
    "SMSRequest": ".models",
}

if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above: a misspelt name is then an
    # error for them instead of an `Any`.
    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'ovo_async' has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    # So that dir() and help(ovo_async) list the lazy names too.
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "MAX_BATCH_SIZE",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APITimeoutError",
    "AsyncBulkRun",
    "AsyncOVOClient",
    "AuthenticationError",
    "BadRequestError",
    "BatchMessage",
    "BatchResult",
    "BulkOutcome",
    "BulkProgress",
    "BulkRun",
    "CampaignEstimate",
    "ConflictError",
    "ErrorDetail",
    "InternalServerError",
    "Message",
    "MessageRejectedError",
    "MessageStatus",
    "NotFoundError",
    "OVOClient",
    "OVOError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "RetryPolicy",
    "SMSRequest",
    "SegmentInfo",
    "SentMessage",
    "UnprocessableEntityError",
    "ValidationError",
    "__version__",
    "count_segments",
    "estimate",
    "normalize_number",
    "parse_status_callback",
]
