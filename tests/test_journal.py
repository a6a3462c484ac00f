"""Resumable campaigns: kill -9 at random moments, re-run on what is left, nothing twice."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovo_async import (
    AsyncOVOClient,
    InternalServerError,
    OVOError,
    RateLimitError,
    RetryPolicy,
    SMSRequest,
    ValidationError,
)
from ovo_async._journal import Journal, Taken, error_from_json, error_to_json
from ovo_async.testing import FakeOVO

from .conftest import run_python, untraced_env

ROOT = Path(__file__).resolve().parent.parent

CAMPAIGN = textwrap.dedent(
    """
    import asyncio, json, sys
    from ovo_async import AsyncOVOClient, RetryPolicy
    url, journal, results, todo, resend = sys.argv[1:6]
    rows = json.loads(open(todo).read())
    policy = RetryPolicy(
        retry_non_idempotent=resend == "1", initial_backoff=0.01, max_backoff=0.05
    )

    async def main():
        async with AsyncOVOClient(
            api_key="k", base_url=url, retry=policy, default_from="OVO"
        ) as client:
            items = [{"to": r["to"], "message": r["message"]} for r in rows]
            run = client.sms.send_many(
                items, journal=journal, idempotency_prefix="camp", concurrency=4
            )
            with open(results, "a") as out:
                async for o in run:
                    err = o.error
                    out.write(json.dumps({
                        "row": rows[o.index]["row"],
                        "ok": o.ok,
                        "replayed": o.replayed,
                        "unknown": bool(err is not None and err.may_have_been_sent),
                    }) + "\\n")
                    out.flush()

    asyncio.run(main())
    """
)


def campaign_rows(n: int) -> list[dict[str, Any]]:
    return [
        {"row": i, "to": f"+1415{i:07d}", "message": f"Row {i}: your order shipped"}
        for i in range(n)
    ]


def count_results(path: Path) -> int:
    """Lines written so far: cheap, because the fake server shares this process's GIL."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut short by kill -9
            lines.append(json.loads(line))
    return lines


def finished(path: Path, resend: bool) -> set[int]:
    """Rows whose last outcome needs no re-run: sent, or unknown where nothing is re-sent
    (with re-sends on, an unknown row is run again: its request is re-sent, same key)."""
    latest = {r["row"]: r for r in read_results(path)}
    return {row for row, r in latest.items() if r["ok"] or (r["unknown"] and not resend)}


