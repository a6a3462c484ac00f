"""Answers too big to hold, and a server that stops reading: refused, bounded, on time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from ovo_async import APITimeoutError, AsyncOVOClient, ResponseTooLargeError, RetryPolicy

from .conftest import API_KEY

# Runs in a fresh interpreter: the peak only grows, so the growth one call causes is only
# readable in a process that did nothing big before it. VmHWM, not ru_maxrss: Linux
# carries ru_maxrss through fork and exec, so a child reports at least pytest's peak.
MEASURE = textwrap.dedent(
    """
    import asyncio, json, sys, zlib
    sys.path.insert(0, sys.argv[1])
    from tests.loopback import Reply, scripted_server
    from tests.conftest import sent_json
    from ovo_async import AsyncOVOClient, ResponseTooLargeError, RetryPolicy

    def fifty_mb():
        block = b" " * 65536
        for _ in range(50 * 1024 * 1024 // len(block)):
            yield block

    def bomb():
        # 1 GiB of zeros, gzip-compressed to about 4.5 MiB, made chunk by chunk. Level 1:
        # a third of level 9's time, and still a 230:1 bomb.
        z = zlib.compressobj(1, zlib.DEFLATED, 31)
        zeros = bytes(1024 * 1024)
        for _ in range(1024):
            out = z.compress(zeros)
            if out:
                yield out
        yield z.flush()

    def peak_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    async def main(kind):
        if kind == "big":
            reply = Reply(chunks=fifty_mb, headers={"Content-Type": "application/json"})
        else:
            # Compressed before the baseline: those ~4.5 MiB are the server's memory.
            compressed = list(bomb())
            reply = Reply(chunks=lambda: compressed, headers={"Content-Encoding": "gzip"})
        with scripted_server(Reply(200, sent_json())) as server:
            async with AsyncOVOClient(
                api_key="k", base_url=server.url, retry=RetryPolicy(max_retries=0)
            ) as client:
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
                server.queue(reply)
                before = peak_kib()
                try:
                    await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
                    outcome = "accepted"
                except ResponseTooLargeError as exc:
                    outcome = f"refused {exc.may_have_been_sent}"
                after = peak_kib()
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
        print(json.dumps({"outcome": outcome, "growth_kib": after - before}))

    asyncio.run(main(sys.argv[2]))
    """
)


@pytest.mark.parametrize("kind", ["big", "bomb"])
def test_huge_answer_is_refused_with_bounded_memory(kind: str) -> None:
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, root, kind],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "refused True"
    assert result["growth_kib"] < 20 * 1024, result


async def test_cap_applies_to_the_decoded_size() -> None:
    from .loopback import Reply, scripted_server

    payload = json.dumps({"padding": "x" * 5000}).encode()
    with scripted_server(Reply(raw=b"")) as server:
        server.queue(Reply(200, {"padding": "x" * 5000}))
        async with AsyncOVOClient(
            api_key=API_KEY, base_url=server.url, max_response_bytes=len(payload) - 1
        ) as client:
            with pytest.raises(ResponseTooLargeError) as info:
                await client.sms.send(to="+14155550123", from_="OVO", message="Hi")
    assert info.value.may_have_been_sent is True
    assert "max_response_bytes" in str(info.value)


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
async def test_write_timeout_bounds_a_post_the_server_never_reads(io_backend: str) -> None:
    """A server that accepts and then stops reading: the write phase must time out."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    huge = "x" * 20_000  # 1,000 of these: ~20 MB, far beyond the socket buffers
    messages = [{"to": "+14155550123", "from": "OVO", "message": huge}] * 1000
    try:
        async with AsyncOVOClient(
            api_key=API_KEY,
            base_url=f"http://127.0.0.1:{port}/v1",
            timeout=httpx.Timeout(1.0, write=0.2),
            retry=RetryPolicy(max_retries=0),
            io_backend=io_backend,  # type: ignore[arg-type]
        ) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError) as info:
                await client.sms.batch(messages)
            elapsed = time.monotonic() - started
    finally:
        listener.close()
    assert info.value.may_have_been_sent is True
    assert "WriteTimeout" in str(info.value)
    # The write phase's own 0.2 s, not the sum of all four (3.2 s on aiohttp in 0.2).
    assert elapsed < 2.0, elapsed
