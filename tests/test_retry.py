"""The retry classification table of DESIGN section 3, row by row, with respx."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest
import respx

from ovo_async import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncOVOClient,
    ConflictError,
    InternalServerError,
    OVOError,
    RateLimitError,
    RetryPolicy,
    ValidationError,
)

from .conftest import API_KEY, message_json, sent_json

TO = "+14155550123"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Records every retry wait and skips it, so Retry-After values can be asserted exactly."""
    waits: list[float] = []
    real_sleep = anyio.sleep

    async def fake_sleep(delay: float) -> None:
        waits.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    yield waits


def client(**policy: Any) -> AsyncOVOClient:
    return AsyncOVOClient(api_key=API_KEY, retry=RetryPolicy(jitter=False, **policy))


CONNECT_FAILURES = [
    httpx.ConnectError("refused"),
    httpx.ConnectTimeout("slow"),
    httpx.PoolTimeout("full"),
]
LOST_ANSWERS = [
    httpx.ReadError("reset"),
    httpx.ReadTimeout("slow"),
    httpx.RemoteProtocolError("disconnected"),
    httpx.WriteError("broken pipe"),
]


def _fail(route: respx.Route, first: Any, then: httpx.Response) -> None:
    route.side_effect = [first, first, then]


# ---- GET --------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", CONNECT_FAILURES + LOST_ANSWERS, ids=lambda e: type(e).__name__)
async def test_get_retries_every_transport_failure(
    api: respx.MockRouter, sleeps: list[float], exc: Exception
) -> None:
    route = api.get("/sms/sm_1")
    _fail(route, exc, httpx.Response(200, json=message_json()))
    async with client() as c:
        await c.sms.retrieve("sm_1")
    assert route.call_count == 3
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_get_retries_these_statuses(
    api: respx.MockRouter, sleeps: list[float], status: int
) -> None:
    route = api.get("/sms/sm_1")
    _fail(route, httpx.Response(status), httpx.Response(200, json=message_json()))
    async with client() as c:
        await c.sms.retrieve("sm_1")
    assert route.call_count == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_get_does_not_retry_client_errors(api: respx.MockRouter, status: int) -> None:
    route = api.get("/sms/sm_1").respond(status)
    async with client() as c:
        with pytest.raises(APIError):
            await c.sms.retrieve("sm_1")
    assert route.call_count == 1


async def test_get_gives_up_after_max_retries(api: respx.MockRouter, sleeps: list[float]) -> None:
    route = api.get("/sms/sm_1").respond(500)
    async with client(max_retries=4) as c:
        with pytest.raises(InternalServerError):
            await c.sms.retrieve("sm_1")
    assert route.call_count == 5
    assert sleeps == [0.5, 1.0, 2.0, 4.0]


async def test_backoff_is_capped_and_jittered(api: respx.MockRouter, sleeps: list[float]) -> None:
    api.get("/sms/sm_1").respond(500)
    policy = RetryPolicy(max_retries=6, jitter=True)
    async with AsyncOVOClient(api_key=API_KEY, retry=policy) as c:
        with pytest.raises(InternalServerError):
            await c.sms.retrieve("sm_1")
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert all(0.75 * top <= wait <= top for wait, top in zip(sleeps, ceilings, strict=True))


# ---- POST, safe by default -----------------------------------------------------------------


@pytest.mark.parametrize("exc", CONNECT_FAILURES, ids=lambda e: type(e).__name__)
async def test_post_retries_when_never_connected(
    api: respx.MockRouter, sleeps: list[float], exc: Exception
) -> None:
    route = api.post("/sms/send")
    _fail(route, exc, httpx.Response(201, json=sent_json()))
    async with client() as c:
        await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert route.call_count == 3


@pytest.mark.parametrize("exc", CONNECT_FAILURES, ids=lambda e: type(e).__name__)
async def test_post_connect_failure_exhausted_was_not_sent(
    api: respx.MockRouter, sleeps: list[float], exc: Exception
) -> None:
    route = api.post("/sms/send").mock(side_effect=exc)
    async with client() as c:
        with pytest.raises(APIConnectionError) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="k-1")
    assert route.call_count == 3
    assert info.value.may_have_been_sent is False
    assert info.value.idempotency_key == "k-1"
    assert isinstance(info.value, APITimeoutError) == isinstance(exc, httpx.TimeoutException)


