"""What only the blocking face has to get right: threads, exit, fork, Ctrl-C, loops."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ovo_async import OVOClient, OVOError, SentMessage

from .conftest import API_KEY, default_sigint, sent_json
from .loopback import Reply, ScriptedServer, scripted_server

TO = "+14155550123"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server(Reply(201, sent_json())) as s:
        yield s


def runtime_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ovo-async-runtime"]


def run_script(code: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_eight_threads_share_one_client(server: ScriptedServer) -> None:
    with OVOClient(api_key=API_KEY, base_url=server.url) as client:

        def work(n: int) -> list[SentMessage]:
            return [client.sms.send(to=TO, from_="OVO", message=f"{n}-{i}") for i in range(50)]

        with ThreadPoolExecutor(8) as pool:
            results = [m for batch in pool.map(work, range(8)) for m in batch]
    assert len(results) == 400
    assert server.count == 400
    keys = {r.headers["idempotency-key"] for r in server.received}
    assert len(keys) == 400


def test_close_is_idempotent_and_refuses_later_calls(server: ScriptedServer) -> None:
    client = OVOClient(api_key=API_KEY, base_url=server.url)
    client.sms.send(to=TO, from_="OVO", message="Hi")
    client.close()
    client.close()
    with pytest.raises(OVOError, match="closed"):
        client.sms.send(to=TO, from_="OVO", message="Hi")
    with pytest.raises(OVOError, match="closed"), client:
        pass


def test_with_options_shares_the_loop_thread_and_pool(server: ScriptedServer) -> None:
    with OVOClient(api_key=API_KEY, base_url=server.url) as client:
        quick = client.with_options(timeout=2.0, max_retries=0)
        quick.sms.send(to=TO, from_="OVO", message="Hi")
        client.sms.send(to=TO, from_="OVO", message="Hi")
        assert quick.retry.max_retries == 0 and client.retry.max_retries == 2
        assert len(runtime_threads()) == 1
        quick.close()
        client.sms.send(to=TO, from_="OVO", message="still open")
    assert server.connections == 1


def test_construction_errors_are_immediate() -> None:
    with pytest.raises(OVOError, match="OVO_API_KEY"):
        OVOClient(api_key="")
    assert "sk_" not in repr(OVOClient(api_key=API_KEY))


def test_script_exits_promptly_without_close(server: ScriptedServer) -> None:
    started = time.monotonic()
    result = run_script(
        """
        import sys
        from ovo_async import OVOClient
        client = OVOClient(api_key="k", base_url=sys.argv[1])
        print(client.sms.send(to="+14155550123", from_="OVO", message="Hi").message_id)
        """,
        server.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sm_123"
    assert time.monotonic() - started < 5
    assert result.stderr == ""


def test_forked_child_sends_with_parents_client(server: ScriptedServer) -> None:
    result = run_script(
        """
        import os, sys
        from ovo_async import OVOClient
        client = OVOClient(api_key="k", base_url=sys.argv[1])
        client.sms.send(to="+14155550123", from_="OVO", message="parent")
        pid = os.fork()
        if pid == 0:
            try:
                client.sms.send(to="+14155550123", from_="OVO", message="child")
                os._exit(0)
            except BaseException as exc:
                print("child failed:", repr(exc), flush=True)
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        client.sms.send(to="+14155550123", from_="OVO", message="parent again")
        print("child exit", os.waitstatus_to_exitcode(status))
        """,
        server.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "child exit 0"
    messages = [r.body for r in server.received]
    assert len(messages) == 3 and any(b"child" in m for m in messages)


def test_ctrl_c_cancels_the_call_in_flight(server: ScriptedServer) -> None:
    server.default = Reply(201, sent_json(), delay=30)
    script = """
        import sys
        from ovo_async import OVOClient
        client = OVOClient(api_key="k", base_url=sys.argv[1])
        try:
            client.sms.send(to="+14155550123", from_="OVO", message="Hi")
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.stdin.read()  # stay alive, client open, until the test has looked
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=default_sigint,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        deadline = time.monotonic() + 15
        while server.count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the server's count: no event crosses processes
        assert server.count == 1
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "interrupted"
        # While the client is still open, the cancelled call has already hung up.
        assert server.hung_up.wait(5)
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


async def test_called_inside_a_running_loop_works_and_warns_once(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    import ovo_async._runtime as portal

    caplog.set_level(logging.WARNING, logger="ovo_async")
    portal._warned_inside_loop = False
    with OVOClient(api_key=API_KEY, base_url=server.url) as client:
        client.sms.send(to=TO, from_="OVO", message="one")
        client.sms.send(to=TO, from_="OVO", message="two")
    warnings = [r.getMessage() for r in caplog.records if "AsyncOVOClient" in r.getMessage()]
    assert len(warnings) == 1
    assert asyncio.get_running_loop().is_running()


def test_generated_facade_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/generate_sync.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_generator_check_catches_stale_extra_and_missing_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_sync", ROOT / "scripts/generate_sync.py"
    )
    assert spec is not None and spec.loader is not None
    generate_sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate_sync)
    files = generate_sync.generate_all()
    assert generate_sync.check(files) == []
    edited = dict(files)
    edited["sms.py"] = files["sms.py"].replace("def retrieve", "def fetch")
    assert any("generated/sms.py" in p for p in generate_sync.check(edited))
    extra = {k: v for k, v in files.items() if k != "sms.py"}
    assert any("extra file" in p for p in generate_sync.check(extra))
    missing = {**files, "more.py": "x = 1\n"}
    assert any("missing file" in p for p in generate_sync.check(missing))


def test_the_generator_refuses_a_public_method_it_cannot_translate() -> None:
    """Silently leaving a method out of the sync face would be a bug users find first."""
    import ast

    spec = importlib.util.spec_from_file_location(
        "generate_sync", Path(__file__).resolve().parent.parent / "scripts" / "generate_sync.py"
    )
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    source = ast.parse(
        "class AsyncSMS:\n"
        "    async def send(self) -> int: ...\n"
        "    def segments(self, text: str) -> int: ...\n"
    )
    with pytest.raises(SystemExit, match=r"AsyncSMS\.segments"):
        generator.generate_class(source, "AsyncSMS", "sms")
    # The same class without it translates.
    del source.body[0].body[1]  # type: ignore[attr-defined]
    lines, _ = generator.generate_class(source, "AsyncSMS", "sms")
    assert any("def send(self) -> int:" in line for line in lines)


def test_annotation_only_imports_stay_annotation_only_in_the_facade() -> None:
    """An import the async code keeps under TYPE_CHECKING (to import less) must not come
    back at run time in the generated code, nor be dropped (its annotations need it)."""
    import ast

    tree = ast.parse((ROOT / "ovo_async/_sync/sms.py").read_text())
    runtime = {
        alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    guarded = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.If)
        for sub in node.body
        if isinstance(sub, ast.ImportFrom)
        for alias in sub.names
    }
    assert "RateLimiter" in guarded and "RateLimiter" not in runtime
