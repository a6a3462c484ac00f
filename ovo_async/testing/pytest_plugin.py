"""pytest fixtures for code that uses ovo-async (registered through the `pytest11` entry point).

- `ovo_fake`: a fresh `FakeOVO`;
- `ovo_async_client`: an `AsyncOVOClient` wired to it in process (works under any async
  test plugin: making it needs no event loop, and it holds no sockets);
- `ovo_client`: an `OVOClient` wired to it, closed after the test.

Retries of the fixtures' clients happen as configured but do not wait, so a test of code
that handles a 429 with Retry-After: 2 takes no 2 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .._client import AsyncOVOClient
    from .._sync import OVOClient
    from ._fake import FakeOVO

# The SDK is imported inside the fixtures, not here: pytest loads this plugin before
# coverage starts, and modules imported now would count as never run.

#: The key the fixtures' clients use.
TEST_API_KEY = "sk_test_ovo_fake"


@pytest.fixture
def ovo_fake() -> FakeOVO:
    """A fresh in-memory OVO API."""
    from ._fake import FakeOVO

    return FakeOVO()


@pytest.fixture
def ovo_async_client(ovo_fake: FakeOVO) -> Iterator[AsyncOVOClient]:
    """An `AsyncOVOClient` that talks to `ovo_fake` in process."""
    from .._client import AsyncOVOClient
    from .._retry import instant_retries

    with instant_retries():
        yield AsyncOVOClient(api_key=TEST_API_KEY, transport=ovo_fake.transport())


@pytest.fixture
def ovo_client(ovo_fake: FakeOVO) -> Iterator[OVOClient]:
    """An `OVOClient` that talks to `ovo_fake` in process."""
    from .._retry import instant_retries
    from .._sync import OVOClient

    client = OVOClient(api_key=TEST_API_KEY, transport=ovo_fake.transport())
    with instant_retries():
        yield client
    client.close()
