"""Send-once at the edges of a campaign (DESIGN 7.0): a resume while the server is down,
a journal reused by another campaign, a message changed under a recorded key."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovo_async import AsyncOVOClient, OVOError, RetryPolicy, ValidationError
from ovo_async.testing import FakeOVO

from .conftest import untraced_env
from .test_journal import client_for, dead_url, numbered, run

ROOT = Path(__file__).resolve().parent.parent
RESEND = RetryPolicy(
    retry_non_idempotent=True, max_retries=1, initial_backoff=0.001, max_backoff=0.002
)

#: A campaign in batches of 50, four in flight, killed by the test while the server
#: holds its answers.
CAMPAIGN = textwrap.dedent(
    """
    import asyncio, json, sys
    from ovo_async import AsyncOVOClient, RetryPolicy
    url, journal, todo = sys.argv[1:4]

    async def main():
        policy = RetryPolicy(retry_non_idempotent=True)
        async with AsyncOVOClient(
            api_key="k", base_url=url, retry=policy, default_from="OVO", timeout=60
        ) as client:
            run = client.sms.send_many(
                json.loads(open(todo).read()), journal=journal, idempotency_prefix="camp",
                batch_size=50, concurrency=4,
            )
            async for _ in run:
                pass

    asyncio.run(main())
    """
)


def kill_with_four_batches_in_flight(
    fake: FakeOVO, url: str, journal: Path, items: list[Any], todo: Path
) -> None:
    """Run the campaign in a process of its own and `kill -9` it once the server has
    acted on four batches of 50, none of them answered."""
    todo.write_text(json.dumps(items))
    proc = subprocess.Popen(
        [sys.executable, "-c", CAMPAIGN, url, str(journal), str(todo)],
        cwd=ROOT,
        env=untraced_env(),
    )
    try:
        fake.wait_for_messages(200, timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def slow_fake() -> Iterator[tuple[FakeOVO, str]]:
    """A served fake that acts on each request at once and answers it much later."""
    fake = FakeOVO(latency=2)
    with fake.serve() as base_url:
        yield fake, base_url


async def test_a_resume_while_the_server_is_down_keeps_in_flight_requests_unknown(
    slow_fake: tuple[FakeOVO, str], tmp_path: Path
) -> None:
    fake, url = slow_fake
    items = numbered(300)
    journal = tmp_path / "j.sqlite"
    kill_with_four_batches_in_flight(fake, url, journal, items, tmp_path / "todo.json")
    fake.latency = 0
    # The server finishes the killed run's requests (it keeps each key busy till then).
    fake.wait_for_requests(4, timeout=30)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        first_keys = {k for (k,) in db.execute("SELECT key FROM requests WHERE outcomes IS NULL")}
    assert len(first_keys) == 4

    # The next run starts while the server is unreachable: nothing is "failed" that may
    # have been sent, and nothing it leaves behind may be re-sent under a new key.
    shuffled = items[:]
    random.Random(5).shuffle(shuffled)
    async with AsyncOVOClient(
        api_key="k", base_url=dead_url(), retry=RESEND, default_from="OVO"
    ) as client:
        down = await run(
            client, shuffled, journal=journal, idempotency_prefix="camp", batch_size=50
        )
    assert len(down) == 300 and not any(o.ok for o in down)
    unknown = [o for o in down if o.error.may_have_been_sent]
    assert len(unknown) == 200
    assert {o.error.idempotency_key for o in unknown} == first_keys

    # Back up: the in-flight batches go again with their own keys and bodies (the server
    # replays them), the rest once each, in new batches.
    random.Random(6).shuffle(shuffled)
    async with AsyncOVOClient(
        api_key="k", base_url=url, retry=RESEND, default_from="OVO"
    ) as client:
        up = await run(client, shuffled, journal=journal, idempotency_prefix="camp", batch_size=50)
    assert all(o.ok for o in up), [str(o.error) for o in up if not o.ok][:3]
    assert sum(o.replayed for o in up) == 200
    stored = Counter(m["message"] for m in fake.messages)
    assert len(stored) == 300 and max(stored.values()) == 1, "a message was stored twice"


async def test_a_journal_refuses_a_run_of_another_campaign(tmp_path: Path) -> None:
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    async with client_for(fake) as client:
        await run(client, numbered(5), journal=journal, idempotency_prefix="spring")
        before = len(fake.requests)
        for other in ("summer", None):
            with pytest.raises(OVOError, match="belongs to the campaign") as info:
                await run(client, numbered(5), journal=journal, idempotency_prefix=other)
            assert "spring" in str(info.value)
        assert len(fake.requests) == before, "a refused run sent something"
        again = await run(client, numbered(5), journal=journal, idempotency_prefix="spring")
    assert all(o.replayed for o in again)


async def test_a_journal_without_a_prefix_belongs_to_runs_without_one(tmp_path: Path) -> None:
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    async with client_for(fake) as client:
        await run(client, numbered(3), journal=journal)
        with pytest.raises(OVOError, match="belongs to the campaign with idempotency_prefix None"):
            await run(client, numbered(3), journal=journal, idempotency_prefix="new")
        assert all(o.replayed for o in await run(client, numbered(3), journal=journal))


async def test_a_message_changed_under_a_recorded_key_is_neither_sent_nor_sent(
    tmp_path: Path,
) -> None:
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"

    def by_customer(item: Any) -> str:
        return str(item["to"][-4:])

    options: dict[str, Any] = {
        "journal": journal,
        "idempotency_prefix": "camp",
        "key": by_customer,
        "batch_size": 2,
    }
    async with client_for(fake) as client:
        await run(client, numbered(4), **options)
        before = len(fake.requests)
        changed = [dict(item) for item in numbered(4)]
        changed[1]["message"] = "a new offer"
        outcomes = sorted(await run(client, changed, **options), key=lambda o: o.index)
    assert len(fake.requests) == before
    assert [o.ok for o in outcomes] == [True, False, True, True]
    bad = outcomes[1]
    assert isinstance(bad.error, ValidationError) and bad.error.field == "key"
    assert repr(by_customer(changed[1])) in str(bad.error)
    assert bad.message is None and not bad.error.may_have_been_sent


async def test_keys_of_a_journal_from_0_2_keep_working(tmp_path: Path) -> None:
    """A schema-2 journal (0.2) opens, takes the running campaign and keeps its replays."""
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    async with client_for(fake) as client:
        await run(client, numbered(4), journal=journal, idempotency_prefix="old")
    db = sqlite3.connect(journal)
    db.execute("UPDATE meta SET v = '2' WHERE k = 'schema'")
    db.execute("DELETE FROM meta WHERE k = 'campaign'")
    db.commit()
    db.close()
    async with client_for(fake) as client:
        again = await run(client, numbered(4), journal=journal, idempotency_prefix="old")
        assert all(o.replayed for o in again)
        with pytest.raises(OVOError, match="belongs to the campaign"):
            await run(client, numbered(4), journal=journal, idempotency_prefix="other")
