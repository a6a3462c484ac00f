"""The default backend's connections under asyncio (`_sockets.py`), on a real loopback
server: what a user sees when the server closes, stalls or sends a lot."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from ovo_async import APIConnectionError, AsyncOVOClient, RetryPolicy

from .conftest import API_KEY, message_json, sent_json
from .loopback import DROP, Reply, ScriptedServer, scripted_server
from .test_cancel import client_sockets_to

TO = "+14155550123"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server(Reply(201, sent_json())) as s:
        yield s


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    server: ScriptedServer,
) -> None:
    server.queue(Reply(201, sent_json(), hang_up=True))
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url, max_retries=0) as client:
        await client.sms.send(to=TO, from_="OVO", message="first")
        # Blocking the loop while the server hangs up: only asking the kernel (not the
        # loop's earlier reads) can tell the idle connection is dead.
        assert server.wait_closed(1)
        sent = await client.sms.send(to=TO, from_="OVO", message="second")
    assert sent.message_id == "sm_123"
    assert server.connections == 2
    assert [json.loads(r.body)["message"] for r in server.received] == ["first", "second"]


async def test_an_answer_larger_than_the_read_buffer_arrives_whole(
    server: ScriptedServer,
) -> None:
    # Past the stream's high-water mark reading pauses; each read must resume it.
    text = "x" * (3 * 1024 * 1024)
    server.default = Reply(200, message_json(message=text))
    async with AsyncOVOClient(
        api_key=API_KEY, base_url=server.url, timeout=httpx.Timeout(5.0, read=2.0)
    ) as client:
        message = await client.sms.retrieve("sm_123")
    assert message.message == text


def _silent_listener() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return listener, listener.getsockname()[1]


async def test_a_tls_handshake_that_never_ends_is_a_connect_timeout_and_nothing_sent() -> None:
    listener, port = _silent_listener()  # accepts (the kernel does), never answers
    try:
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url=f"https://127.0.0.1:{port}/v1",
            timeout=httpx.Timeout(5.0, connect=0.3),
            max_retries=0,
        ) as client:
            started = time.monotonic()
            with pytest.raises(APIConnectionError) as info:
                await asyncio.wait_for(client.sms.send(to=TO, from_="OVO", message="Hi"), 10)
            elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert info.value.may_have_been_sent is False
    assert "timed out" in str(info.value).lower()
    assert elapsed < 3.0


async def test_a_stalled_read_is_a_read_timeout_and_may_have_been_sent(
    server: ScriptedServer,
) -> None:
    server.default = Reply(201, sent_json(), delay=2.0)
    async with AsyncOVOClient(
        api_key=API_KEY,
        base_url=server.url,
        timeout=httpx.Timeout(5.0, read=0.2),
        max_retries=0,
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.sms.send(to=TO, from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is True
    assert server.count == 1


async def test_a_cancelled_call_leaves_no_answer_for_the_next_one(server: ScriptedServer) -> None:
    server.default = Reply(201, sent_json(), delay=0.5)
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as client:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.sms.send(to=TO, from_="OVO", message="Hi"), 0.1)
        # The cancelled call's answer still comes, on the connection it used: never
        # read as the answer to the next call.
        server.default = Reply(201, sent_json(message_id="sm_again"))
        sent = await client.sms.send(to=TO, from_="OVO", message="again")
    assert sent.message_id == "sm_again"


@contextlib.asynccontextmanager
async def connected() -> AsyncIterator[tuple[Any, socket.socket]]:
    """A `_sockets` stream to a loopback socket the test plays the server on."""
    from ovo_async._sockets import NetworkBackend

    listener, port = _silent_listener()
    try:
        stream = await NetworkBackend().connect_tcp("127.0.0.1", port, timeout=5)
        peer, _ = listener.accept()
        try:
            yield stream, peer
        finally:
            peer.close()
            await stream.aclose()
    finally:
        listener.close()


@pytest.mark.parametrize("kernel_check", ["poll", "select (no poll, as on Windows)"])
async def test_an_idle_connection_closed_since_the_loop_last_looked_is_not_reusable(
    kernel_check: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import select

    if kernel_check != "poll":
        monkeypatch.delattr(select, "poll")
    async with connected() as (stream, peer):
        assert stream.get_extra_info("is_readable") is False
        # The server hangs up, and the loop does not run before the check: only the
        # kernel knows (httpcore would otherwise send the next request into it).
        peer.close()
        assert stream.get_extra_info("is_readable") is True


async def test_an_idle_connection_the_server_wrote_to_unasked_is_not_reusable() -> None:
    async with connected() as (stream, peer):
        # Bytes nobody asked for (a stray answer, garbage): the next request's answer
        # would be read from them. Once the loop has taken them off the socket, only
        # the stream's own buffer still knows.
        peer.sendall(b"HTTP/1.1 200 OK\r\n\r\nstray")
        protocol = stream._protocol
        for _ in range(1000):
            if protocol.chunks:
                break
            await asyncio.sleep(0)
        assert protocol.chunks
        assert stream.get_extra_info("is_readable") is True


async def test_a_flood_nobody_reads_is_held_to_a_bound_then_read_whole() -> None:
    from ovo_async import _sockets

    total = 4 * _sockets._HIGH_WATER
    async with connected() as (stream, peer):
        peer.setblocking(False)
        protocol = stream._protocol
        sent = 0
        # Write what the kernel takes, and let the loop read it, until reading stops.
        while sent < total and protocol.reading:
            with contextlib.suppress(BlockingIOError):
                sent += peer.send(b"x" * min(65536, total - sent))
            await asyncio.sleep(0)
        assert not protocol.reading
        # More keeps coming; it stays in the kernel, not in the stream's memory.
        while sent < total:
            try:
                sent += peer.send(b"x" * min(65536, total - sent))
            except BlockingIOError:
                break
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert protocol.buffered <= 2 * _sockets._HIGH_WATER
        peer.setblocking(True)

        def send_the_rest() -> None:
            peer.sendall(b"x" * (total - sent))
            peer.close()

        sender = asyncio.get_running_loop().run_in_executor(None, send_the_rest)
        received = 0
        while data := await stream.read(65536, timeout=5):
            assert len(data) <= 65536
            received += len(data)
        await sender
        assert received == total


async def test_a_read_woken_by_the_write_side_waits_on_for_data() -> None:
    async with connected() as (stream, peer):
        read = asyncio.ensure_future(stream.read(65536, timeout=5))
        await asyncio.sleep(0)  # the read is waiting
        stream._protocol.resume_writing()  # a drained write
        await asyncio.sleep(0)
        assert not read.done()  # not an empty read: that would say the server hung up
        peer.sendall(b"answer")
        assert await read == b"answer"


async def test_a_cancel_as_the_connection_opens_is_not_lost_and_nothing_is_sent(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    real = loop.create_connection
    caller = asyncio.current_task()
    assert caller is not None
    opened: list[asyncio.BaseTransport] = []

    async def connect_then_cancelled(*args: Any, **kwargs: Any) -> Any:
        made = await real(*args, **kwargs)
        opened.append(made[0])
        done: asyncio.Future[Any] = loop.create_future()

        def finish_and_cancel() -> None:
            # The connect finishes and the caller is cancelled in the same loop step.
            done.set_result(made)
            caller.cancel()

        loop.call_soon(finish_and_cancel)
        try:
            return await done
        except asyncio.CancelledError:
            made[0].close()
            raise

    monkeypatch.setattr(loop, "create_connection", connect_then_cancelled)
    async with AsyncOVOClient(api_key=API_KEY, base_url=server.url, max_retries=0) as client:
        with pytest.raises(asyncio.CancelledError):
            await client.sms.send(to=TO, from_="OVO", message="cancelled")
        monkeypatch.undo()
        if sys.version_info >= (3, 11):
            caller.uncancel()  # that cancel was the test's, and it has arrived
        await client.sms.send(to=TO, from_="OVO", message="after")
    assert len(opened) == 1
    assert [json.loads(r.body)["message"] for r in server.received] == ["after"]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[ScriptedServer, str]]:
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    with (
        scripted_server(Reply(201, sent_json()), tls=context) as server,
        ca.cert_pem.tempfile() as ca_path,
    ):
        yield server, ca_path


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_sends_on_uvloop(
    scheme: str, server: ScriptedServer, tls_server: tuple[ScriptedServer, str]
) -> None:
    import uvloop

    target, ca_path = (server, None) if scheme == "http" else tls_server
    before = target.count

    async def main() -> str:
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=target.url, verify=ca_path or True
        ) as client:
            first = await client.sms.send(to=TO, from_="OVO", message="Hi")
            again = await client.sms.send(to=TO, from_="OVO", message="again")
            return f"{first.message_id} {again.message_id}"

    assert uvloop.run(main()) == "sm_123 sm_123"
    assert target.count == before + 2


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("the client hung up mid-handshake")
        data += chunk
    return data


def _connect_handshake(client: socket.socket) -> str:
    """An HTTP CONNECT request: its target, answered once the tunnel is up."""
    head = b""
    while b"\r\n\r\n" not in head:
        head += client.recv(4096)
    return head.split(b" ")[1].decode()


def _socks5_handshake(client: socket.socket) -> str:
    """A SOCKS5 greeting (no authentication) and CONNECT request (RFC 1928): its target."""
    version, methods = _recv_exactly(client, 2)
    assert version == 5 and 0 in _recv_exactly(client, methods)
    client.sendall(b"\x05\x00")
    version, command, _, kind = _recv_exactly(client, 4)
    assert (version, command) == (5, 1)
    if kind == 1:
        host = socket.inet_ntoa(_recv_exactly(client, 4))
    elif kind == 3:
        host = _recv_exactly(client, _recv_exactly(client, 1)[0]).decode()
    else:
        host = socket.inet_ntop(socket.AF_INET6, _recv_exactly(client, 16))
    port = int.from_bytes(_recv_exactly(client, 2), "big")
    return f"{host}:{port}"


_TUNNEL_UP = {
    "http": b"HTTP/1.1 200 Connection established\r\n\r\n",
    # Succeeded, bound to 0.0.0.0:0 (clients do not use the address).
    "socks5": b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00",
}


@contextlib.contextmanager
def tunnel_proxy(
    scheme: str = "http", answer: bytes | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A proxy on loopback that tunnels (HTTP CONNECT, or SOCKS5 for "socks5"): its
    URL, and the targets it was asked for. With `answer`, it answers each handshake
    with those bytes and hangs up instead."""
    handshake = _socks5_handshake if scheme == "socks5" else _connect_handshake
    listener, port = _silent_listener()
    tunnels: list[str] = []
    workers: list[threading.Thread] = []
    opened: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        # A side's hang-up is not passed on: the tunnel stays up until the proxy closes
        # it (as many do), so a client waiting for the server's goodbye waits on.
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed: the test is over
                return
            opened.append(client)
            try:
                target = handshake(client)
            except (OSError, AssertionError):  # not this protocol: hang up at once
                client.close()
                continue
            tunnels.append(target)
            if answer is not None:
                client.sendall(answer)
                client.close()
                continue
            host, _, target_port = target.rpartition(":")
            upstream = socket.create_connection((host, int(target_port)))
            opened.append(upstream)
            client.sendall(_TUNNEL_UP[scheme])
            for a, b in ((client, upstream), (upstream, client)):
                worker = threading.Thread(target=pipe, args=(a, b), daemon=True)
                worker.start()
                workers.append(worker)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield f"{scheme}://127.0.0.1:{port}", tunnels
    finally:
        # shutdown, not only close: it wakes the threads blocked in accept() and recv().
        for sock in (listener, *opened):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        acceptor.join(5)
        for worker in workers:
            worker.join(5)


