"""ovo-async: the async-first Python SDK for the OVO Communications SMS API.

`AsyncOVOClient` for async code (asyncio or trio), `OVOClient` for blocking code; both
have `client.sms.send`, `batch`, `retrieve` and `send_many`.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._callbacks import parse_status_callback
from ._client import AsyncOVOClient
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
from ._estimate import CampaignEstimate, estimate
from ._phone import normalize_number
from ._retry import RetryPolicy
from ._segments import SegmentInfo, count_segments
from ._validation import MAX_BATCH_SIZE
from ._version import __version__
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

if TYPE_CHECKING:
    from ._bulk import AsyncBulkRun, BulkProgress
    from ._runtime import BulkRun
    from ._sync import OVOClient

# Loaded on first use: the sync facade and bulk sending pull in anyio and asyncio, which
# `import ovo_async` should not pay for.
_LAZY = {
    "OVOClient": "._sync",
    "AsyncBulkRun": "._bulk",
    "BulkProgress": "._bulk",
    "BulkRun": "._runtime",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ovo_async' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
