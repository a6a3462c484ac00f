"""The API key never leaves through text, logs, tracebacks with locals, pickles or proxies.

Each failing call runs against a real loopback server, so httpx, httpcore and h11 frames
are on the stack as they would be in production (Sentry, `pytest -l`, rich tracebacks).
"""

from __future__ import annotations

import logging
import pickle
import socket
import traceback
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import ovo_async
from ovo_async import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APITimeoutError,
    AsyncOVOClient,
    MessageRejectedError,
    OVOClient,
    OVOError,
    ResponseTooLargeError,
    RetryPolicy,
    ValidationError,
)

from .conftest import STATUS_CLASSES, sent_json
from .loopback import DROP, Reply, scripted_server

KEY = "sk_live_TOPSECRET_5a4b3c2d1e"
FAST = RetryPolicy(max_retries=1, initial_backoff=0.001, max_backoff=0.001, jitter=False)

#: name -> (replies, timeout): each a failing call of a different kind.
FAILURES: dict[str, tuple[list[Reply], float]] = {
    "401": ([Reply(401, {"error": {"code": "unauthorized", "message": "bad key"}})], 5.0),
    "500": ([Reply(500, {"error": {"message": "boom"}})], 5.0),
    "429_then_429": ([Reply(429, {}, {"Retry-After": "0"})] * 2, 5.0),
    "dropped": ([DROP], 5.0),
    "read_timeout": ([Reply(200, sent_json(), delay=1.0)], 0.2),
    "not_json": ([Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{{{")], 5.0),
}


def _text_of(error: BaseException) -> str:
    te = traceback.TracebackException.from_exception(error, capture_locals=True)
    return "".join(te.format()) + repr(error) + str(error)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "h11", "ovo_async", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield caplog
    for name in ("httpx", "httpcore", "h11", "ovo_async", "asyncio"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize("name", list(FAILURES))
async def test_failing_call_shows_no_key_anywhere(
    name: str, io_backend: Any, all_logs: pytest.LogCaptureFixture
) -> None:
    replies, timeout = FAILURES[name]
    with scripted_server() as server:
        server.queue(*replies)
        async with AsyncOVOClient(
            api_key=KEY, base_url=server.url, retry=FAST, timeout=timeout, io_backend=io_backend
        ) as client:
            with pytest.raises(OVOError) as info:
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
        assert server.received[0].headers["authorization"] == f"Bearer {KEY}"
    text = _text_of(info.value)
    assert "Traceback" in text and "client = " in text  # locals really were captured
    assert KEY not in text
    assert KEY.encode() not in pickle.dumps(info.value)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    assert all_logs.records
    for record in all_logs.records:
        line = formatter.format(record) + repr(record.args) + repr(record.__dict__)
        assert KEY not in line, record.name


def _sdk_frames_text(error: BaseException) -> str:
    """The locals of the SDK's own frames (the caller's frames hold what the caller holds)."""
    te = traceback.TracebackException.from_exception(error, capture_locals=True)
    frames = [f for f in te.stack if "/ovo_async/" in f.filename]
    assert frames and all(f.locals is not None for f in frames)
    return repr([f.locals for f in frames]) + repr(error) + str(error)


@pytest.mark.parametrize("face", [AsyncOVOClient, OVOClient])
def test_key_from_failed_validation_is_never_echoed(face: Any) -> None:
    for bad in (KEY + "\n", KEY + " x", KEY + "\x00", KEY + "é", " " + KEY + "\t\x7f"):
        with pytest.raises(ValidationError) as info:
            face(api_key=bad)
        assert KEY not in _sdk_frames_text(info.value)
        assert info.value.field == "api_key"
    # A key that is fine, with a bad option beside it: still no frame shows the key.
    with pytest.raises(ValidationError) as info:
        face(api_key=KEY, timeout=float("nan"))
    assert KEY not in _sdk_frames_text(info.value)


def test_environment_key_is_stripped_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVO_API_KEY", f"  {KEY}\n")
    client = AsyncOVOClient()
    assert client._transport.api_key.bearer() == f"Bearer {KEY}"
    monkeypatch.setenv("OVO_API_KEY", f"{KEY[:5]} {KEY[5:]}\n")
    with pytest.raises(ValidationError, match="OVO_API_KEY") as info:
        AsyncOVOClient()
    assert KEY[5:] not in str(info.value)


@pytest.fixture
def proxy_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A loopback socket that every proxy variable points at; it must see nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    yield listener
    listener.close()


async def test_loopback_http_is_never_sent_through_a_proxy(
    proxy_listener: socket.socket,
) -> None:
    with scripted_server(Reply(200, sent_json())) as server:
        async with AsyncOVOClient(api_key=KEY, base_url=server.url) as client:
            await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
        assert server.count == 1
    with pytest.raises(BlockingIOError):
        proxy_listener.accept()  # nobody connected: the key did not reach the proxy


def _response(status: int) -> httpx.Response:
    request = httpx.Request(
        "POST", "https://api.example/v1/sms/send", headers={"Authorization": f"Bearer {KEY}"}
    )
    return httpx.Response(status, request=request, json={"error": {"message": "m"}})


def _every_error() -> list[OVOError]:
    errors: list[OVOError] = [
        OVOError("plain"),
        ValidationError("to", "must be E.164"),
        APIConnectionError("lost", may_have_been_sent=True),
        APITimeoutError("slow", may_have_been_sent=True),
        ResponseTooLargeError("huge", may_have_been_sent=False),
        APIResponseValidationError("odd", response=_response(200), body={"x": 1}),
        MessageRejectedError("no", code="c", param="to", status="rejected", batch_id="b1"),
    ]
    for status, cls in STATUS_CLASSES:
        errors.append(
            cls(
                "server says no",
                response=_response(status),
                body={"error": {"message": "m"}},
                code="some_code",
                param="to",
                request_id="req_1",
                retry_after=2.5 if status == 429 else None,
            )
        )
    for error in errors:
        error.idempotency_key = "key-1"
        error.may_have_been_sent = True
    return errors


ATTRIBUTES = (
    "args",
    "message",
    "field",
    "status_code",
    "code",
    "param",
    "request_id",
    "retry_after",
    "may_have_been_sent",
    "idempotency_key",
    "status",
    "batch_id",
    "body",
)


@pytest.mark.parametrize("error", _every_error(), ids=lambda e: type(e).__name__)
def test_every_error_round_trips_through_pickle_without_the_key(error: OVOError) -> None:
    data = pickle.dumps(error)
    assert KEY.encode() not in data
    assert KEY not in str(error) and KEY not in repr(error)
    copy = pickle.loads(data)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    for name in ATTRIBUTES:
        assert getattr(copy, name, None) == getattr(error, name, None), name
    if isinstance(copy, (APIError, APIResponseValidationError)):
        assert copy.response is None


def test_every_public_error_class_is_covered() -> None:
    public = {
        obj
        for obj in (getattr(ovo_async, name) for name in ovo_async.__all__)
        if isinstance(obj, type) and issubclass(obj, OVOError)
    }
    covered: set[Any] = {type(e) for e in _every_error()}
    assert public <= covered, public - covered