def dead_url() -> str:
    """A loopback URL nothing listens on: every connect is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def served() -> Iterator[tuple[FakeOVO, str]]:
    fake = FakeOVO(latency=0.05)
    with fake.serve() as base_url:
        yield fake, base_url


@pytest.mark.parametrize("resend", [True, False], ids=["retry_non_idempotent", "safe_default"])
def test_kill_nine_at_random_moments_then_resume(
    served: tuple[FakeOVO, str], tmp_path: Path, resend: bool
) -> None:
    fake, url = served
    rng = random.Random(11 if resend else 12)
    rows = campaign_rows(5000)
    journal, results, todo = tmp_path / "j.sqlite", tmp_path / "results.jsonl", tmp_path / "todo"
    first_request = len(fake.requests)
    kills = 0
    server_was_down = False
    while True:
        done = finished(results, resend)
        left = [r for r in rows if r["row"] not in done]
        rng.shuffle(left)  # the natural resume: what the results file lacks, in any order
        todo.write_text(json.dumps(left))
        # Once, after a few kills, a resume runs while the server is down: what was in
        # flight stays unknown (never "failed"), and nothing is sent under new keys.
        down = kills == 3 and not server_was_down
        server_was_down |= down
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                CAMPAIGN,
                dead_url() if down else url,
                str(journal),
                str(results),
                str(todo),
                "1" if resend else "0",
            ],
            cwd=ROOT,
            env=untraced_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if down:
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                continue
            if kills < 10 and len(left) > 1:
                # Kill after a random number of new outcomes, plus a random few ms, so the
                # kill lands while requests are in flight, being recorded or settled.
                target = count_results(results) + rng.randint(1, min(400, len(left) - 1))
                while count_results(results) < target and proc.poll() is None:
                    time.sleep(0.01)  # polling a file another process writes
                time.sleep(rng.uniform(0, 0.03))
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                # A run that ended by itself must have ended well (else this loops forever).
                assert proc.wait(30) in (0, -signal.SIGKILL), proc.stderr and proc.stderr.read()
                continue
            assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
            break
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
    assert kills >= 8  # a run may finish before its kill lands; most do not
    assert server_was_down

    # Every row's last outcome is final: sent, or (without re-sends) unknown.
    latest = {r["row"]: r for r in read_results(results)}
    outcomes = list(latest.values())
    assert set(latest) == {r["row"] for r in rows}
    assert set(finished(results, resend)) == set(latest)
    stored = Counter(m["message"] for m in fake.messages if m["message"].startswith("Row "))
    assert max(stored.values()) == 1, "a message was stored twice"
    book = Journal(journal)
    try:
        states = book.tally()
    finally:
        book.close()
    assert sum(states.values()) == 5000  # one final outcome per input...
    assert "in_flight" not in states  # ...and none left in flight
    sent_keys = [r.idempotency_key for r in fake.requests[first_request:]]
    assert all(k and k.startswith("camp-") for k in sent_keys)
    # Another campaign on the same journal file is refused before it sends anything.
    before = len(fake.requests)
    other = run_python(
        CAMPAIGN.replace('"camp"', '"other"'),
        *(url, str(journal), str(tmp_path / "other.jsonl"), str(todo), "1" if resend else "0"),
    )
    assert other.returncode == 1 and "belongs to the campaign" in other.stderr
    assert len(fake.requests) == before
    if resend:
        assert states == {"accepted": 5000}
        assert len(stored) == 5000
    else:
        # What was in flight at a kill is reported as unknown and never sent again.
        assert states.get("unknown", 0) > 0
        assert states.get("accepted", 0) + states.get("unknown", 0) == 5000
        unknown_rows = {r["row"] for r in outcomes if r["unknown"]}
        assert len(unknown_rows) == states["unknown"]
        assert len(stored) >= states["accepted"]


# --- the journal's rules, one at a time, in process -------------------------------------


def numbered(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"to": f"+1415{i:07d}", "message": f"Hello {i}"} for i in range(start, start + n)]


async def run(client: AsyncOVOClient, items: Any, **options: Any) -> list[Any]:
    return [o async for o in client.sms.send_many(items, **options)]


def client_for(fake: FakeOVO, **options: Any) -> AsyncOVOClient:
    options.setdefault("retry", RetryPolicy(max_retries=0))
    return AsyncOVOClient(api_key="k", transport=fake.transport(), default_from="OVO", **options)


async def test_accepted_messages_are_replayed_not_sent(tmp_path: Path) -> None:
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    async with client_for(fake) as client:
        first = await run(client, numbered(30), journal=journal, batch_size=10)
        again = await run(client, numbered(30)[::-1], journal=journal, batch_size=10)
    assert all(o.ok and not o.replayed for o in first)
    assert all(o.ok and o.replayed for o in again)
    assert len(fake.messages) == 30
    ids = {o.request.message: o.message.message_id for o in first}
    assert {o.request.message: o.message.message_id for o in again} == ids


@pytest.mark.parametrize("batch_size", [None, 2])
async def test_equal_messages_are_counted_by_occurrence(tmp_path: Path, batch_size: Any) -> None:
    """Two equal inputs are two messages; a re-run in another order replays both."""
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    a, b = {"to": "+14155550001", "message": "same"}, {"to": "+14155550002", "message": "b"}
    async with client_for(fake) as client:
        first = await run(client, [a, a, b], journal=journal, batch_size=batch_size)
        again = await run(client, [b, a, a], journal=journal, batch_size=batch_size)
        partial = await run(client, [a, b], journal=journal, batch_size=batch_size)
    assert all(o.ok and not o.replayed for o in first)
    assert all(o.ok and o.replayed for o in again + partial)
    assert Counter(m["message"] for m in fake.messages) == {"same": 2, "b": 1}
    first_ids = sorted(o.message.message_id for o in first if o.message)
    assert sorted(o.message.message_id for o in again if o.message) == first_ids


async def test_provably_unsent_failures_are_sent_again(tmp_path: Path) -> None:
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    fake.fail_next("send", 3, status=400)  # refused: provably not sent
    fake.fail_next("send", 2, status=500)  # unknown fate
    async with client_for(fake) as client:
        first = await run(client, numbered(10), journal=journal, batch_size=None, concurrency=1)
        again = await run(client, numbered(10), journal=journal, batch_size=None, concurrency=1)
    assert sum(not o.ok for o in first) == 5
    resent = [o for o in again if not o.replayed]
    assert len(resent) == 3 and all(o.ok for o in resent)
    unknown = [o for o in again if o.replayed and not o.ok]
    assert len(unknown) == 2
    assert all(isinstance(o.error, InternalServerError) for o in unknown)
    assert all(o.error.may_have_been_sent and o.error.idempotency_key for o in unknown)


async def test_in_flight_requests_are_resent_identically_first(tmp_path: Path) -> None:
    """A request recorded but never settled (the process died) goes again, same key, same
    body, before any new input; without retry_non_idempotent it is reported unknown."""
    journal = tmp_path / "j.sqlite"
    fake = FakeOVO()
    async with client_for(fake) as client:
        await run(client, numbered(5), journal=journal, batch_size=5, idempotency_prefix="p")
    db = sqlite3.connect(journal)
    # Forge what a kill between record and answer leaves: the request back in flight.
    key, body = fake.requests[-1].idempotency_key, fake.requests[-1].body
    rows = [[m["to"], m["from"], m["message"], None] for m in body["messages"]]
    assert db.execute("SELECT key FROM requests").fetchall() == [(key,)]
    db.execute("UPDATE requests SET outcomes = NULL, body = ?", (json.dumps(rows),))
    db.commit()
    db.close()
    before = len(fake.requests)
    resend = RetryPolicy(max_retries=0, retry_non_idempotent=True)
    async with client_for(fake, retry=resend) as client:
        outcomes = await run(
            client, numbered(7), journal=journal, batch_size=5, idempotency_prefix="p"
        )
    first_again = fake.requests[before]
    assert (first_again.idempotency_key, first_again.body) == (key, body)
    assert len(fake.messages) == 7  # the fake replayed the key: no second copy
    assert sorted(o.replayed for o in outcomes) == [False] * 2 + [True] * 5
    assert all(o.ok for o in outcomes)


async def test_caller_keys_name_messages_and_duplicates_are_refused(tmp_path: Path) -> None:
    fake = FakeOVO()
    items = [
        {"id": "a", "to": "+14155550001", "message": "x"},
        {"id": "b", "to": "+14155550002", "message": "y"},
        {"id": "a", "to": "+14155550003", "message": "z"},
    ]
    requests = [SMSRequest(to=i["to"], message=i["message"]) for i in items]
    ids = {r.to: i["id"] for r, i in zip(requests, items, strict=True)}

    def key(item: Any) -> str:
        return ids[item.to]

    for journal in (None, tmp_path / "j.sqlite"):
        async with client_for(fake) as client:
            outcomes = await run(
                client,
                requests,
                key=key,
                batch_size=None,
                concurrency=1,
                idempotency_prefix="k",
                journal=journal,
            )
        bad = [o for o in outcomes if not o.ok and not o.replayed]
        assert len(bad) == 1 and isinstance(bad[0].error, ValidationError)
        assert bad[0].error.field == "key"
    assert {r.idempotency_key for r in fake.requests} == {"k-a", "k-b"}


async def test_bad_caller_keys_are_outcomes_not_crashes() -> None:
    fake = FakeOVO()

    def key(item: Any) -> Any:
        if item["message"] == "boom":
            raise RuntimeError("no id")
        bad = {"newline": "a\nb", "long": "x" * 500, "int": 3, "space": "42 "}
        return bad.get(item["message"], "fine")

    kinds = ("boom", "newline", "long", "int", "space", "ok")
    items = [{"to": "+14155550001", "message": m} for m in kinds]
    async with client_for(fake) as client:
        outcomes = await run(client, items, key=key, idempotency_prefix="p", batch_size=None)
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4, 5]
    assert [o.ok for o in sorted(outcomes, key=lambda o: o.index)] == [False] * 5 + [True]


async def test_a_journal_serves_one_run_at_a_time(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    fake = FakeOVO(latency=0.2)
    async with (
        client_for(fake) as client,
        client.sms.send_many(numbered(3), journal=journal) as first,
    ):
        await first.__anext__()  # the first run holds the journal
        with pytest.raises(OVOError, match="in use by another run"):
            await run(client, numbered(3), journal=journal)


@pytest.mark.parametrize("content", [b"not a database at all" * 100, b""])
async def test_a_broken_journal_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    journal = tmp_path / "j.sqlite"
    journal.write_bytes(content)
    async with client_for(FakeOVO()) as client:
        if content:
            with pytest.raises(OVOError, match="cannot use"):
                await run(client, numbered(2), journal=journal)
        else:  # an empty file is a new journal
            assert len(await run(client, numbered(2), journal=journal)) == 2
    # Nothing is left open on it, refused or not (a long-lived worker would leak fds).
    assert not [p for p in open_files() if p.startswith(str(journal))]


def open_files() -> list[str]:
    """What this process has open (Linux), by path."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        # The directory listing's own fd is closed by now.
        with contextlib.suppress(FileNotFoundError):
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
    return paths


