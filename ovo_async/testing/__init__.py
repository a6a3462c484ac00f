"""Test helpers for code that uses ovo-async.

`FakeOVO` is an in-memory OVO SMS API: use it in process (`fake.transport()`), on
loopback (`with fake.serve() as base_url:`), or from a shell
(`python -m ovo_async.testing --port 8787`). The pytest plugin gives the fixtures
`ovo_fake`, `ovo_async_client` and `ovo_client`, whose retries do not wait;
`instant_retries()` does the same for clients you make yourself.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._retry import instant_retries
    from ._fake import CallbackRecord, FakeOVO, RecordedRequest

if not TYPE_CHECKING:
    # Loaded on first use: pytest loads the plugin (and so this package) before coverage
    # starts, and what it imports then would count as never run.
    def __getattr__(name: str) -> Any:
        if name in ("CallbackRecord", "FakeOVO", "RecordedRequest"):
            from . import _fake

            return getattr(_fake, name)
        if name == "instant_retries":
            from .._retry import instant_retries

            return instant_retries
        raise AttributeError(f"module 'ovo_async.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["CallbackRecord", "FakeOVO", "RecordedRequest", "instant_retries"]
