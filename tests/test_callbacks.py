"""Status callbacks: parsed into Messages, delivered without blocking, in order, final."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ovo_async import (
    AsyncOVOClient,
    Message,
    MessageStatus,
    OVOClient,
    ValidationError,
    parse_status_callback,
)
from ovo_async.testing import FakeOVO

from .conftest import message_json

TO = "+14155550123"


@pytest.mark.parametrize("form", ["bytes", "str", "mapping"])
def test_a_callback_is_the_message_object(form: str) -> None:
    payload = message_json(status="sent", shiny_new_field=[1, 2])
    body: Any = {"bytes": json.dumps(payload).encode(), "str": json.dumps(payload)}.get(
        form, payload
    )
    message = parse_status_callback(body)
    assert isinstance(message, Message)
    assert message.status is MessageStatus.SENT and not message.is_final
    assert message.message_id == payload["message_id"]


def test_unknown_statuses_are_kept_and_final() -> None:
    message = parse_status_callback(message_json(status="carrier_hold"))
    assert message.status == "carrier_hold" and message.is_final


def test_final_statuses() -> None:
    final = {s for s in MessageStatus if s.is_final}
    assert final == {
        MessageStatus.DELIVERED,
        MessageStatus.FAILED,
        MessageStatus.UNDELIVERED,
        MessageStatus.REJECTED,
    }


MALFORMED: dict[str, Any] = {
    "not_json": b"status=delivered&id=1",
    "empty": b"",
    "json_array": b"[1, 2]",
    "json_null": b"null",
    "missing_field": json.dumps({k: v for k, v in message_json().items() if k != "to"}),
    "wrong_type": json.dumps(message_json(segments="one")),
    "null_status": json.dumps(message_json(status=None)),
    "bad_timestamp": json.dumps(message_json(created_at="yesterday")),
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "not_utf8": b'{"status": "\xff\xfe"}',
    "huge": b" " * (2 * 1024 * 1024),
    "wrong_input_type": 42,
    "lone_surrogate_text": '{"message_id": "\ud800"}',
    # A callback URL is public: fields no message OVO sent carries were taken as given.
    "id_with_line_break": json.dumps(message_json(message_id="sm_1\r\nforged: yes")),
    "empty_id": json.dumps(message_json(message_id="")),
    "to_with_nul": json.dumps(message_json(to="+14155550123\u0000")),
    "status_with_line_break": json.dumps(message_json(status="sent\nforged")),
    "message_with_lone_surrogate": json.dumps(message_json(message="half \ud83d")),
    "negative_segments": json.dumps(message_json(segments=-1)),
    "huge_segments": json.dumps(message_json(segments=10**30)),
    "empty_to": json.dumps(message_json(to="")),
    "blank_from": json.dumps(message_json(**{"from": "   "})),
    "empty_status": json.dumps(message_json(status="")),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_bodies_are_validation_errors(kind: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_status_callback(MALFORMED[kind])
    assert info.value.field == "body"


def test_advance_never_waits_for_a_callback_url() -> None:
    """A URL that accepts and never answers once held advance() for 5 s per callback."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the backlog; nobody ever answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    fake = FakeOVO(callback_timeout=0.3)
    try:
        with OVOClient(api_key="k", transport=fake.transport()) as client:
            for _ in range(3):
                client.sms.send(to=TO, from_="OVO", message="Hi", callback_url=url)
        started = time.monotonic()
        fake.advance(5.0)
        assert time.monotonic() - started < 0.05
        records = fake.wait_for_callbacks(timeout=10)
        assert len(records) == 6 and all(r.error for r in records)
    finally:
        silent.close()


async def read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    body = b""
    while True:
        event = await receive()
        body += bytes(event.get("body", b""))
        if not event.get("more_body"):
            return body


async def test_callbacks_in_process_to_an_asgi_app() -> None:
    seen: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        seen.append(parse_status_callback(body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    fake = FakeOVO(callback_app=app)
    async with AsyncOVOClient(api_key="k", transport=fake.transport()) as client:
        sent = await client.sms.send(
            to=TO, from_="OVO", message="Hi", callback_url="https://example.test/hook"
        )
    fake.advance(10)  # inside a running loop: it must not block it
    records = fake.wait_for_callbacks()
    assert [r.status_code for r in records] == [204, 204]
    assert [(m.message_id, m.status) for m in seen] == [
        (sent.message_id, MessageStatus.SENT),
        (sent.message_id, MessageStatus.DELIVERED),
    ]


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """A small ASGI app on loopback with uvicorn, in a thread, stopped on exit."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.005)  # uvicorn offers no started event
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hooks/ovo"
    finally:
        server.should_exit = True
        thread.join(5)


def test_real_callbacks_on_loopback_arrive_in_order_and_end_final() -> None:
    received: list[Message] = []
    done = threading.Event()
    wanted = 3 * 2  # three messages, each sent then delivered or failed

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        body = await read_body(receive)
        try:
            received.append(parse_status_callback(body))
            status = 204
        except ValidationError:
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        if len(received) >= wanted:
            done.set()

    fake = FakeOVO(sent_after=0.05, delivered_after=0.1)
    fake.mark_unreachable("+14155550199")
    with (
        serve_asgi(endpoint) as hook,
        fake.serve() as url,
        OVOClient(api_key="k", base_url=url) as client,
    ):
        ids = [
            client.sms.send(to=to, from_="OVO", message="Hi", callback_url=hook).message_id
            for to in (TO, "+14155550124", "+14155550199")
        ]
        assert done.wait(10)
    by_id: dict[str, list[Message]] = {}
    for message in received:
        by_id.setdefault(message.message_id, []).append(message)
    assert set(by_id) == set(ids)
    for seen in by_id.values():
        statuses = [m.status for m in seen]
        assert statuses[0] is MessageStatus.SENT and seen[-1].is_final
        assert not any(m.is_final for m in seen[:-1])
    final = {by_id[i][-1].status for i in ids}
    assert final == {MessageStatus.DELIVERED, MessageStatus.FAILED}
