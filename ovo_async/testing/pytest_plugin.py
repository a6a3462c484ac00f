"""pytest fixtures for code that uses ovo-async (registered through the `pytest11` entry point).

- `ovo_fake`: a fresh `FakeOVO`;
- `ovo_async_client`: an `AsyncOVOClient` wired to it in process (works under any async
  test plugin: making it needs no event loop, and it holds no sockets);
- `ovo_client`: an `OVOClient` wired to it, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._client import AsyncOVOClient
from .._sync import OVOClient
from ._fake import FakeOVO

#: The key the fixtures' clients use.
TEST_API_KEY = "sk_test_ovo_fake"


@pytest.fixture
def ovo_fake() -> FakeOVO:
    """A fresh in-memory OVO API."""
    return FakeOVO()


@pytest.fixture
def ovo_async_client(ovo_fake: FakeOVO) -> AsyncOVOClient:
    """An `AsyncOVOClient` that talks to `ovo_fake` in process."""
    return AsyncOVOClient(api_key=TEST_API_KEY, transport=ovo_fake.transport())


@pytest.fixture
def ovo_client(ovo_fake: FakeOVO) -> Iterator[OVOClient]:
    """An `OVOClient` that talks to `ovo_fake` in process."""
    client = OVOClient(api_key=TEST_API_KEY, transport=ovo_fake.transport())
    yield client
    client.close()
