"""Every Python block of README.md, run as a reader would paste it, against FakeOVO.

The blocks may lean on the README's own placeholders (`csv_rows()`, `record(...)`, a
`client` in scope): the test fills them. The pytest block runs as a test file of a new
project, through pytester, with the plugin as installed.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ovo_async import AsyncOVOClient
from ovo_async.testing import FakeOVO

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[tuple[int, str]]:
    text = README.read_text()
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"```python\n(.*?)```", text, re.S)
    ]


BLOCKS = python_blocks()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeOVO]:
    """A fake OVO on loopback, found through the variables the README tells people to set."""
    fake = FakeOVO()
    with fake.serve() as url:
        monkeypatch.setenv("OVO_BASE_URL", url)
        monkeypatch.setenv("OVO_API_KEY", "sk_test_readme")
        monkeypatch.chdir(tmp_path)  # blocks may write files (a journal)
        yield fake


def placeholders(fake: FakeOVO, seen: list[Any]) -> dict[str, Any]:
    def csv_rows() -> list[SimpleNamespace]:
        return [SimpleNamespace(phone=f"+1415555{i:04d}", name=f"N{i}") for i in range(250)]

    def recipients() -> Iterator[dict[str, str]]:
        for row in csv_rows():
            yield {"to": row.phone, "message": f"Hi {row.name}, your order shipped"}

    return {
        "csv_rows": csv_rows,
        "recipients": recipients,
        "log_failure": lambda *args: seen.append(("failure", args)),
        "record": lambda *args: seen.append(("record", args)),
        "record_status": lambda *args, **kw: seen.append(("status", args, kw)),
        "number": "+14155550123",
        "text": "Your code is 1234",
        "order_id": "order-1",
    }


def run_block(source: str, namespace: dict[str, Any]) -> None:
    """Run a block; one with top-level `await` or `async with` runs as a coroutine."""
    code = compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):

        async def main() -> None:
            if "client" not in namespace:
                namespace["client"] = AsyncOVOClient()
            await result

        asyncio.run(main())


@pytest.mark.parametrize(
    ("line", "source"),
    [pytest.param(n, s, id=f"README.md:{n}") for n, s in BLOCKS if "def test_" not in s],
)
def test_readme_block_runs(served: FakeOVO, line: int, source: str) -> None:
    seen: list[Any] = []
    namespace = {"__name__": "__readme__", **placeholders(served, seen)}
    if "await " in source and "async def" not in source:
        # A fragment shown inside async code: give it the client it talks about.
        namespace["client"] = AsyncOVOClient()
    run_block(source, namespace)
    if "parse_status_callback" in source:
        handler = namespace["ovo_status"]
        assert handler(b"{not json") == 400
        assert handler(served_message_body(served)) == 204
        assert seen and seen[-1][0] == "status"
    if "send_many" in source:
        # Every input got an outcome, and the fake stored each message once.
        assert len(served.messages) == 250


def served_message_body(fake: FakeOVO) -> bytes:
    import json

    from ovo_async import OVOClient

    with OVOClient(transport=fake.transport()) as client:
        sent = client.sms.send(to="+14155550123", from_="Shop", message="Hi")
    return json.dumps(fake.message(sent.message_id)).encode()


def test_readme_pytest_block_passes_in_a_new_project(pytester: pytest.Pytester) -> None:
    """Pasted into a project of its own, with only the installed plugin."""
    (source,) = [s for _, s in BLOCKS if "def test_" in s]
    pytester.makepyfile(test_pasted=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-v")
    outcomes = result.parseoutcomes()
    # Three tests; the async one runs once per installed backend (asyncio, trio).
    assert outcomes.get("passed", 0) >= 3 and set(outcomes) == {"passed"}, outcomes
    # The 429 with Retry-After: 30 was retried without waiting.
    assert result.duration < 20
