"""One runtime per process: threads, garbage collection, fork, event loops, exit, TLS."""

from __future__ import annotations

import asyncio
import gc
import json
import pickle
import sqlite3
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ovo_async import (
    APIConnectionError,
    AsyncOVOClient,
    OVOClient,
    OVOError,
    SentMessage,
    ValidationError,
)
from ovo_async._runtime import RUNTIME
from ovo_async.testing import FakeOVO

from .conftest import API_KEY, sent_json
from .loopback import Received, Reply, ScriptedServer, scripted_server
from .test_cancel import client_sockets_to

TO = "+14155550123"
ROOT = Path(__file__).resolve().parent.parent


def echo(received: Received) -> Reply:
    """Answers each send with a message id naming its text: whose answer is whose."""
    text = json.loads(received.body)["message"]
    return Reply(201, sent_json(message_id=f"sm_{text}"))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as s:
        s.responder = echo
        yield s


def port_of(server: ScriptedServer) -> int:
    return int(server.url.split(":")[2].split("/")[0])


def run_script(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )


def test_twenty_dropped_clients_share_one_thread_and_release_their_pools(
    server: ScriptedServer,
) -> None:
    for i in range(20):
        client = OVOClient(api_key=API_KEY, base_url=server.url)
        assert client.sms.send(to=TO, from_="OVO", message=f"m{i}").message_id == f"sm_m{i}"
        del client
    gc.collect()
    for closing in list(RUNTIME._closing):  # the closes the finalizers started
        closing.result(5)
    threads = [t for t in threading.enumerate() if t.name.startswith("ovo-async")]
    assert len(threads) <= 1
    assert client_sockets_to(port_of(server)) == 0
    assert server.connections == 20