@pytest.mark.parametrize("exc", LOST_ANSWERS, ids=lambda e: type(e).__name__)
async def test_post_with_lost_answer_is_not_retried_and_may_have_been_sent(
    api: respx.MockRouter, exc: Exception
) -> None:
    route = api.post("/sms/send").mock(side_effect=exc)
    async with client() as c:
        with pytest.raises(APIConnectionError) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert route.call_count == 1
    assert info.value.may_have_been_sent is True
    key = route.calls.last.request.headers["idempotency-key"]
    assert info.value.idempotency_key == key
    assert isinstance(info.value, APITimeoutError) == isinstance(exc, httpx.TimeoutException)


@pytest.mark.parametrize(
    ("status", "headers"),
    [(408, {}), (429, {}), (429, {"Retry-After": "0"}), (503, {"Retry-After": "1"})],
)
async def test_post_retries_where_the_server_did_not_act(
    api: respx.MockRouter, sleeps: list[float], status: int, headers: dict[str, str]
) -> None:
    route = api.post("/sms/send")
    _fail(route, httpx.Response(status, headers=headers), httpx.Response(201, json=sent_json()))
    async with client() as c:
        await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert route.call_count == 3


@pytest.mark.parametrize(("status", "headers"), [(408, {}), (429, {}), (503, {"Retry-After": "1"})])
async def test_post_exhausted_on_not_acted_statuses_was_not_sent(
    api: respx.MockRouter, sleeps: list[float], status: int, headers: dict[str, str]
) -> None:
    api.post("/sms/send").respond(status, headers=headers)
    async with client() as c:
        with pytest.raises(APIError) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is False


@pytest.mark.parametrize(
    ("status", "cls", "sent"),
    [
        (500, InternalServerError, True),
        (502, InternalServerError, True),
        (503, InternalServerError, True),
        (409, ConflictError, True),
        (400, APIError, False),
        (422, APIError, False),
    ],
)
async def test_post_not_retried_on_these(
    api: respx.MockRouter, status: int, cls: type[APIError], sent: bool
) -> None:
    route = api.post("/sms/send").respond(status)
    async with client() as c:
        with pytest.raises(cls) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi", idempotency_key="k-2")
    assert route.call_count == 1
    assert info.value.may_have_been_sent is sent
    assert info.value.idempotency_key == "k-2"


async def test_validation_error_was_not_sent(api: respx.MockRouter) -> None:
    async with client() as c:
        with pytest.raises(ValidationError) as info:
            await c.sms.send(to="bad", from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is False


async def test_idempotency_key_identical_on_every_attempt(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/sms/batch")
    route.side_effect = [
        httpx.ConnectError("refused"),
        httpx.Response(429),
        httpx.Response(
            201,
            json={
                "batch_id": "b",
                "total_messages": 0,
                "successful": 0,
                "failed": 0,
                "messages": [],
                "created_at": "2025-05-17T12:34:56Z",
            },
        ),
    ]
    async with client() as c:
        await c.sms.batch([{"to": TO, "from": "OVO", "message": "Hi"}])
    keys = [call.request.headers["idempotency-key"] for call in route.calls]
    assert len(keys) == 3 and len(set(keys)) == 1


async def test_get_sends_no_idempotency_key(api: respx.MockRouter) -> None:
    route = api.get("/sms/sm_1").respond(200, json=message_json())
    async with client() as c:
        await c.sms.retrieve("sm_1")
    assert "idempotency-key" not in route.calls.last.request.headers


# ---- POST with retry_non_idempotent --------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadError("reset"),
        httpx.ReadTimeout("slow"),
        httpx.Response(409),
        httpx.Response(500),
        httpx.Response(503),
    ],
    ids=["ReadError", "ReadTimeout", "409", "500", "503"],
)
async def test_retry_non_idempotent_adds_unknown_fate_failures(
    api: respx.MockRouter, sleeps: list[float], failure: Any
) -> None:
    route = api.post("/sms/send")
    _fail(route, failure, httpx.Response(201, json=sent_json()))
    async with client(retry_non_idempotent=True) as c:
        await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert route.call_count == 3
    keys = {call.request.headers["idempotency-key"] for call in route.calls}
    assert len(keys) == 1


