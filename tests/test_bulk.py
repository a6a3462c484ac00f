"""sms.send_many: one outcome per input, laziness, pacing, stopping, both faces."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
import trio

from ovo_async import (
    APIResponseValidationError,
    APITimeoutError,
    AsyncOVOClient,
    BulkOutcome,
    InternalServerError,
    MessageRejectedError,
    MessageStatus,
    OVOClient,
    RetryPolicy,
    SMSRequest,
    ValidationError,
)
from ovo_async.testing import FakeOVO

from .conftest import API_KEY, batch_json

FAST = RetryPolicy(initial_backoff=0.001, max_backoff=0.002, jitter=False)


def numbers(n: int, *, bad_every: int = 0) -> Iterator[dict[str, str]]:
    for i in range(n):
        to = "not-a-number" if bad_every and i % bad_every == 0 else f"+1415555{i:04d}"
        yield {"to": to, "from": "OVO", "message": f"message {i}"}


def client_for(fake: FakeOVO, **kwargs: Any) -> AsyncOVOClient:
    options: dict[str, Any] = {"retry": FAST, **kwargs}
    return AsyncOVOClient(api_key=API_KEY, transport=fake.transport(), **options)


def texts(fake: FakeOVO) -> Counter[str]:
    return Counter(m["message"] for m in fake.messages)


def assert_one_outcome_each(outcomes: list[BulkOutcome], n: int) -> None:
    assert sorted(o.index for o in outcomes) == list(range(n))
    assert all((o.message is None) != (o.error is None) for o in outcomes)


@pytest.mark.parametrize("batch_size", [None, 7])
async def test_one_outcome_per_input_under_faults_and_no_duplicates(
    batch_size: int | None,
) -> None:
    fake = FakeOVO()
    endpoint = "batch" if batch_size else "send"
    fake.fail_next(endpoint, 2, status=429, retry_after=0)  # retried
    fake.fail_next(endpoint, 1, status=500)  # unknown fate: not retried
    fake.fail_next(endpoint, 1, status=None, delay=5)  # acted on, answer too late
    fake.fail_next(endpoint, 1, drop=True)  # acted on, answer lost
    async with client_for(fake, timeout=httpx.Timeout(5, read=0.2)) as client:
        run = client.sms.send_many(numbers(60, bad_every=10), batch_size=batch_size, concurrency=5)
        outcomes = [o async for o in run]
    assert_one_outcome_each(outcomes, 60)
    invalid = [o for o in outcomes if isinstance(o.error, ValidationError)]
    assert sorted(o.index for o in invalid) == list(range(0, 60, 10))
    assert all(isinstance(o.request, dict) and o.request["to"] == "not-a-number" for o in invalid)
    assert any(isinstance(o.error, InternalServerError) for o in outcomes)
    assert any(isinstance(o.error, APITimeoutError) for o in outcomes)
    assert all(o.error.may_have_been_sent for o in outcomes if isinstance(o.error, APITimeoutError))
    # The server stored no message twice, whatever failed on the way.
    assert max(texts(fake).values()) == 1
    ok = [o for o in outcomes if o.ok]
    assert run.progress.sent == len(ok) and run.progress.failed == 60 - len(ok)
    assert all(o.message is not None and o.message.to == o.request.to for o in ok)


async def test_rerun_with_prefix_sends_nothing_twice() -> None:
    fake = FakeOVO()
    policy = RetryPolicy(initial_backoff=0.001, jitter=False, retry_non_idempotent=True)
    fake.fail_next("send", 3, drop=True)
    async with client_for(fake, retry=policy) as client:
        first = [
            o
            async for o in client.sms.send_many(
                numbers(20), batch_size=None, idempotency_prefix="job-7"
            )
        ]
        again = [
            o
            async for o in client.sms.send_many(
                numbers(20), batch_size=None, idempotency_prefix="job-7"
            )
        ]
    assert all(o.ok for o in first + again)
    assert {o.index: o.message.message_id for o in first if o.message} == {
        o.index: o.message.message_id for o in again if o.message
    }
    assert len(fake.messages) == 20 and max(texts(fake).values()) == 1
    keys = {r.idempotency_key for r in fake.requests}
    assert len(keys) == 20 and all(k and k.startswith("job-7-") for k in keys)


async def test_keys_follow_messages_not_positions() -> None:
    """Two runs over the same input in different orders: same keys for the same messages
    (single sends), same batch keys for the same members, identical batch bodies."""
    items = list(numbers(250))
    shuffled = items[::-1]
    keys: list[dict[str | None, Any]] = []
    for order in (items, shuffled):
        fake = FakeOVO()
        async with client_for(fake) as client:
            outcomes = [
                o
                async for o in client.sms.send_many(order, batch_size=None, idempotency_prefix="r")
            ]
        assert all(o.ok for o in outcomes)
        keys.append({r.idempotency_key: r.body["message"] for r in fake.requests})
    assert keys[0] == keys[1] and len(keys[0]) == 250

    batches: list[dict[str | None, Any]] = []
    for order in (items[:100], items[:100][::-1]):
        fake = FakeOVO()
        async with client_for(fake) as client:
            outcomes = [o async for o in client.sms.send_many(order, idempotency_prefix="r")]
        assert all(o.ok for o in outcomes)
        batches.append({r.idempotency_key: r.body for r in fake.requests})
    assert batches[0] == batches[1] and len(batches[0]) == 1
    assert str(next(iter(batches[0]))).startswith("r-b")


async def test_source_is_consumed_lazily() -> None:
    pulled = 0

    def huge() -> Iterator[SMSRequest]:
        nonlocal pulled
        for i in range(10_000_000):
            pulled += 1
            yield SMSRequest(to="+14155550123", from_="OVO", message=f"m{i}")

    fake = FakeOVO()
    async with client_for(fake) as client:
        for batch_size in (None, 100):
            pulled = 0
            async with client.sms.send_many(huge(), batch_size=batch_size) as run:
                seen = 0
                async for _ in run:
                    seen += 1
                    if seen == 50:
                        break
            assert pulled <= 500, (batch_size, pulled)


async def test_async_iterable_source() -> None:
    async def source() -> AsyncIterator[dict[str, str]]:
        for item in numbers(30):
            await asyncio.sleep(0)
            yield item

    fake = FakeOVO()
    async with client_for(fake) as client:
        outcomes = [o async for o in client.sms.send_many(source(), batch_size=None, concurrency=8)]
    assert_one_outcome_each(outcomes, 30)
    assert len(fake.messages) == 30


@pytest.mark.parametrize("batch_size", [None, 100])
async def test_failing_source_is_raised_after_its_outcomes(batch_size: int | None) -> None:
    # With batches, the source fails in the middle of filling one: what was taken is sent.
    def source() -> Iterator[dict[str, str]]:
        yield from numbers(5)
        raise RuntimeError("database went away")

    fake = FakeOVO()
    seen: list[BulkOutcome] = []
    async with client_for(fake) as client:
        with pytest.raises(RuntimeError, match="database went away"):
            async for outcome in client.sms.send_many(source(), batch_size=batch_size):
                seen.append(outcome)
    assert sorted(o.index for o in seen) == list(range(5))
    assert all(o.ok for o in seen) and len(fake.messages) == 5


@pytest.mark.parametrize(("batch_size", "n"), [(None, 250), (50, 300)])
async def test_rate_limit_holds_within_20_percent(batch_size: int | None, n: int) -> None:
    rate = 100.0
    fake = FakeOVO()
    async with client_for(fake) as client:
        started = time.monotonic()
        outcomes = [
            o
            async for o in client.sms.send_many(
                numbers(n), batch_size=batch_size, rate_limit=rate, concurrency=10
            )
        ]
        elapsed = time.monotonic() - started
    assert all(o.ok for o in outcomes)
    # A full bucket (one second's worth) goes at once; the rest at `rate`.
    observed = (n - rate) / elapsed
    assert 0.8 * rate <= observed <= 1.2 * rate, (elapsed, observed)


async def test_one_429_pauses_every_worker() -> None:
    fake = FakeOVO()
    fake.fail_next("send", 1, status=429, retry_after=1)
    fake.fail_next("send", 100, status=None, delay=0.03)  # keeps the run busy for a while
    async with client_for(fake, retry=RetryPolicy(jitter=False)) as client:
        outcomes = [
            o async for o in client.sms.send_many(numbers(60), batch_size=None, concurrency=10)
        ]
    assert all(o.ok for o in outcomes)
    limited = next(r for r in fake.requests if r.status == 429)
    # Requests already in flight when the 429 came arrived with it; every later one
    # waited out the Retry-After window, whichever worker sent it.
    later = [r for r in fake.requests if r.received_at > limited.received_at + 0.01]
    assert len(later) >= 50
    assert min(r.received_at for r in later) >= limited.received_at + 0.95
    assert len(fake.requests) == 61


async def test_break_and_aclose_stop_every_worker() -> None:
    fake = FakeOVO()
    fake.fail_next("send", 1000, status=None, delay=0.05)
    baseline = len(asyncio.all_tasks())
    async with client_for(fake) as client:
        run = client.sms.send_many(numbers(10_000), batch_size=None, concurrency=10)
        async for _ in run:
            break
        assert len(asyncio.all_tasks()) > baseline
        await run.aclose()
        assert len(asyncio.all_tasks()) == baseline
        requests = len(fake.requests)
        # Abandoned without aclose(): the generator is finalized, workers cancelled.
        async for _ in client.sms.send_many(numbers(10_000), batch_size=None, concurrency=10):
            break
        for _ in range(100):
            if len(asyncio.all_tasks()) == baseline:
                break
            await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == baseline
    assert len(fake.requests) < requests + 40


@respx.mock(base_url="https://api.ovocommunications.com/v1")
async def test_batch_items_map_back_to_their_inputs(respx_mock: respx.MockRouter) -> None:
    result = batch_json(3, successful=2, failed=1)
    result["messages"][1] = {
        "status": "rejected",
        "to": "+14155550001",
        "from": "OVO",
        "error": {"code": "blocked", "message": "number is blocked", "param": "to"},
    }
    short = batch_json(1)
    respx_mock.post("/sms/batch").side_effect = [
        httpx.Response(201, json=result),
        httpx.Response(201, json=short),
    ]
    async with AsyncOVOClient(api_key=API_KEY) as client:
        outcomes = [o async for o in client.sms.send_many(numbers(6), batch_size=3, concurrency=1)]
    by_index = {o.index: o for o in outcomes}
    assert by_index[0].ok and by_index[2].ok and by_index[3].ok
    rejected = by_index[1].error
    assert isinstance(rejected, MessageRejectedError)
    assert (rejected.code, rejected.param, rejected.status) == ("blocked", "to", "rejected")
    assert by_index[0].message is not None and by_index[0].message.message_id == "sm_0"
    assert not by_index[4].ok and not by_index[5].ok and "no" in str(by_index[4].error)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": 0}, "concurrency"),
        # A task per request in flight, started up front: this many would hang the run.
        ({"concurrency": 10**9}, "concurrency"),
        ({"batch_size": 1001}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"rate_limit": -1}, "rate_limit"),
        ({"idempotency_prefix": ""}, "idempotency_prefix"),
        ({"idempotency_prefix": " campaign"}, "idempotency_prefix"),
    ],
)
def test_bad_parameters_raise_before_any_request(kwargs: dict[str, Any], field: str) -> None:
    fake = FakeOVO()
    client = client_for(fake)
    with pytest.raises(ValidationError) as info:
        client.sms.send_many(numbers(3), **kwargs)
    assert info.value.field == field
    with pytest.raises(ValidationError, match="messages"):
        client.sms.send_many("not a list of messages")  # type: ignore[arg-type]
    assert fake.requests == []


def test_send_many_under_trio() -> None:
    fake = FakeOVO()

    async def main() -> list[BulkOutcome]:
        async with client_for(fake) as client:
            outs = [o async for o in client.sms.send_many(numbers(40, bad_every=9))]
            outs += [
                o async for o in client.sms.send_many(numbers(20), batch_size=None, rate_limit=1000)
            ]
            return outs

    outcomes = trio.run(main)
    assert len(outcomes) == 60 and len(fake.messages) == 40 - 5 + 20


def test_sync_send_many() -> None:
    fake = FakeOVO()
    with OVOClient(api_key=API_KEY, transport=fake.transport(), retry=FAST) as client:
        fake.fail_next("send", 2, status=429, retry_after=0)
        run = client.sms.send_many(numbers(50, bad_every=25), batch_size=None, concurrency=5)
        outcomes = list(run)
        assert run.progress.sent == 48 and run.progress.failed == 2
        with client.sms.send_many(numbers(10_000)) as early:
            next(early)
        assert early.progress.taken <= 500
    assert_one_outcome_each(outcomes, 50)
    assert len(fake.messages) == 48 + early.progress.sent


@respx.mock(base_url="https://api.ovocommunications.com/v1")
async def test_each_odd_batch_entry_costs_only_itself(respx_mock: respx.MockRouter) -> None:
    """Accepted entries take a fast path to their outcome; anything else about an entry
    (a wrong type anywhere, a refused status, an error object) must still be read as
    `sms.batch` reads it: unread entries may have been sent, refusals were not."""
    odd: list[Any] = [
        None,
        "sm_1",
        7,
        {"message_id": 5, "status": "queued", "to": "+14155550001", "from": "OVO"},
        {"message_id": "sm_4", "status": None, "to": "+14155550001", "from": "OVO"},
        {"message_id": "sm_5", "status": "queued", "to": ["+1"], "from": "OVO"},
        {"message_id": "sm_6", "status": "failed", "to": "+14155550001", "from": "OVO"},
        {"status": "rejected", "to": "+14155550001", "from": "OVO", "error": {"code": "x"}},
        {"message_id": "sm_8", "status": "queued", "to": "+14155550001", "from": "OVO"},
        {"message_id": "sm_9", "status": "warp", "to": "+14155550001", "from": "OVO", "x": 1},
    ]
    result = batch_json(len(odd))
    result["messages"] = odd
    respx_mock.post("/sms/batch").respond(201, json=result, headers={"X-Request-Id": "rq"})
    async with AsyncOVOClient(api_key=API_KEY) as client:
        outcomes = [o async for o in client.sms.send_many(numbers(len(odd)), batch_size=10)]
    by_index = {o.index: o for o in outcomes}
    assert sorted(by_index) == list(range(len(odd)))
    accepted = {i for i, o in by_index.items() if o.ok}
    assert accepted == {8, 9}
    assert by_index[9].message is not None and by_index[9].message.status == "warp"
    assert by_index[8].message is not None and by_index[8].message.request_id == "rq"
    for i in (0, 1, 2, 3, 4, 5):  # could not be read: the batch was accepted
        error = by_index[i].error
        assert isinstance(error, APIResponseValidationError) and error.may_have_been_sent, i
    for i in (6, 7):  # the server said no for this one
        error = by_index[i].error
        assert isinstance(error, MessageRejectedError) and not error.may_have_been_sent, i


PLAIN = {"status": "queued", "to": "+14155550001", "from": "OVO"}


@pytest.mark.parametrize(
    ("odd", "expect"),
    [
        ({"message_id": "sm_x", "status": "queued", "to": "+14155550001"}, "unread"),
        ({**PLAIN, "message_id": 5}, "unread"),
        ({**PLAIN, "message_id": "sm_x", "from": None}, "unread"),
        ({**PLAIN, "message_id": "sm_x", "status": "undelivered"}, "refused"),
        ({**PLAIN, "message_id": "sm_x", "status": "warp"}, "warp"),
        ({**PLAIN, "message_id": "sm_x", "status": "sent"}, MessageStatus.SENT),
    ],
)
@respx.mock(base_url="https://api.ovocommunications.com/v1")
async def test_one_odd_entry_in_an_otherwise_plain_batch_answer(
    respx_mock: respx.MockRouter, odd: dict[str, Any], expect: Any
) -> None:
    """A batch answered with plain accepted entries is read list by list; one entry
    that is not plain sends the whole answer the entry-by-entry way, and costs only
    itself."""
    result = batch_json(4)
    result["messages"][2] = odd
    respx_mock.post("/sms/batch").respond(201, json=result, headers={"X-Request-Id": "rq"})
    async with AsyncOVOClient(api_key=API_KEY) as client:
        run_ = client.sms.send_many(numbers(4), batch_size=4)
        by_index = {o.index: o async for o in run_}
    assert sorted(by_index) == [0, 1, 2, 3]
    for i in (0, 1, 3):
        message = by_index[i].message
        assert message is not None and message.message_id == f"sm_{i}"
        assert message.status is MessageStatus.QUEUED and message.request_id == "rq"
        assert message.created_at.year == 2025 and message.to == "+14155550123"
    error = by_index[2].error
    if expect == "unread":
        assert isinstance(error, APIResponseValidationError) and error.may_have_been_sent
    elif expect == "refused":
        assert isinstance(error, MessageRejectedError) and not error.may_have_been_sent
    else:
        message = by_index[2].message
        assert message is not None and message.status == expect
        assert type(message.status) is type(expect)
    assert run_.progress.sent == (3 if error else 4)


@respx.mock(base_url="https://api.ovocommunications.com/v1")
async def test_a_batch_answer_with_too_few_entries_leaves_the_rest_unknown(
    respx_mock: respx.MockRouter,
) -> None:
    """A 2xx batch answer with fewer entries than messages: the batch was accepted, so
    the messages it says nothing about may have been sent; none is lost or doubled."""
    respx_mock.post("/sms/batch").respond(201, json=batch_json(3))
    async with AsyncOVOClient(api_key=API_KEY) as client:
        outcomes = [o async for o in client.sms.send_many(numbers(5), batch_size=5)]
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4]
    assert {o.index for o in outcomes if o.ok} == {0, 1, 2}
    for outcome in outcomes:
        if not outcome.ok:
            error = outcome.error
            assert isinstance(error, APIResponseValidationError) and error.may_have_been_sent
            assert "returned 3 results for 5 messages" in str(error)
            assert error.idempotency_key


def test_an_outcome_s_ok_follows_its_error_however_it_is_made() -> None:
    """`ok` is stored, not computed on each read: it must still agree with `error` for
    outcomes made by hand, changed with `attrs.evolve`, or sent through pickle."""
    import pickle

    import attrs

    request = SMSRequest(to="+14155550123", message="Hi", from_="OVO")
    error = MessageRejectedError("no", code="x", param=None, status="rejected", batch_id="b1")
    good = BulkOutcome(index=0, request=request)
    bad = BulkOutcome(index=1, request=request, error=error)
    assert good.ok and not bad.ok
    assert not attrs.evolve(good, error=error).ok and attrs.evolve(bad, error=None).ok
    assert pickle.loads(pickle.dumps(bad)).ok is False
    assert pickle.loads(pickle.dumps(good)).ok is True
    assert "ok" not in repr(good) and good == attrs.evolve(bad, error=None, index=0)
    with pytest.raises(TypeError):
        BulkOutcome(index=0, request=request, ok=False)  # type: ignore[call-arg]