def test_a_forked_child_uses_its_own_connections_even_through_with_options(
    server: ScriptedServer,
) -> None:
    result = run_script(
        """
        import os, sys
        from ovo_async import OVOClient
        client = OVOClient(api_key="k", base_url=sys.argv[1])
        quick = client.with_options(timeout=5, max_retries=0)
        assert client.sms.send(to="+14155550123", from_="OVO", message="p1").message_id == "sm_p1"
        assert quick.sms.send(to="+14155550123", from_="OVO", message="p2").message_id == "sm_p2"
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(5):  # a derived client first: it once kept the parent's sockets
                    got = quick.sms.send(to="+14155550123", from_="OVO", message=f"c{i}")
                    assert got.message_id == f"sm_c{i}", got
                later = client.with_options(max_retries=1)
                got = later.sms.send(to="+14155550123", from_="OVO", message="c9")
                assert got.message_id == "sm_c9", got
                os._exit(0)
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert client.sms.send(to="+14155550123", from_="OVO", message="p3").message_id == "sm_p3"
        print("child exit", os.waitstatus_to_exitcode(status))
        """,
        server.url,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip() == "child exit 0"
    assert server.count == 9
    # The parent's one connection, then the child's own: never the parent's socket.
    assert server.connections == 2


@pytest.mark.parametrize("owned_by_caller", ["transport", "http_client"])
def test_a_forked_child_refuses_a_callers_transport_before_sending(
    server: ScriptedServer, owned_by_caller: str
) -> None:
    result = run_script(
        """
        import os, sys, httpx
        from ovo_async import OVOClient, OVOError
        kind = sys.argv[2]
        if kind == "transport":
            own = {"transport": httpx.AsyncHTTPTransport()}
        else:
            own = {"http_client": httpx.AsyncClient()}
        client = OVOClient(api_key="k", base_url=sys.argv[1], **own)
        client.sms.send(to="+14155550123", from_="OVO", message="parent")
        pid = os.fork()
        if pid == 0:
            try:
                client.sms.send(to="+14155550123", from_="OVO", message="child")
            except OVOError as exc:
                print("refused:", exc, flush=True)
                os._exit(0)
            except BaseException as exc:
                print("wrong error:", repr(exc), flush=True)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        client.sms.send(to="+14155550123", from_="OVO", message="parent again")
        print("child exit", os.waitstatus_to_exitcode(status))
        """,
        server.url,
        owned_by_caller,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "build the client after fork" in result.stdout.lower()
    assert result.stdout.strip().endswith("child exit 0")
    assert [json.loads(r.body)["message"] for r in server.received] == ["parent", "parent again"]


def test_one_async_client_across_two_asyncio_runs(server: ScriptedServer) -> None:
    client = AsyncOVOClient(api_key=API_KEY, base_url=server.url)

    async def send(text: str) -> SentMessage:
        return await client.sms.send(to=TO, from_="OVO", message=text)

    assert asyncio.run(send("first")).message_id == "sm_first"
    # The run is over: its connection is closed with it, not left to the garbage
    # collector (an unclosed-socket warning, and a descriptor held till then).
    assert client_sockets_to(port_of(server)) == 0
    assert asyncio.run(send("second")).message_id == "sm_second"
    assert client_sockets_to(port_of(server)) == 0
    asyncio.run(client.aclose())


def test_one_async_client_across_two_trio_runs(server: ScriptedServer) -> None:
    client = AsyncOVOClient(api_key=API_KEY, base_url=server.url)

    async def send(text: str) -> None:
        sent = await client.sms.send(to=TO, from_="OVO", message=text)
        assert sent.message_id == f"sm_{text}"

    trio.run(send, "first")
    assert client_sockets_to(port_of(server)) == 0
    trio.run(send, "second")
    assert client_sockets_to(port_of(server)) == 0
    trio.run(client.aclose)


def test_a_client_still_in_use_keeps_its_connection_between_calls(server: ScriptedServer) -> None:
    async def main() -> None:
        async with AsyncOVOClient(api_key=API_KEY, base_url=server.url) as client:
            await client.sms.send(to=TO, from_="OVO", message="first")
            await client.sms.send(to=TO, from_="OVO", message="second")
            assert client_sockets_to(port_of(server)) == 1

    asyncio.run(main())
    assert server.connections == 1


def test_clients_refuse_to_be_pickled() -> None:
    async_client = AsyncOVOClient(api_key=API_KEY)
    sync_client = OVOClient(api_key=API_KEY)
    for client in (
        async_client,
        async_client.with_options(timeout=1),
        sync_client,
        sync_client.with_options(timeout=1),
    ):
        with pytest.raises(TypeError, match="one client per process"):
            pickle.dumps(client)
    sync_client.close()


def test_threads_racing_close_get_results_or_ovo_errors(server: ScriptedServer) -> None:
    server.responder = None
    server.default = Reply(201, sent_json(), delay=0.01)
    client = OVOClient(api_key=API_KEY, base_url=server.url)
    client.sms.send(to=TO, from_="OVO", message="warm")
    started = threading.Barrier(9)
    outcomes: list[Any] = []

    def caller() -> None:
        started.wait()
        for _ in range(30):
            try:
                outcomes.append(client.sms.send(to=TO, from_="OVO", message="Hi"))
            except BaseException as exc:
                outcomes.append(exc)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(caller) for _ in range(8)]
        started.wait()
        client.close()
        for future in futures:
            future.result()
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(outcomes) == 240
    assert errors, "close() should have cut some calls short"
    assert all(isinstance(e, OVOError) for e in errors), {type(e) for e in errors}
    assert all("closed" in str(e) for e in errors)


def test_blocking_send_many_reads_a_sqlite_cursor_on_the_callers_thread() -> None:
    db = sqlite3.connect(":memory:")  # usable only on this thread
    db.execute("create table r (phone text, name text)")
    db.executemany(
        "insert into r values (?, ?)", [(f"+1415555{i:04d}", f"n{i}") for i in range(250)]
    )
    rows = db.execute("select phone, name from r")
    fake = FakeOVO()
    with OVOClient(api_key=API_KEY, transport=fake.transport(), default_from="OVO") as client:
        for batch_size in (50, None):
            rows = db.execute("select phone, name from r")
            messages = ({"to": phone, "message": f"Hi {name}"} for phone, name in rows)
            with client.sms.send_many(messages, batch_size=batch_size) as run:
                outcomes = list(run)
            assert sorted(o.index for o in outcomes) == list(range(250))
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    db.close()  # left to the GC, 3.13 warns about it in whichever test runs next
    assert len(fake.messages) == 500


def test_blocking_send_many_stops_reading_when_closed_early() -> None:
    taken = 0

    def source() -> Iterator[dict[str, str]]:
        nonlocal taken
        for i in range(1_000_000):
            taken += 1
            yield {"to": f"+1415{i:07d}", "message": "Hi"}

    fake = FakeOVO()
    with (
        OVOClient(api_key=API_KEY, transport=fake.transport(), default_from="OVO") as c,
        c.sms.send_many(source(), batch_size=20, concurrency=2) as run,
    ):
        for n, _ in enumerate(run):
            if n == 50:
                break
    assert taken <= 200


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[ScriptedServer, str]]:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    with (
        scripted_server(Reply(201, sent_json()), tls=context) as server,
        ca.cert_pem.tempfile() as ca_path,
    ):
        yield server, ca_path


