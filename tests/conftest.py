from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx

from ovo_async import (
    APIError,
    AsyncOVOClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RetryPolicy,
    UnprocessableEntityError,
)

pytest_plugins = ["pytester"]

API_KEY = "sk_test_SECRETKEY_9f8e7d6c"
BASE_URL = "https://api.ovocommunications.com/v1"
#: Retries without real waiting, so the suite stays fast.
FAST_RETRY = RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.002, jitter=False)

#: Every status of DESIGN section 2 and the class it must raise.
STATUS_CLASSES: list[tuple[int, type[APIError]]] = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (409, ConflictError),
    (422, UnprocessableEntityError),
    (429, RateLimitError),
    (500, InternalServerError),
    (502, InternalServerError),
    (503, InternalServerError),
    (418, APIError),
    (302, APIError),
]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter from the project root, `args` its `sys.argv[1:]` (to
    see what a user's process would, with modules hidden by `sys.modules[name] = None`)."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=30,
        check=False,
    )


def default_sigint() -> None:
    """A child's SIGINT as a terminal gives it (for `preexec_fn`): a suite started from a
    shell job without job control (`pytest &`) runs with SIGINT ignored, and its children
    would inherit that and never see the Ctrl-C a test sends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def untraced_env(**extra: str) -> dict[str, str]:
    """This process's environment without coverage's: for subprocesses whose timing a
    test measures (a fleet's rate, a kill at a random moment), which tracing would skew."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env.update(extra)
    return env


def sent_json(**overrides: Any) -> dict[str, Any]:
    body = {
        "message_id": "sm_123",
        "status": "queued",
        "to": "+14155550123",
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
    }
    body.update(overrides)
    return body


def message_json(**overrides: Any) -> dict[str, Any]:
    body = {
        "message_id": "sm_123",
        "status": "delivered",
        "to": "+14155550123",
        "from": "OVO",
        "message": "Hello",
        "segments": 1,
        "created_at": "2025-05-17T12:34:56Z",
        "updated_at": "2025-05-17T12:35:00+02:00",
        "delivered_at": None,
    }
    body.update(overrides)
    return body


def batch_json(n: int = 2, **overrides: Any) -> dict[str, Any]:
    body = {
        "batch_id": "batch_1",
        "total_messages": n,
        "successful": n,
        "failed": 0,
        "messages": [
            {"message_id": f"sm_{i}", "status": "queued", "to": "+14155550123", "from": "OVO"}
            for i in range(n)
        ],
        "created_at": "2025-05-17T12:34:56Z",
    }
    body.update(overrides)
    return body


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """A respx router for the default base URL; fails on any unmocked request."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def client() -> AsyncIterator[AsyncOVOClient]:
    async with AsyncOVOClient(api_key=API_KEY, retry=FAST_RETRY) as c:
        yield c
