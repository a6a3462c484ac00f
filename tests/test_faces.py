"""The same behaviour through both faces: `AsyncOVOClient` and the generated `OVOClient`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
import respx

from ovo_async import (
    APIError,
    AsyncOVOClient,
    BatchResult,
    InternalServerError,
    Message,
    OVOClient,
    OVOError,
    SentMessage,
    ValidationError,
)

from .conftest import API_KEY, FAST_RETRY, STATUS_CLASSES, batch_json, message_json, sent_json

TO = "+14155550123"


class Face:
    """Calls the SDK through one face; the sync face runs in a worker thread."""

    def __init__(self, name: str, client: AsyncOVOClient | OVOClient) -> None:
        self.name = name
        self.client = client

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.client.sms, method)
        if isinstance(self.client, OVOClient):
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        return await fn(*args, **kwargs)


@pytest.fixture(params=["async", "sync"])
async def face(request: pytest.FixtureRequest) -> AsyncIterator[Face]:
    if request.param == "async":
        async with AsyncOVOClient(api_key=API_KEY, retry=FAST_RETRY) as aclient:
            yield Face("async", aclient)
    else:
        client = OVOClient(api_key=API_KEY, retry=FAST_RETRY)
        try:
            yield Face("sync", client)
        finally:
            await anyio.to_thread.run_sync(client.close)


async def test_send(api: respx.MockRouter, face: Face) -> None:
    route = api.post("/sms/send").respond(201, json=sent_json())
    sent = await face.call("send", to=TO, from_="OVO", message="Hi", idempotency_key="k1")
    assert isinstance(sent, SentMessage) and sent.message_id == "sm_123"
    assert route.calls.last.request.headers["idempotency-key"] == "k1"


async def test_batch(api: respx.MockRouter, face: Face) -> None:
    api.post("/sms/batch").respond(201, json=batch_json(2))
    result = await face.call("batch", [{"to": TO, "from": "OVO", "message": "a"}] * 2)
    assert isinstance(result, BatchResult) and result.total_messages == 2


async def test_retrieve(api: respx.MockRouter, face: Face) -> None:
    api.get("/sms/sm_123").respond(200, json=message_json())
    msg = await face.call("retrieve", "sm_123")
    assert isinstance(msg, Message) and msg.status == "delivered"


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
async def test_each_error_class(
    api: respx.MockRouter, face: Face, status: int, cls: type[APIError]
) -> None:
    api.post("/sms/send").respond(status, json={"error": {"code": "c", "message": "m"}})
    with pytest.raises(cls) as info:
        await face.call("send", to=TO, from_="OVO", message="Hi")
    assert type(info.value) is cls and info.value.code == "c"


async def test_validation_before_any_request(api: respx.MockRouter, face: Face) -> None:
    with pytest.raises(ValidationError) as info:
        await face.call(
            "batch",
            [{"to": TO, "from": "OVO", "message": "a"}, {"to": "x", "from": "OVO", "message": "m"}],
        )
    assert info.value.field == "messages[1].to"
    assert not api.calls


async def test_retries(api: respx.MockRouter, face: Face) -> None:
    route = api.get("/sms/sm_123")
    route.side_effect = [
        httpx.Response(503),
        httpx.Response(503),
        httpx.Response(200, json=message_json()),
    ]
    await face.call("retrieve", "sm_123")
    assert route.call_count == 3
    post = api.post("/sms/send").respond(500)
    with pytest.raises(InternalServerError) as info:
        await face.call("send", to=TO, from_="OVO", message="Hi")
    assert post.call_count == 1 and info.value.may_have_been_sent is True


async def test_closed_client(api: respx.MockRouter, face: Face) -> None:
    if isinstance(face.client, OVOClient):
        await anyio.to_thread.run_sync(face.client.close)
        await anyio.to_thread.run_sync(face.client.close)
    else:
        await face.client.aclose()
    with pytest.raises(OVOError, match="closed"):
        await face.call("retrieve", "sm_123")


def test_sync_face_has_the_async_methods_and_docstrings() -> None:
    from ovo_async._sync.sms import SMS
    from ovo_async.resources.sms import AsyncSMS

    public = {n for n in vars(AsyncSMS) if not n.startswith("_")}
    assert public <= set(vars(SMS))
    for name in public:
        # The same text, but for the words that differ between the faces (`async with`).
        sync_doc, async_doc = getattr(SMS, name).__doc__, getattr(AsyncSMS, name).__doc__
        assert sync_doc.split("\n")[0] == async_doc.split("\n")[0]
        assert len(sync_doc.split()) >= len(async_doc.split()) - 3