def test_errors_round_trip_through_the_journal_without_pickle() -> None:
    error = RateLimitError.__new__(RateLimitError)
    Exception.__init__(error, "429 slow down")
    error.__dict__.update(status_code=429, retry_after=2.0, message="slow down", code="rate")
    error.may_have_been_sent, error.idempotency_key = False, "key-1"
    copy = error_from_json(error_to_json(error))
    assert type(copy) is RateLimitError and str(copy) == "429 slow down"
    assert (copy.retry_after, copy.idempotency_key) == (2.0, "key-1")
    # A tampered journal cannot name a class outside the SDK's errors.
    forged = json.dumps({"class": "os.system", "args": ["x"], "state": {}})
    assert type(error_from_json(forged)) is OVOError


async def test_a_journal_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    async with client_for(FakeOVO()) as client:
        with pytest.raises(OVOError, match="cannot use"):
            await run(client, numbered(2), journal=tmp_path / "no" / "such" / "j.sqlite")


@pytest.mark.parametrize(
    "bad",
    [
        3,
        ["j"],
        object(),
        b"j.sqlite",
        # SQLite takes these as a journal that vanishes with the run: nothing to resume.
        "",
        ":memory:",
        # os.open's ValueError / UnicodeEncodeError, not a ValidationError, came out.
        "j\x00.sqlite",
        "j\ud800.sqlite",
    ],
)
def test_journal_must_be_a_path(bad: Any) -> None:
    client = AsyncOVOClient(api_key="k")
    with pytest.raises(ValidationError) as info:
        client.sms.send_many([], journal=bad)
    assert info.value.field == "journal"