def test_verify_with_a_ca_file_works_and_default_verification_refuses(
    tls_server: tuple[ScriptedServer, str],
) -> None:
    server, ca_path = tls_server
    with OVOClient(api_key=API_KEY, base_url=server.url, verify=ca_path) as client:
        assert client.sms.send(to=TO, from_="OVO", message="Hi").message_id == "sm_123"
    before = server.count
    with (
        OVOClient(api_key=API_KEY, base_url=server.url, max_retries=0) as client,
        pytest.raises(APIConnectionError) as info,
    ):
        client.sms.send(to=TO, from_="OVO", message="Hi")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert info.value.may_have_been_sent is False
    assert server.count == before
    context = ssl.create_default_context(cafile=ca_path)
    with OVOClient(api_key=API_KEY, base_url=server.url, verify=context) as client:
        client.sms.send(to=TO, from_="OVO", message="Hi")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"verify": "/no/such/ca.pem"}, "verify"),
        ({"verify": 3}, "verify"),
        ({"cert": "/no/such/cert.pem"}, "cert"),
        ({"cert": ("a", "b", "c", "d")}, "cert"),
        ({"proxy": "ftp://[bad"}, "proxy"),
    ],
)
def test_tls_and_proxy_options_are_checked(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AsyncOVOClient(api_key=API_KEY, **options)
    assert info.value.field == field


@pytest.mark.parametrize("io_backend", ["httpx", "aiohttp"])
def test_a_socks_proxy_without_socksio_names_the_extra(
    io_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # httpx would raise a bare ImportError naming httpx's own extra.
    monkeypatch.setitem(sys.modules, "socksio", None)
    with pytest.raises(OVOError, match=r"ovo-async\[socks\]"):
        AsyncOVOClient(
            api_key=API_KEY,
            proxy="socks5://127.0.0.1:1080",
            io_backend=io_backend,  # type: ignore[arg-type]
        )


def test_tls_options_are_for_the_sdks_own_pool() -> None:
    with pytest.raises(OVOError, match="own pool"):
        AsyncOVOClient(api_key=API_KEY, verify=False, transport=httpx.AsyncHTTPTransport())


def test_explicit_proxy_carries_the_requests(server: ScriptedServer) -> None:
    """An HTTP proxy on loopback (the scripted server acting as one) sees the request."""
    with OVOClient(
        api_key=API_KEY, base_url="http://127.0.0.2:9/v1", proxy=server.url.rsplit("/", 1)[0]
    ) as client:
        client.sms.send(to=TO, from_="OVO", message="via-proxy")
    assert server.received[0].path == "http://127.0.0.2:9/v1/sms/send"


@pytest.mark.parametrize("io_backend", ["aiohttp", "httpx"])
def test_exit_with_unclosed_clients_prints_nothing(server: ScriptedServer, io_backend: str) -> None:
    result = run_script(
        """
        import sys
        from ovo_async import OVOClient
        clients = [OVOClient(api_key="k", base_url=sys.argv[1], io_backend=sys.argv[2])
                   for _ in range(3)]
        for c in clients:
            c.sms.send(to="+14155550123", from_="OVO", message="bye")
        dropped = OVOClient(api_key="k", base_url=sys.argv[1], io_backend=sys.argv[2])
        dropped.sms.send(to="+14155550123", from_="OVO", message="dropped")
        del dropped
        print("done")
        """,
        server.url,
        io_backend,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


def test_exit_waits_for_nothing_when_unused() -> None:
    result = run_script(
        """
        from ovo_async import OVOClient
        OVOClient(api_key="k")
        print(__import__("os").getpid() > 0)
        """
    )
    assert (result.returncode, result.stdout.strip(), result.stderr) == (0, "True", "")


def test_forking_without_using_the_client_is_fine(server: ScriptedServer) -> None:
    result = run_script(
        """
        import os, sys
        from ovo_async import OVOClient
        client = OVOClient(api_key="k", base_url=sys.argv[1])
        pid = os.fork()
        if pid == 0:
            client.sms.send(to="+14155550123", from_="OVO", message="child")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        server.url,
    )
    assert result.stdout.strip() == "0", result.stderr
