"""Calling FakeOVO in process, with the failures a socket would show."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx

from ._records import DroppedConnection

if TYPE_CHECKING:
    from ._fake import FakeOVO


class FakeTransport(httpx.AsyncBaseTransport):
    """httpx's ASGI transport plus what it lacks: read timeouts and dropped connections."""

    def __init__(self, fake: FakeOVO) -> None:
        self._asgi = httpx.ASGITransport(app=fake)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        try:
            with anyio.fail_after(timeout):
                response = await self._asgi.handle_async_request(request)
                await response.aread()
                return response
        except TimeoutError:
            raise httpx.ReadTimeout("FakeOVO did not answer in time", request=request) from None
        except DroppedConnection:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from None