FIRST = "(SELECT min(id) FROM requests)"


@pytest.mark.parametrize(
    ("damage", "retry_non_idempotent"),
    [
        (f"UPDATE requests SET outcomes = 'not json' WHERE id = {FIRST}", False),
        (
            "UPDATE requests SET outcomes = "
            """'{"at": "2026-01-01T00:00:00Z", "ids": ["a"], "statuses": ["queued"]}' """
            f"WHERE id = {FIRST}",
            False,
        ),
        (f"UPDATE requests SET outcomes = '5' WHERE id = {FIRST}", False),
        ("UPDATE meta SET v = 'abc' WHERE k = 'run'", False),
        ("INSERT OR REPLACE INTO meta VALUES ('indexed', 'x')", False),
        (f"UPDATE requests SET outcomes = NULL, body = 'xx' WHERE id = {FIRST}", True),
        (f"UPDATE requests SET outcomes = NULL, body = '[[1, 2]]' WHERE id = {FIRST}", True),
        # What a replay reads, once a second run has indexed the messages:
        ("UPDATE messages SET outcome = 'garbage' WHERE state = 'accepted'", False),
        ("UPDATE messages SET state = 'unknown', outcome = '[1]'", False),
    ],
    ids=[
        "outcomes-not-json",
        "outcomes-too-few",
        "outcomes-not-a-list",
        "run-not-a-number",
        "indexed-not-a-number",
        "in-flight-body-not-json",
        "in-flight-body-too-few-rows",
        "accepted-outcome-garbage",
        "unknown-outcome-not-an-error",
    ],
)
async def test_a_damaged_journal_stops_the_run_before_sending(
    tmp_path: Path, damage: str, retry_non_idempotent: bool
) -> None:
    # Raw ValueError, TypeError or JSONDecodeError came out of send_many before.
    journal = tmp_path / "j.sqlite"
    fake = FakeOVO()
    policy = RetryPolicy(max_retries=0, retry_non_idempotent=retry_non_idempotent)
    async with client_for(fake, retry=policy) as client:
        await run(client, numbered(20), journal=journal, batch_size=5)
        if "messages" in damage:
            await run(client, numbered(20), journal=journal, batch_size=5)  # indexes them
        db = sqlite3.connect(journal)
        db.executescript(damage)
        db.close()
        sent = len(fake.requests)
        with pytest.raises(OVOError, match="is damaged") as info:
            await run(client, numbered(25), journal=journal, batch_size=5)
    assert str(journal) in str(info.value)
    assert len(fake.requests) == sent


