"""Hostile answers on a real loopback server: each has one fate, and the client survives.

Every answer here reached the server's side of the wire, so for a POST the SMS may be on
its way: the error must say `may_have_been_sent=True` and carry the idempotency key, or
a caller following the README would send it twice. A GET changes nothing.
"""

from __future__ import annotations

import gzip
import json
import random
from typing import Any

import httpx
import pytest

from ovo_async import (
    APIConnectionError,
    APIResponseValidationError,
    AsyncOVOClient,
    InternalServerError,
    NotFoundError,
    OVOError,
)
from ovo_async.models import BatchResult, Message, SentMessage

from .conftest import API_KEY, FAST_RETRY, batch_json, message_json, sent_json
from .loopback import Received, Reply, http_response, scripted_server

KEY = "order-4711"


def _json(body: Any, **headers: str) -> Reply:
    return Reply(raw=http_response(200, json.dumps(body).encode(), headers))


def _bytes(payload: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(raw=http_response(status, payload, headers))


#: endpoint -> (good JSON answer, the same with a null field, with a wrongly typed field)
GOOD: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "send": (sent_json(), sent_json(message_id=None), sent_json(created_at=123)),
    "batch": (batch_json(1), batch_json(1, batch_id=None), batch_json(1, messages="many")),
    "retrieve": (message_json(), message_json(status=None), message_json(segments="one")),
}


def hostile(endpoint: str) -> dict[str, Reply]:
    _, null_field, wrong_type = GOOD[endpoint]
    return {
        "bad_json": _bytes(b'{"message_id": "sm_1", '),
        "empty": _bytes(b""),
        "no_content_204": Reply(raw=b"HTTP/1.1 204 No Content\r\n\r\n"),
        "null_field": _json(null_field),
        "wrong_type": _json(wrong_type),
        "bad_gzip": _bytes(b"\x1f\x8b\x08\x00not gzip", headers={"Content-Encoding": "gzip"}),
        "nested_json": _bytes(b"[" * 200_000 + b"]" * 200_000),
        "html_502": _bytes(
            b"<html><body>502 Bad Gateway</body></html>", 502, {"Content-Type": "text/html"}
        ),
    }


async def call(client: AsyncOVOClient, endpoint: str, key: str = KEY) -> Any:
    if endpoint == "send":
        return await client.sms.send(
            to="+14155550123", from_="OVO", message="Hi", idempotency_key=key
        )
    if endpoint == "batch":
        return await client.sms.batch(
            [{"to": "+14155550123", "from": "OVO", "message": "Hi"}], idempotency_key=key
        )
    return await client.sms.retrieve("sm_123")


def answer_id(result: Any) -> str:
    if isinstance(result, BatchResult):
        return result.batch_id
    assert isinstance(result, (SentMessage, Message))
    return result.message_id


CASES = [(endpoint, kind) for endpoint in GOOD for kind in [*hostile(endpoint), "stale_surplus"]]


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize(("endpoint", "kind"), CASES, ids=[f"{e}-{k}" for e, k in CASES])
async def test_hostile_answer_has_one_fate_and_the_client_survives(
    endpoint: str, kind: str, io_backend: Any
) -> None:
    post = endpoint != "retrieve"
    good = GOOD[endpoint][0]
    with scripted_server() as server:
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=server.url, retry=FAST_RETRY, io_backend=io_backend
        ) as c:
            if kind == "stale_surplus":
                # A right answer, then a second one nobody asked for, in one write. Read
                # as the next request's answer, it would hand out another message's id.
                stale = json.loads(
                    json.dumps(good).replace("sm_", "STALE_").replace("batch_1", "STALE_batch")
                )
                raw = http_response(200, json.dumps(good).encode())
                raw += http_response(200, json.dumps(stale).encode())
                server.queue(Reply(raw=raw))
                assert answer_id(await call(c, endpoint)) == answer_id_of(endpoint, good)
                expected_requests = 1
            else:
                reply = hostile(endpoint)[kind]
                retried = kind == "html_502" and not post  # a GET is retried on 5xx
                server.queue(*([reply] * (3 if retried else 1)))
                with pytest.raises(OVOError) as info:
                    await call(c, endpoint)
                error = info.value
                expected = (
                    InternalServerError if kind == "html_502" else (APIResponseValidationError)
                )
                assert type(error) is expected, error
                assert error.may_have_been_sent is post
                assert error.idempotency_key == (KEY if post else None)
                if expected is APIResponseValidationError:
                    assert isinstance(error, APIResponseValidationError)
                    assert error.status_code == (204 if kind == "no_content_204" else 200)
                    assert error.body is not None or kind == "no_content_204"
                expected_requests = 3 if retried else 1
            assert server.count == expected_requests
            # The client still works, and its next answer is its own.
            fresh = json.loads(
                json.dumps(good).replace("sm_", "FRESH_").replace("batch_1", "FRESH_batch")
            )
            server.queue(_json(fresh))
            assert answer_id(await call(c, endpoint, key="next")) == answer_id_of(endpoint, fresh)
            assert server.count == expected_requests + 1


