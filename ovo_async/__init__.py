"""ovo-async: the async-first Python SDK for the OVO Communications SMS API.

`AsyncOVOClient` for async code (asyncio or trio), `OVOClient` for blocking code; both
have `client.sms.send`, `batch`, `retrieve` and `send_many`.
"""

from ._bulk import AsyncBulkRun, BulkProgress, BulkRun, MessageRejectedError
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
    NotFoundError,
    OVOError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
    ValidationError,
)
from ._retry import RetryPolicy
from ._sync import OVOClient
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
    "RetryPolicy",
    "SMSRequest",
    "SentMessage",
    "UnprocessableEntityError",
    "ValidationError",
    "__version__",
]