async def test_a_journal_failing_mid_run_stops_the_run_with_an_ovo_error(tmp_path: Path) -> None:
    journal = tmp_path / "j.sqlite"
    fake = FakeOVO()
    async with client_for(fake) as client:
        run_ = client.sms.send_many(numbered(50), journal=journal, batch_size=10, concurrency=1)
        first = await run_.__anext__()
        assert first.ok
        # The journal breaks under the run (as with a full disk): the next write fails.
        # Through the run's own connection: the run holds the file's lock.
        engine_journal = run_._engine._journal
        assert engine_journal is not None
        engine_journal.db.execute("DROP TABLE requests")
        with pytest.raises(OVOError, match="journal"):
            async for _ in run_:
                pass
    sent = len(fake.messages)
    assert sent < 50  # it stopped rather than send unrecorded


async def test_identities_stay_exact_when_the_filter_raises_false_alarms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-run table may say "maybe seen" for a new message; the journal's exact
    answer must decide, or the next run would number the same message differently and
    send it again."""
    fake = FakeOVO()
    journal = tmp_path / "j.sqlite"
    items = numbered(40) + numbered(3)  # three real repeats among false alarms
    async with client_for(fake) as client:
        with monkeypatch.context() as tiny:
            tiny.setattr(Taken, "EXACT", 0)  # fingerprint tables from the first message
            tiny.setattr(Taken, "SLOTS", 2)  # nearly every message is a false alarm
            first = await run(client, items, journal=journal, batch_size=7)
        again = await run(client, items[::-1], journal=journal, batch_size=7)
    assert all(o.ok and not o.replayed for o in first)
    assert all(o.ok and o.replayed for o in again)
    assert len(fake.messages) == 43
    first_ids = sorted(o.message.message_id for o in first if o.message)
    assert sorted(o.message.message_id for o in again if o.message) == first_ids


def test_content_digest_is_pinned() -> None:
    """Identities are written to journals and sent as keys: a journal from an earlier
    version must resume with the same ones, so the digest never changes silently."""
    from ovo_async._journal import content_digest
    from ovo_async.models import SMSRequest

    assert (
        content_digest(SMSRequest(to="+14155550123", from_="OVO", message="Hi \u00e9"))
        == "e7d4e754df42906024870cc2"
    )
    assert (
        content_digest(
            SMSRequest(to="+14155550123", message="Hi", callback_url="https://x.example/cb")
        )
        == "db9db2030e4d5171d6464057"
    )


def test_colliding_new_messages_stay_out_of_the_exact_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct messages whose slots collide are new, numbered 0, and cost no memory
    that grows with the run; real repeats are numbered on."""
    from ovo_async._journal import content_digest
    from ovo_async.models import SMSRequest

    monkeypatch.setattr(Taken, "EXACT", 0)
    monkeypatch.setattr(Taken, "SLOTS", 64)  # 40 messages in 64 slots: many collisions
    journal = Journal(tmp_path / "j.sqlite")
    try:
        taken = Taken(journal)
        requests = [SMSRequest(to="+14155550123", message=f"m{i}") for i in range(40)]
        first = taken.identities(requests)
        assert first == [content_digest(r) + ".0" for r in requests]
        assert taken._repeats == {}  # collisions were resolved in the table
        again = taken.identities(requests[:3])
        assert again == [content_digest(r) + ".1" for r in requests[:3]]
    finally:
        journal.close()