def answer_id_of(endpoint: str, body: dict[str, Any]) -> str:
    return str(body["batch_id"] if endpoint == "batch" else body["message_id"])


async def test_each_call_gets_its_own_answer_after_surplus_bytes() -> None:
    """The same defect one step later: a sequence of calls each gets its own answer."""
    with scripted_server() as server:
        async with AsyncOVOClient(api_key=API_KEY, base_url=server.url, retry=FAST_RETRY) as c:
            for i in range(5):
                raw = http_response(200, json.dumps(sent_json(message_id=f"sm_{i}")).encode())
                raw += http_response(200, json.dumps(sent_json(message_id="sm_STALE")).encode())
                server.queue(Reply(raw=raw))
                sent = await c.sms.send(to="+14155550123", from_="OVO", message="Hi")
                assert sent.message_id == f"sm_{i}"
            assert server.count == 5


# --- send_many under the same answers, mixed at random ---------------------------------


def _batch_answer(received: Received, rng: random.Random) -> tuple[str, Reply]:
    """A random answer to a batch request; the good ones fit its messages."""
    items = json.loads(received.body)["messages"]
    entries: list[dict[str, Any]] = [
        {"message_id": f"sm_{rng.random()}", "status": "queued", "to": m["to"], "from": m["from"]}
        for m in items
    ]
    kind = rng.choice(["good", "good", "odd_entry", "short", *hostile("batch")])
    if kind in hostile("batch"):
        return kind, hostile("batch")[kind]
    if kind == "odd_entry":
        # One entry with an int code, one with extra fields and an unknown status.
        entries[0] = {
            "status": "failed",
            "to": items[0]["to"],
            "from": "OVO",
            "error": {"code": 17, "message": "bad"},
        }
        entries[-1] = {**entries[-1], "status": "warp_speed", "shiny": True}
    if kind == "short":
        entries = entries[:-1]
    body = {
        "batch_id": "b",
        "total_messages": len(items),
        "successful": len(entries),
        "failed": 0,
        "messages": entries,
        "created_at": "2025-05-17T12:34:56Z",
    }
    return kind, _json(body)


@pytest.mark.parametrize("batch_size", [None, 5])
async def test_send_many_under_hostile_answers_gives_one_outcome_each(
    batch_size: int | None,
) -> None:
    rng = random.Random(9)
    answered: dict[str, str] = {}

    def respond(received: Received) -> Reply:
        key = received.headers["idempotency-key"]
        if received.path.endswith("/sms/batch"):
            kind, reply = _batch_answer(received, rng)
        else:
            kind = rng.choice(["good", "good", *hostile("send")])
            reply = _json(sent_json()) if kind == "good" else hostile("send")[kind]
        answered[key] = kind
        return reply

    n = 200
    messages = [{"to": f"+1415555{i:04d}", "from": "OVO", "message": "Hi"} for i in range(n)]
    with scripted_server() as server:
        server.responder = respond
        async with AsyncOVOClient(api_key=API_KEY, base_url=server.url, retry=FAST_RETRY) as c:
            outcomes = [
                o async for o in c.sms.send_many(messages, batch_size=batch_size, concurrency=8)
            ]
    assert sorted(o.index for o in outcomes) == list(range(n))
    two_xx = {
        "good",
        "odd_entry",
        "short",
        "bad_json",
        "empty",
        "no_content_204",
        "null_field",
        "wrong_type",
        "bad_gzip",
        "nested_json",
    }
    seen_kinds = set()
    for outcome in outcomes:
        if outcome.ok:
            continue
        error = outcome.error
        assert error is not None and error.idempotency_key in answered, error
        kind = answered[error.idempotency_key]
        seen_kinds.add(kind)
        if kind in two_xx:
            assert error.may_have_been_sent is True, (kind, error)
    assert seen_kinds >= {"bad_json", "html_502"}
    if batch_size:
        assert {"odd_entry", "short"} <= seen_kinds
        # An odd entry costs only itself: the other members of that batch were accepted.
        odd_keys = {k for k, v in answered.items() if v == "odd_entry"}
        odd_failures = [
            o
            for o in outcomes
            if not o.ok and o.error is not None and o.error.idempotency_key in odd_keys
        ]
        assert len(odd_failures) == len(odd_keys)


