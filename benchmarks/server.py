"""A minimal, fast HTTP/1.1 OVO stand-in for benchmarks (asyncio protocol, keep-alive).

Run as `python benchmarks/server.py` in its own process: it prints its port, then serves
until killed. It answers send, batch (one entry per message sent) and retrieve with canned
JSON, so the client under test, not the server, is what the benchmark measures.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

SENT = json.dumps(
    {
        "message_id": "sm_0123456789abcdef01234567",
        "status": "queued",
        "to": "+14155550123",
        "from": "OVO",
        "created_at": "2025-05-17T12:34:56Z",
    }
).encode()
MESSAGE = json.dumps(
    {
        "message_id": "sm_0123456789abcdef01234567",
        "status": "delivered",
        "to": "+14155550123",
        "from": "OVO",
        "message": "Hello",
        "segments": 1,
        "created_at": "2025-05-17T12:34:56Z",
        "updated_at": "2025-05-17T12:34:58Z",
        "delivered_at": "2025-05-17T12:34:58Z",
    }
).encode()
# What Twilio's and Telnyx's SDKs expect back, for the side-by-side sync benchmark.
TWILIO = json.dumps(
    {
        "sid": "SM0123456789abcdef0123456789abcdef",
        "account_sid": "AC" + "0" * 32,
        "to": "+14155550123",
        "from": "+14155550100",
        "body": "Hello from the benchmark",
        "status": "queued",
        "num_segments": "1",
        "direction": "outbound-api",
        "date_created": "Sat, 17 May 2025 12:34:56 +0000",
        "uri": "/2010-04-01/Accounts/AC/Messages/SM.json",
    }
).encode()
TELNYX = json.dumps(
    {
        "data": {
            "record_type": "message",
            "id": "40385f64-5717-4562-b3fc-2c963f66afa6",
            "type": "SMS",
            "direction": "outbound",
            "to": [{"phone_number": "+14155550123", "status": "queued", "carrier": "x"}],
            "from": {"phone_number": "+14155550100", "carrier": "x"},
            "text": "Hello from the benchmark",
            "parts": 1,
            "encoding": "GSM-7",
        }
    }
).encode()
_ITEM = '{{"message_id":"sm_{}","status":"queued","to":"{}","from":"{}"}}'


def _batch(body: bytes) -> bytes:
    messages = json.loads(body)["messages"]
    items = ",".join(_ITEM.format(i, m["to"], m["from"]) for i, m in enumerate(messages))
    n = len(messages)
    return (
        f'{{"batch_id":"batch_1","total_messages":{n},"successful":{n},"failed":0,'
        f'"messages":[{items}],"created_at":"2025-05-17T12:34:56Z"}}'
    ).encode()


def _response(status: bytes, payload: bytes) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\nX-Request-Id: req_bench\r\n\r\n"
        + payload
    )


SENT_RESPONSE = _response(b"201 Created", SENT)
TWILIO_RESPONSE = _response(b"201 Created", TWILIO)
TELNYX_RESPONSE = _response(b"200 OK", TELNYX)
MESSAGE_RESPONSE = _response(b"200 OK", MESSAGE)


class Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = end + 4 + length
            if len(self.buffer) < total:
                break
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            line = head.split(b"\r\n", 1)[0]
            if head.startswith(b"GET "):
                out.append(MESSAGE_RESPONSE)
            elif b" /v1/sms/batch " in line:
                out.append(_response(b"201 Created", _batch(body)))
            elif b"/Messages.json " in line:
                out.append(TWILIO_RESPONSE)
            elif b" /v2/messages " in line:
                out.append(TELNYX_RESPONSE)
            else:
                out.append(SENT_RESPONSE)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Protocol, "127.0.0.1", port, backlog=4096)
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