@pytest.mark.parametrize("exact", [0, 50])
def test_repeats_are_found_in_full_tables_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: int
) -> None:
    """Past half full a table stops taking digests and the next one does: a repeat of a
    message held in an earlier table is still a repeat."""
    from ovo_async._journal import content_digest
    from ovo_async.models import SMSRequest

    monkeypatch.setattr(Taken, "EXACT", exact)
    monkeypatch.setattr(Taken, "SLOTS", 64)
    requests = [SMSRequest(to="+14155550123", message=f"m{i}") for i in range(300)]
    journal = Journal(tmp_path / "j.sqlite")
    try:
        taken = Taken(journal)
        got = []
        for start in range(0, len(requests), 20):
            got += taken.identities(requests[start : start + 20])
        assert len(taken._tables) >= 300 // (32 + 20)  # half a table, give or take a batch
        again = taken.identities(requests[:5] + requests[-5:])
    finally:
        journal.close()
    assert got == [content_digest(r) + ".0" for r in requests]
    assert again == [content_digest(r) + ".1" for r in requests[:5] + requests[-5:]]


@pytest.mark.parametrize(("exact", "slots"), [(Taken.EXACT, Taken.SLOTS), (3, 8), (0, 2)])
def test_caller_keys_are_taken_once_held_exactly_or_in_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: int, slots: int
) -> None:
    """A caller's key is refused the second time this run takes it: pending, recorded
    by the journal, before and after its digests move from the set to tables."""
    monkeypatch.setattr(Taken, "EXACT", exact)
    monkeypatch.setattr(Taken, "SLOTS", slots)
    keys = [f"order-{i}" for i in range(12)]
    journal = Journal(tmp_path / "j.sqlite")
    try:
        taken = Taken(journal)
        assert all(taken.take(key) for key in keys[:6])
        journal.record("k", "batch", "[]", keys[:6])
        taken.stored(keys[:6])  # the first six recorded, the rest still pending
        assert all(taken.take(key) for key in keys[6:])
        assert not any(taken.take(key) for key in keys)
    finally:
        journal.close()


def _repeats_in_batches_of_7() -> tuple[list[Any], list[str]]:
    """Messages that, in batches of 7, are new ones only, repeats of those within and
    across batches, and new ones again; and their identities counted plainly."""
    from ovo_async._journal import content_digest
    from ovo_async.models import SMSRequest

    texts = [*"abcdefg", *"ahaibjc", *"abcdefg", *"kalmnoa", *"aabbhhz"]
    requests = [SMSRequest(to="+14155550123", message=t) for t in texts]
    expected, seen = [], Counter[str]()
    for request in requests:
        digest = content_digest(request)
        expected.append(f"{digest}.{seen[digest]}")
        seen[digest] += 1
    return requests, expected


@pytest.mark.parametrize(
    ("exact", "slots"),
    [
        (Taken.EXACT, Taken.SLOTS),  # a short run: a set of digests
        (10, 64),  # moves from the set to tables mid-run
        (0, 2),  # tables from the start, crowded
        (0, 64),
        (0, Taken.SLOTS),
    ],
)
def test_identities_number_repeats_in_input_order_within_and_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: int, slots: int
) -> None:
    """Equal messages are numbered 0, 1, 2... in the order they come, whether they share
    a batch or not, held exactly or in tables however crowded."""
    monkeypatch.setattr(Taken, "EXACT", exact)
    monkeypatch.setattr(Taken, "SLOTS", slots)
    requests, expected = _repeats_in_batches_of_7()
    journal = Journal(tmp_path / "j.sqlite")
    try:
        taken = Taken(journal)
        got = []
        for start in range(0, len(requests), 7):  # batches that split the repeats
            batch = taken.identities(requests[start : start + 7])
            got += batch
            if start % 2:  # some recorded by the journal, some still pending
                journal.record(f"k{start}", "batch", "[]", batch)
                taken.stored(batch)
    finally:
        journal.close()
    assert got == expected


def test_runs_without_a_journal_number_repeats_the_same_way() -> None:
    from ovo_async._journal import Occurrences

    requests, expected = _repeats_in_batches_of_7()
    occurrences = Occurrences()
    got = []
    for start in range(0, len(requests), 7):
        got += occurrences.identities(requests[start : start + 7])
    assert got == expected


