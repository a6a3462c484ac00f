"""Test helpers for code that uses ovo-async.

`FakeOVO` is an in-memory OVO SMS API: use it in process (`fake.transport()`), on
loopback (`with fake.serve() as base_url:`), or from a shell
(`python -m ovo_async.testing --port 8787`). The pytest plugin gives the fixtures
`ovo_fake`, `ovo_async_client` and `ovo_client`.
"""

from ._fake import CallbackRecord, FakeOVO, RecordedRequest

__all__ = ["CallbackRecord", "FakeOVO", "RecordedRequest"]
