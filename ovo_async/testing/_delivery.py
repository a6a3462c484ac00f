"""Status callbacks on their way out: one background thread, in order, each with a
short timeout, so a slow or dead callback URL never blocks the test or the fake."""

from __future__ import annotations

import queue
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
import httpx

from ._records import CallbackRecord

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class CallbackSender:
    """POSTs callbacks (url, payload) in order; `records` says how each went."""

    def __init__(
        self, *, transport: httpx.BaseTransport | None, app: App | None, timeout: float
    ) -> None:
        self.records: list[CallbackRecord] = []
        self.timeout = timeout
        self._transport = transport
        self._app = app
        self._outbox: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = queue.SimpleQueue()
        self._queued = 0
        self._sender: threading.Thread | None = None
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)

    def send(self, due: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue callbacks; they go out on the sender thread, started when needed."""
        with self._lock:
            self._queued += len(due)
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(
                    target=self._run, name="fake-ovo-callbacks", daemon=True
                )
                self._sender.start()
        for item in due:
            self._outbox.put(item)

    def wait(self, timeout: float) -> list[CallbackRecord]:
        """Block until every callback queued so far has been delivered (or has failed)."""
        with self._lock:
            self._done.wait_for(lambda: len(self.records) >= self._queued, timeout)
            return list(self.records)

    def _run(self) -> None:
        # One thread, one connection pool, in order: a slow or dead URL delays only the
        # callbacks behind it, never the test's own thread or event loop.
        with httpx.Client(transport=self._transport, timeout=self.timeout) as client:
            while True:
                item = self._outbox.get()
                if item is None:
                    return
                url, payload = item
                try:
                    if self._app is not None:
                        status = self._post_in_process(url, payload)
                    else:
                        status = client.post(url, json=payload).status_code
                    record = CallbackRecord(url, payload, status_code=status)
                except Exception as exc:
                    record = CallbackRecord(url, payload, error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.records.append(record)
                    self._done.notify_all()

    def _post_in_process(self, url: str, payload: dict[str, Any]) -> int:
        app = self._app
        assert app is not None

        async def post() -> int:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, timeout=self.timeout) as c:
                return (await c.post(url, json=payload)).status_code

        return anyio.run(post)
