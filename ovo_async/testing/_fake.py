"""FakeOVO: an in-memory OVO SMS API, written as a server would be, as an ASGI app.

Here: its state, its test controls, the message lifecycle and the ASGI app. The API's
rules (validation, segment counting) are in `_rules.py`, the records it keeps in
`_records.py`, and the callbacks' delivery thread in `_delivery.py`. It deliberately
shares no code with the SDK's transport or validation: a fake that used the client's own
rules could never catch the client's bugs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sized
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import httpx

from ._delivery import CallbackSender
from ._records import CallbackRecord, DroppedConnection, RecordedRequest, _Fault, _Problem, _Stored
from ._rules import (
    ENDPOINTS,
    MAX_BATCH,
    _check_item,
    _is_url,
    _now_iso,
    _seconds,
    _segments,
)

__all__ = ["CallbackRecord", "FakeOVO", "RecordedRequest"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FakeOVO:
    """An in-memory OVO SMS API for tests and local development.

    - `FakeOVO()` accepts any non-empty Bearer key; `FakeOVO(api_key="k")` only that one.
    - In process: `AsyncOVOClient(api_key="k", transport=fake.transport())`.
    - On loopback: `with fake.serve() as base_url:` (needs `ovo-async[fake]`).
    - Lifecycle: a message is `queued`, then `sent` after `sent_after` seconds, then
      `delivered` after `delivered_after` (or `failed` for numbers passed to
      `mark_unreachable`). The clock is yours in process (`advance(seconds)`) and real
      time when served. Status changes are POSTed to a message's `callback_url`.
    - Faults: `fail_next(...)` and `rate_limit(...)`.
    - Inspection: `requests`, `messages`, `callbacks`.
    - It honours `Idempotency-Key`: a repeated key replays the first answer.
    - Callbacks go out in the background, in order, with a short timeout
      (`callback_timeout`), so `advance()` never blocks; `wait_for_callbacks()` waits
      for them. `callback_app=` delivers them in process to your ASGI app instead.
    - `latency`: every send and batch acts at once and answers that many seconds later,
      as a slow real server does (the window in which a crash leaves a request in flight).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        sent_after: float = 1.0,
        delivered_after: float = 2.0,
        real_time: bool = False,
        callback_transport: httpx.BaseTransport | None = None,
        latency: float = 0.0,
        callback_app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None,
        callback_timeout: float = 2.0,
    ) -> None:
        self.api_key = api_key
        #: Seconds every send and batch waits after acting before it answers.
        self.latency = latency
        self.sent_after = sent_after
        self.delivered_after = delivered_after
        self.requests: list[RecordedRequest] = []
        self._callbacks = CallbackSender(
            transport=callback_transport, app=callback_app, timeout=callback_timeout
        )
        #: Every callback POSTed so far, in order, and how it went.
        self.callbacks: list[CallbackRecord] = self._callbacks.records
        self.callback_timeout = callback_timeout
        self._lock = threading.RLock()
        #: Notified whenever a message is stored (`wait_for_messages`).
        self._stored_more = threading.Condition(self._lock)
        self._stored: dict[str, _Stored] = {}
        self._unreachable: set[str] = set()
        self._faults: dict[str, deque[_Fault]] = {}
        self._idempotent: dict[str, tuple[str, int, Any]] = {}
        self._in_flight: set[str] = set()
        self._rate: float | None = None
        self._rate_retry_after: float | None = None
        self._rate_hits: deque[float] = deque()
        self._offset = 0.0
        self._real_time = real_time
        self._real_start = time.monotonic()
        self._epoch = datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return f"<FakeOVO messages={len(self._stored)} requests={len(self.requests)}>"

    # ---- test controls ---------------------------------------------------------------

    def mark_unreachable(self, *numbers: str) -> None:
        """Messages to these numbers end `failed` instead of `delivered`."""
        with self._lock:
            self._unreachable.update(numbers)

    def fail_next(
        self,
        endpoint: str = "*",
        times: int = 1,
        *,
        status: int | None = 500,
        retry_after: float | None = None,
        delay: float = 0.0,
        drop: bool = False,
        body: Any = None,
    ) -> None:
        """Make the next `times` requests to `endpoint` ("send", "batch", "retrieve" or "*") fail.

        `status` answers with that error (the request is not acted on); `delay` holds the
        answer back (with `status=None` the request is acted on first, then answered
        late: use it for timeouts);
        `drop=True` acts on the request and then drops the connection without an answer,
        as when a response is lost. `retry_after` adds a `Retry-After` header; `body`
        replaces the error body (a string is sent as is, as from a proxy).
        """
        if endpoint != "*" and endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS} or '*', got {endpoint!r}")
        if status is not None and (
            isinstance(status, bool)
            or not isinstance(status, int)
            or not 200 <= status <= 599
            or status == 304
        ):
            # 1xx is not a final answer and 304 cannot carry a body: no server sends those
            # in reply to a POST, and the fake would have to lie about the wire to do it.
            raise ValueError(f"status must be None or 200-599 (not 304), got {status!r}")
        fault = _Fault(None if drop else status, retry_after, delay, drop, body)
        with self._lock:
            self._faults.setdefault(endpoint, deque()).extend([fault] * times)

    def rate_limit(self, per_second: float | None, *, retry_after: float | None = None) -> None:
        """Answer 429 with `Retry-After` beyond `per_second` requests a second; None lifts it."""
        with self._lock:
            self._rate = per_second
            self._rate_retry_after = retry_after
            self._rate_hits.clear()

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward and deliver the status callbacks now due."""
        with self._lock:
            self._offset += seconds
        self.deliver_callbacks()

    def now(self) -> float:
        """The fake's clock, in seconds since it was made."""
        real = time.monotonic() - self._real_start if self._real_time else 0.0
        return self._offset + real

    def use_real_time(self) -> None:
        """Let the lifecycle follow the wall clock from now on (done by `serve()`)."""
        with self._lock:
            if not self._real_time:
                self._real_start = time.monotonic()
                self._real_time = True

    @property
    def message_count(self) -> int:
        """How many messages are stored: cheap, for polling while a campaign runs."""
        return len(self._stored)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every stored message as the API would show it, oldest first."""
        with self._lock:
            return [self._message_json(m) for m in self._stored.values()]

    def message(self, message_id: str) -> dict[str, Any]:
        """One stored message as the API would show it (KeyError if unknown)."""
        with self._lock:
            return self._message_json(self._stored[message_id])

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx async transport that calls this fake in process (no sockets)."""
        from ._transport import FakeTransport

        return FakeTransport(self)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve on loopback in a background thread; yields the base URL (…/v1).

        Only a loopback host is accepted: the fake takes any key and must not be
        reachable from the network.
        """
        import ipaddress

        from ._server import serve

        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"FakeOVO serves on loopback only, not {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            # uvicorn took 65536 as "any port", and -5 as a failure to start.
            raise ValueError(f"port must be an int from 0 (any) to 65535, got {port!r}")

        with serve(self, host, port) as url:
            yield url

    # ---- lifecycle ------------------------------------------------------------------

    def _status(self, m: _Stored) -> tuple[str, float]:
        """The status and the clock time it began."""
        age = self.now() - m.created
        if age < self.sent_after:
            return "queued", m.created
        if age < self.delivered_after:
            return "sent", m.created + self.sent_after
        final = "failed" if m.unreachable else "delivered"
        return final, m.created + self.delivered_after

    def _at(self, clock: float) -> datetime:
        return self._epoch + timedelta(seconds=clock)

    def _message_json(self, m: _Stored) -> dict[str, Any]:
        status, since = self._status(m)
        return {
            "message_id": m.message_id,
            "status": status,
            "to": m.to,
            "from": m.from_,
            "message": m.text,
            "segments": _segments(m.text),
            "created_at": _now_iso(self._at(m.created)),
            "updated_at": _now_iso(self._at(since)),
            "delivered_at": _now_iso(self._at(since)) if status == "delivered" else None,
        }

    def deliver_callbacks(self) -> None:
        """POST every status change not yet reported to its message's `callback_url`."""
        due: list[tuple[str, dict[str, Any]]] = []
        with self._lock:
            for m in self._stored.values():
                status, _ = self._status(m)
                if status == m.reported:
                    continue
                path = ["queued", "sent", "failed" if m.unreachable else "delivered"]
                passed = path[path.index(m.reported) + 1 : path.index(status) + 1]
                m.reported = status
                if m.callback_url:
                    # Report every step, even when the clock jumped over some.
                    current = self._message_json(m)
                    for step in passed:
                        payload = dict(current, status=step)
                        if step != "delivered":
                            payload["delivered_at"] = None
                        due.append((m.callback_url, payload))
        if due:
            self._callbacks.send(due)

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> int:
        """Block until at least `count` messages are stored; how many are. Raises
        `TimeoutError` if they are not within `timeout` seconds."""
        return self._wait_for(self._stored, count, timeout, "messages stored")

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> int:
        """Block until at least `count` requests have been answered (or their answer
        failed to go out); how many have. `TimeoutError` after `timeout` seconds."""
        return self._wait_for(self.requests, count, timeout, "requests answered")

    def _wait_for(self, things: Sized, count: int, timeout: float, what: str) -> int:
        with self._stored_more:
            if not self._stored_more.wait_for(lambda: len(things) >= count, timeout):
                raise TimeoutError(f"{len(things)} of {count} {what}")
            return len(things)

    def wait_for_callbacks(self, timeout: float = 5.0) -> list[CallbackRecord]:
        """Block until every callback due so far has been delivered (or has failed)."""
        return self._callbacks.wait(timeout)

    # ---- the ASGI app ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            event = await receive()
            raw += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = urlsplit(raw_path.decode("latin-1")).path
        endpoint, arg = self._route(method, path)
        status, payload, extra = await self._handle(method, endpoint, arg, headers, raw)
        body = b"" if payload is None else json.dumps(payload).encode()
        if isinstance(payload, str):
            body = payload.encode()
        kind = b"text/html" if isinstance(payload, str) else b"application/json"
        drop = extra.pop("x-fake-drop", None)
        response_headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        if drop:
            raise DroppedConnection("FakeOVO dropped the connection")
        await send({"type": "http.response.body", "body": body})

    def _route(self, method: str, path: str) -> tuple[str | None, str | None]:
        parts = path.split("/")
        if len(parts) == 4 and parts[:3] == ["", "v1", "sms"]:
            if parts[3] == "send":
                return "send", None
            if parts[3] == "batch":
                return "batch", None
            return "retrieve", unquote(parts[3])
        return None, None

    async def _handle(
        self,
        method: str,
        endpoint: str | None,
        arg: str | None,
        headers: dict[str, str],
        raw: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        received_at = time.monotonic()
        request_id = "req_" + uuid.uuid4().hex[:16]
        extra = {"x-request-id": request_id}
        body: Any = None
        status = 500
        try:
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            self._authorize(headers)
            if endpoint is None:
                raise _Problem(404, "not_found", "no such endpoint")
            expected = "GET" if endpoint == "retrieve" else "POST"
            if method != expected:
                raise _Problem(405, "method_not_allowed", f"use {expected}")
            fault = self._take_fault(endpoint)
            limited = self._rate_limited()
            if fault is not None and fault.delay and fault.status is not None:
                await anyio.sleep(fault.delay)
            if limited is not None:
                extra["retry-after"] = limited
                raise _Problem(429, "rate_limited", "too many requests")
            if fault is not None and fault.status is not None:
                if fault.retry_after is not None:
                    extra["retry-after"] = _seconds(fault.retry_after)
                if fault.body is not None:
                    status = fault.status
                    return status, fault.body, extra
                raise _Problem(fault.status, "injected_fault", "fault injected by FakeOVO")
            # Acted on, then answered late: the case where a timeout costs money.
            hold = self.latency if endpoint != "retrieve" else 0.0
            if fault is not None and fault.delay:
                hold += fault.delay
            status, payload = await self._idempotent_act(endpoint, arg, headers, body, hold)
            if fault is not None and fault.drop:
                extra["x-fake-drop"] = "1"
            return status, payload, extra
        except _Problem as problem:
            status = problem.status
            error = {
                "code": problem.code,
                "message": problem.message,
                "param": problem.param,
                "request_id": request_id,
            }
            return status, {"error": error}, extra
        finally:
            masked = {k: ("Bearer ****" if k == "authorization" else v) for k, v in headers.items()}
            path = f"/v1/sms/{arg}" if endpoint == "retrieve" else f"/v1/sms/{endpoint}"
            with self._lock:
                self.requests.append(
                    RecordedRequest(method, path, endpoint, masked, body, status, received_at)
                )
                self._stored_more.notify_all()

    def _authorize(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _Problem(401, "unauthorized", "missing Bearer API key")
        if self.api_key is not None and key != self.api_key:
            raise _Problem(401, "invalid_api_key", "the API key is not valid")

    def _take_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            for name in (endpoint, "*"):
                queue = self._faults.get(name)
                if queue:
                    return queue.popleft()
        return None

    def _rate_limited(self) -> str | None:
        with self._lock:
            if self._rate is None:
                return None
            now = time.monotonic()
            while self._rate_hits and now - self._rate_hits[0] >= 1.0:
                self._rate_hits.popleft()
            if len(self._rate_hits) < self._rate:
                self._rate_hits.append(now)
                return None
            wait = self._rate_retry_after
            if wait is None:
                wait = 1.0 - (now - self._rate_hits[0])
            return _seconds(wait)

    async def _idempotent_act(
        self, endpoint: str, arg: str | None, headers: dict[str, str], body: Any, hold: float
    ) -> tuple[int, Any]:
        """Act once per key; `hold` seconds pass between acting and answering.

        While a request is being answered, another with its key gets a 409, as from a real
        server; once answered, a repeat gets the first answer (422 if its body differs).
        """
        key = headers.get("idempotency-key") if endpoint != "retrieve" else None
        if key is None:
            result = self._act(endpoint, arg, body)
            if hold:
                await anyio.sleep(hold)
            return result
        fingerprint = endpoint + json.dumps(body, sort_keys=True)
        with self._lock:
            if key in self._in_flight:
                raise _Problem(409, "idempotency_conflict", "a request with this key is in flight")
            seen = self._idempotent.get(key)
            if seen is not None:
                if seen[0] != fingerprint:
                    raise _Problem(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another request",
                        "Idempotency-Key",
                    )
                return seen[1], seen[2]
            self._in_flight.add(key)
        try:
            status, payload = self._act(endpoint, arg, body)
            with self._lock:
                # Acted on: remembered at once, even if the answer never gets out.
                self._idempotent[key] = (fingerprint, status, payload)
            if hold:
                await anyio.sleep(hold)
            return status, payload
        finally:
            # Rejected input is not remembered (see _act): the caller may fix it and retry.
            with self._lock:
                self._in_flight.discard(key)

    def _act(self, endpoint: str, arg: str | None, body: Any) -> tuple[int, Any]:
        if endpoint == "retrieve":
            with self._lock:
                stored = self._stored.get(arg or "")
                if stored is None:
                    raise _Problem(404, "message_not_found", f"no message {arg!r}", "message_id")
                return 200, self._message_json(stored)
        if not isinstance(body, dict):
            raise _Problem(400, "invalid_json", "the body must be a JSON object")
        if endpoint == "send":
            item = _check_item(body, "")
            stored = self._store(item, None)
            return 201, {
                "message_id": stored.message_id,
                "status": "queued",
                "to": stored.to,
                "from": stored.from_,
                "created_at": _now_iso(self._at(stored.created)),
            }
        return self._batch(body)

    def _batch(self, body: dict[str, Any]) -> tuple[int, Any]:
        items = body.get("messages")
        if not isinstance(items, list) or not items:
            raise _Problem(
                400, "invalid_parameter", "messages must be a non-empty list", "messages"
            )
        if len(items) > MAX_BATCH:
            raise _Problem(400, "invalid_parameter", f"at most {MAX_BATCH} messages", "messages")
        default_callback = body.get("callback_url")
        if default_callback is not None and not _is_url(default_callback):
            raise _Problem(400, "invalid_parameter", "callback_url is not a URL", "callback_url")
        results: list[dict[str, Any]] = []
        for i, raw in enumerate(items):
            try:
                item = _check_item(raw, f"messages[{i}].")
            except _Problem as problem:
                entry = raw if isinstance(raw, dict) else {}
                results.append(
                    {
                        "status": "rejected",
                        "to": str(entry.get("to", "")),
                        "from": str(entry.get("from", "")),
                        "error": {
                            "code": problem.code,
                            "message": problem.message,
                            "param": problem.param,
                        },
                    }
                )
                continue
            stored = self._store(item, default_callback)
            results.append(
                {
                    "message_id": stored.message_id,
                    "status": "queued",
                    "to": stored.to,
                    "from": stored.from_,
                }
            )
        ok = sum(1 for r in results if "message_id" in r)
        return 201, {
            "batch_id": "batch_" + uuid.uuid4().hex[:24],
            "total_messages": len(results),
            "successful": ok,
            "failed": len(results) - ok,
            "messages": results,
            "created_at": _now_iso(self._at(self.now())),
        }

    def _store(self, item: dict[str, Any], default_callback: str | None) -> _Stored:
        with self._lock:
            stored = _Stored(
                message_id="sm_" + uuid.uuid4().hex[:24],
                to=item["to"],
                from_=item["from"],
                text=item["message"],
                callback_url=item.get("callback_url") or default_callback,
                created=self.now(),
                unreachable=item["to"] in self._unreachable,
            )
            self._stored[stored.message_id] = stored
            self._stored_more.notify_all()
            return stored