@pytest.mark.parametrize(
    ("message_id", "status"),
    [
        ("sm\t1", "queued"),  # the journal once joined fields with tabs
        ("sm2", "que\tued"),
        ("sm\x003", "queued"),
        ("sm\n4", "queued"),
        ('["sm5"', "queued"),
        ("sm\ud8006", "queued"),  # a lone surrogate: JSON may carry one as \ud800
        ("sm7", "q\udfff"),
    ],
)
async def test_odd_server_strings_survive_the_journal(
    tmp_path: Path, message_id: str, status: str
) -> None:
    """Whatever text the server puts in an accepted answer is written to the journal
    and replayed as it was: never a crash after the batch was sent, never a lost id."""
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["messages"]
        entries = [
            {"message_id": f"{message_id}-{i}", "status": status, "to": m["to"], "from": "OVO"}
            for i, m in enumerate(sent)
        ]
        body = {
            "batch_id": "b",
            "total_messages": len(entries),
            "successful": len(entries),
            "failed": 0,
            "messages": entries,
            "created_at": "2025-05-17T12:34:56Z",
        }
        return httpx.Response(201, content=json.dumps(body).encode())

    journal = tmp_path / "j.sqlite"
    runs = []
    for _ in range(2):
        async with AsyncOVOClient(
            api_key="k",
            transport=httpx.MockTransport(answer),
            default_from="OVO",
            retry=RetryPolicy(max_retries=0),
        ) as client:
            runs.append(await run(client, numbered(3), journal=journal, batch_size=3))
    first, again = (sorted(r, key=lambda o: o.index) for r in runs)
    assert all(o.ok and not o.replayed for o in first)
    assert all(o.ok and o.replayed for o in again)
    for before, after in zip(first, again, strict=True):
        assert after.message.message_id == before.message.message_id
        assert str(after.message.status) == str(before.message.status) == status


def test_stored_outcomes_read_back_in_every_form() -> None:
    """Accepted outcomes are stored as a whole batch's lists, one entry each (a batch
    with failures), or, in journals from before, fields joined by tabs."""
    from ovo_async._journal import ACCEPTED, FAILED, _expand, accepted_fields

    at = "2025-05-17T12:34:56+00:00"
    odd = "sm\t\ud800\n"
    whole = _expand({"at": at, "ids": [odd, "sm2"], "statuses": ["que\tued", "sent"]})
    mixed = _expand([[ACCEPTED, [odd, "que\tued", at]], [FAILED, '{"class":"OVOError"}']])
    assert [accepted_fields(o) for _, o in whole] == [(odd, "que\tued", at), ("sm2", "sent", at)]
    assert accepted_fields(mixed[0][1]) == (odd, "que\tued", at)
    assert mixed[1] == (FAILED, '{"class":"OVOError"}')
    assert accepted_fields(f"sm_1\tqueued\t{at}") == ("sm_1", "queued", at)
    assert accepted_fields(f"[sm_1\tqueued\t{at}") == ("[sm_1", "queued", at)


async def test_a_journal_never_runs_unlocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without fcntl (Windows) the lock was skipped silently: two runs on one journal
    could each send the same messages. With msvcrt it locks; with neither it refuses."""
    fake = FakeOVO()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl: ImportError
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    async with client_for(fake) as client:
        with pytest.raises(OVOError, match="cannot be locked on this platform"):
            await run(client, numbered(3), journal=tmp_path / "j.sqlite")
    assert fake.requests == []

    locked: set[int] = set()

    class Msvcrt:
        LK_NBLCK = 2

        @staticmethod
        def locking(fd: int, mode: int, nbytes: int) -> None:
            key = os.fstat(fd).st_ino
            if key in locked:
                raise OSError("locked")
            locked.add(key)

    monkeypatch.setitem(sys.modules, "msvcrt", Msvcrt)
    async with (
        client_for(fake) as client,
        client.sms.send_many(numbered(3), journal=tmp_path / "w.sqlite") as first,
    ):
        await first.__anext__()  # the first run holds the journal, through msvcrt
        with pytest.raises(OVOError, match="in use by another run"):
            await run(client, numbered(3), journal=tmp_path / "w.sqlite")
