"""A scripted HTTP/1.1 server on 127.0.0.1 for what mocks cannot show.

Each request pops the next action from the script (or repeats the default): answer with
a status, answer after a delay, or drop the connection without a word. It counts what it
received, so tests can assert how many times a request really reached the server.
"""

from __future__ import annotations

import json
import select
import socket
import socketserver
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs


@attrs.frozen
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)
    delay: float = 0.0
    drop: bool = False
    #: Written as is instead of a response built from the fields above.
    raw: bytes | None = None
    #: A body streamed in chunks (with `headers`), for answers too big to hold.
    chunks: Callable[[], Iterable[bytes]] | None = None
    #: Close the connection once this is written (a body cut short, with `raw`).
    hang_up: bool = False


DROP = Reply(drop=True)


@attrs.frozen
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    def __init__(self, default: Reply) -> None:
        self.default = default
        #: When set, answers every request not covered by the script.
        self.responder: Callable[[Received], Reply] | None = None
        self.script: deque[Reply] = deque()
        self.received: list[Received] = []
        #: TCP connections accepted, and closed by the server.
        self.connections = 0
        self.closed = 0
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        #: Set when a client hangs up while its reply is being delayed.
        self.hung_up = threading.Event()
        self.url = ""

    def queue(self, *replies: Reply) -> None:
        with self.lock:
            self.script.extend(replies)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until the server has received `count` requests; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: len(self.received) >= count, timeout)

    def wait_closed(self, count: int, timeout: float = 5.0) -> bool:
        """Block until the server has closed `count` connections; False on timeout."""
        with self.lock:
            return self.lock.wait_for(lambda: self.closed >= count, timeout)

    def _next(self, received: Received) -> Reply:
        with self.lock:
            self.received.append(received)
            self.lock.notify_all()
            if self.script:
                return self.script.popleft()
            responder = self.responder
        return responder(received) if responder is not None else self.default


def http_response(status: int, payload: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One HTTP/1.1 response as bytes (JSON content type when there is a payload)."""
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}"]
    headers = dict(headers or {})
    if payload:
        headers.setdefault("Content-Type", "application/json")
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def _read_request(rfile: Any) -> Received | None:
    line = rfile.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        raw = rfile.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = rfile.read(int(headers.get("content-length", "0")))
    return Received(method, path, headers, body)


class _Handler(socketserver.StreamRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scripted = self.server.scripted
        with scripted.lock:
            scripted.connections += 1
        while not scripted.stopping.is_set():
            try:
                received = _read_request(self.rfile)
            except (OSError, ValueError):
                return
            if received is None:
                return
            reply = scripted._next(received)
            if reply.delay and not self._wait_unless_hung_up(reply.delay):
                return
            if reply.drop:
                # RST instead of FIN: the client sees the connection die with no answer.
                self.request.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                return
            try:
                self._write(reply)
            except OSError:
                return
            if reply.hang_up:
                return

    def _write(self, reply: Reply) -> None:
        if reply.raw is not None:
            self.wfile.write(reply.raw)
        elif reply.chunks is not None:
            head = [f"HTTP/1.1 {reply.status} X", "Transfer-Encoding: chunked"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode())
            for chunk in reply.chunks():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.wfile.write(http_response(reply.status, payload, reply.headers))
        self.wfile.flush()

    def _wait_unless_hung_up(self, delay: float) -> bool:
        """Sleep `delay` seconds; False if the client hung up or the server is stopping."""
        scripted = self.server.scripted
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if scripted.stopping.is_set():
                return False
            readable, _, _ = select.select([self.request], [], [], 0.02)
            if readable and not self.request.recv(1, socket.MSG_PEEK):
                scripted.hung_up.set()
                return False
        return True


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    scripted: ScriptedServer
    tls: ssl.SSLContext | None = None

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self.scripted.lock:
            self.scripted.closed += 1
            self.scripted.lock.notify_all()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if self.tls is not None:
            sock.settimeout(5)
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except OSError:  # the client refused our certificate: socketserver skips it
                sock.close()
                raise
            sock.settimeout(None)
        return sock, address


@contextmanager
def scripted_server(
    default: Reply | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[ScriptedServer]:
    """The server on 127.0.0.1; with `tls`, it speaks HTTPS as `localhost`."""
    scripted = ScriptedServer(default or Reply(200, {}))
    server = _TCPServer(("127.0.0.1", 0), _Handler)
    server.scripted = scripted
    server.tls = tls
    port = server.server_address[1]
    host = "localhost" if tls else "127.0.0.1"
    scripted.url = f"{'https' if tls else 'http'}://{host}:{port}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield scripted
    finally:
        scripted.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