async def test_unknown_fate_is_sticky_across_attempts(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    """A read error then a 429: the first attempt may still have been delivered."""
    route = api.post("/sms/send")
    route.side_effect = [httpx.ReadError("reset"), httpx.Response(429), httpx.Response(429)]
    async with client(retry_non_idempotent=True) as c:
        with pytest.raises(RateLimitError) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is True


# ---- Retry-After -----------------------------------------------------------------------------


async def test_retry_after_seconds_wins_over_backoff(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/sms/send")
    _fail(
        route,
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(201, json=sent_json()),
    )
    async with client() as c:
        await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert sleeps == [7.0, 7.0]


async def test_retry_after_http_date(api: respx.MockRouter, sleeps: list[float]) -> None:
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=20), usegmt=True)
    route = api.get("/sms/sm_1")
    route.side_effect = [
        httpx.Response(503, headers={"Retry-After": when}),
        httpx.Response(200, json=message_json()),
    ]
    async with client() as c:
        await c.sms.retrieve("sm_1")
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 20


async def test_retry_after_over_cap_raises_at_once(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.post("/sms/send").respond(429, headers={"Retry-After": "120"})
    async with client(max_retry_after=60) as c:
        with pytest.raises(RateLimitError) as info:
            await c.sms.send(to=TO, from_="OVO", message="Hi")
    assert route.call_count == 1 and sleeps == []
    assert info.value.retry_after == 120.0
    assert info.value.may_have_been_sent is False


async def test_garbage_retry_after_falls_back_to_backoff(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    route = api.get("/sms/sm_1")
    route.side_effect = [
        httpx.Response(429, headers={"Retry-After": "soon"}),
        httpx.Response(200, json=message_json()),
    ]
    async with client() as c:
        await c.sms.retrieve("sm_1")
    assert sleeps == [0.5]


# ---- logging and cancellation ----------------------------------------------------------------


async def test_each_retry_logs_a_warning_without_headers(
    api: respx.MockRouter, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ovo_async")
    route = api.get("/sms/sm_1")
    _fail(route, httpx.Response(503), httpx.Response(200, json=message_json()))
    async with client() as c:
        await c.sms.retrieve("sm_1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "attempt 2 of 3" in warnings[0] and "in 0.50 s" in warnings[0]
    assert "InternalServerError" in warnings[0] and "GET /sms/sm_1" in warnings[0]
    assert all(API_KEY not in w and "Bearer" not in w for w in warnings)


async def test_cancellation_is_not_retried_and_client_stays_usable(
    api: respx.MockRouter,
) -> None:
    started = anyio.Event()
    calls = 0

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        started.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    route = api.get("/sms/sm_1")
    route.side_effect = hang
    async with client(max_retries=5) as c:
        async with anyio.create_task_group() as tg:
            tg.start_soon(c.sms.retrieve, "sm_1")
            await started.wait()
            tg.cancel_scope.cancel()
        assert calls == 1
        route.side_effect = None
        route.return_value = httpx.Response(200, json=message_json())
        assert (await c.sms.retrieve("sm_1")).message_id == "sm_123"


def test_predicate_ignores_base_exceptions() -> None:
    from ovo_async._retry import should_retry

    policy = RetryPolicy(retry_non_idempotent=True)
    for exc in (KeyboardInterrupt(), asyncio.CancelledError(), SystemExit()):
        assert not should_retry(exc, idempotent=True, policy=policy)
    assert not should_retry(RuntimeError("bug"), idempotent=True, policy=policy)
    assert should_retry(
        APIConnectionError("x", may_have_been_sent=True), idempotent=True, policy=policy
    )
    assert not should_retry(OVOError("closed"), idempotent=True, policy=policy)