def send_via(proxy: str, base_url: str, io_backend: str, message: str, **options: Any) -> str:
    """One send through `proxy`, in an event loop of its own, without retries: its id."""

    async def main() -> str:
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url=base_url,
            proxy=proxy,
            io_backend=io_backend,  # type: ignore[arg-type]
            max_retries=0,
            **options,
        ) as client:
            sent = await client.sms.send(to=TO, from_="OVO", message=message)
            return sent.message_id

    return asyncio.run(main())


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_https_through_a_tunnelling_proxy(
    scheme: str, io_backend: str, tls_server: tuple[ScriptedServer, str]
) -> None:
    server, ca_path = tls_server
    before = server.count
    with tunnel_proxy(scheme) as (proxy, tunnels):
        sent = send_via(proxy, server.url, io_backend, "via a tunnel", verify=ca_path)
        assert sent == "sm_123"
        # Closed with the client, not left waiting for a TLS goodbye when the run ended.
        assert client_sockets_to(int(proxy.rsplit(":", 1)[1])) == 0
    assert tunnels == [server.url.split("/")[2]]
    assert server.count == before + 1
    assert json.loads(server.received[-1].body)["message"] == "via a tunnel"


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_a_malformed_socks_reply_means_not_sent(io_backend: str) -> None:
    # httpcore lets socksio's ProtocolError through unmapped; it can only come from the
    # handshake, before the request could leave.
    with tunnel_proxy("socks5", answer=b"not a SOCKS reply") as (proxy, asked):
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url="https://127.0.0.1:9/v1",
            proxy=proxy,
            io_backend=io_backend,  # type: ignore[arg-type]
            max_retries=0,
        ) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.sms.send(to=TO, from_="OVO", message="never sent")
    assert asked == ["127.0.0.1:9"]
    assert info.value.may_have_been_sent is False


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
@pytest.mark.parametrize(
    "answer",
    [b"", b"\x00\x01 not HTTP\r\n\r\n", b"HTTP/1.1 200 Connection established\r\n\r\n"],
    ids=["hangs-up", "garbage", "tunnel-then-hang-up"],
)
async def test_a_tunnel_that_fails_before_it_is_up_means_not_sent(
    answer: bytes, io_backend: str
) -> None:
    # A proxy hanging up or answering garbage to CONNECT came out as the errors of a
    # request that lost its answer: "may have been sent", and never retried.
    with tunnel_proxy("http", answer=answer) as (proxy, asked):
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url="https://127.0.0.1:9/v1",
            proxy=proxy,
            io_backend=io_backend,  # type: ignore[arg-type]
            retry=RetryPolicy(max_retries=1, initial_backoff=0.01, max_backoff=0.01),
        ) as client:
            with pytest.raises(APIConnectionError) as info:
                await client.sms.send(to=TO, from_="OVO", message="never sent")
    assert info.value.may_have_been_sent is False
    assert asked == ["127.0.0.1:9"] * 2  # not sent, so retried


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
def test_a_request_lost_inside_a_working_tunnel_may_have_been_sent(
    io_backend: str, tls_server: tuple[ScriptedServer, str]
) -> None:
    server, ca_path = tls_server
    server.queue(DROP)  # reads the request, then hangs up without an answer
    with tunnel_proxy("http") as (proxy, _), pytest.raises(APIConnectionError) as info:
        # The proxy does not pass the server's hang-up on: the read times out instead.
        send_via(proxy, server.url, io_backend, "lost answer", verify=ca_path, timeout=1.0)
    assert json.loads(server.received[-1].body)["message"] == "lost answer"
    assert info.value.may_have_been_sent is True