async def test_gzip_answer_is_decoded() -> None:
    with scripted_server() as server:
        payload = gzip.compress(json.dumps(sent_json(message_id="sm_gz")).encode())
        server.queue(_bytes(payload, headers={"Content-Encoding": "gzip"}))
        async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as c:
            sent = await c.sms.send(to="+14155550123", from_="OVO", message="Hi")
        assert sent.message_id == "sm_gz"
        assert server.received[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_the_sdks_own_pool_goes_around_the_httpx_client(
    monkeypatch: pytest.MonkeyPatch, io_backend: Any
) -> None:
    """The SDK's own pools (sharded httpx, aiohttp) skip httpx's client layer (a fifth to
    a third of a call's cost) and keep what errors carry: status, headers, reason, the
    request's URL (never its key)."""

    async def no_httpx(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("went through httpx.AsyncClient.send")

    monkeypatch.setattr(httpx.AsyncClient, "send", no_httpx)
    with scripted_server() as server:
        server.queue(
            Reply(201, sent_json(), headers={"X-Request-Id": "req_ok"}),
            Reply(404, {"error": {"message": "no such message"}}, headers={"X-Request-Id": "r4"}),
        )
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=server.url, retry=FAST_RETRY, io_backend=io_backend
        ) as c:
            sent = await c.sms.send(to="+14155550123", from_="OVO", message="Hi")
            with pytest.raises(NotFoundError) as info:
                await c.sms.retrieve("sm_nope")
    assert sent.request_id == "req_ok"
    # Headers read in any case, as httpx's do; they show (and iterate) in lower case.
    assert sent.headers is not None
    assert sent.headers["X-Request-Id"] == sent.headers.get("x-REQUEST-id") == "req_ok"
    assert "X-Request-Id" in sent.headers and "x-request-id" in dict(sent.headers)
    odd_key: Any = 5
    assert sent.headers.get("X-Missing") is None and odd_key not in sent.headers
    error = info.value
    assert error.request_id == "r4" and error.status_code == 404
    assert error.response is not None and error.response.reason_phrase == "X"  # as sent
    assert str(error.response.request.url).endswith("/sms/sm_nope")
    assert "authorization" not in error.response.request.headers
    assert server.received[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_without_httpcore_pools_in_reach_the_httpx_client_still_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The direct path needs httpx's `_pool` attribute; a future httpx without it must
    fall back to the client, not fail."""
    from ovo_async._pool import ShardedTransport

    through_client = 0
    real_send = httpx.AsyncClient.send

    async def counting_send(self: httpx.AsyncClient, *args: Any, **kwargs: Any) -> Any:
        nonlocal through_client
        through_client += 1
        return await real_send(self, *args, **kwargs)

    real_init = ShardedTransport.__init__

    def init_without_core(self: ShardedTransport, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self._core = False

    monkeypatch.setattr(httpx.AsyncClient, "send", counting_send)
    monkeypatch.setattr(ShardedTransport, "__init__", init_without_core)
    with scripted_server() as server:
        server.queue(Reply(201, sent_json()))
        async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as c:
            sent = await c.sms.send(to="+14155550123", from_="OVO", message="Hi")
    assert sent.message_id and through_client == 1
    assert server.received[0].headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize("endpoint", ["send", "retrieve"])
async def test_a_body_cut_short_is_a_connection_error_with_its_fate(
    endpoint: str, io_backend: Any
) -> None:
    """The server promises 100 bytes, sends 10 and hangs up: no answer was read, but the
    request was (a POST may have been sent); the client then works on a new connection."""
    post = endpoint == "send"
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b'{"message_'
    with scripted_server() as server:
        server.queue(
            Reply(raw=cut, hang_up=True), *([] if post else [Reply(raw=cut, hang_up=True)] * 2)
        )
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=server.url, retry=FAST_RETRY, io_backend=io_backend
        ) as c:
            with pytest.raises(APIConnectionError) as info:
                await call(c, endpoint)
            assert info.value.may_have_been_sent is post
            text = str(info.value)
            assert text.startswith(("connection failed (ReadError)", "connection failed (Remote"))
            good = GOOD[endpoint][0]
            server.queue(_json(good))
            assert answer_id(await call(c, endpoint, key="next")) == answer_id_of(endpoint, good)
