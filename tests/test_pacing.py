"""One pacer owns client-side pacing: a token bucket, and a gate every 429 closes.

Real clock, counted events: what the server received and when, never a sleep to wait.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from ovo_async import AsyncOVOClient, RateLimitError, RetryPolicy, ValidationError
from ovo_async._pacer import Pacer
from ovo_async.testing import FakeOVO

from .conftest import API_KEY


def numbers(n: int) -> Iterator[dict[str, str]]:
    for i in range(n):
        yield {"to": f"+1415555{i:04d}", "from": "OVO", "message": f"message {i}"}


def client_for(fake: FakeOVO, **kwargs: Any) -> AsyncOVOClient:
    kwargs.setdefault("retry", RetryPolicy(initial_backoff=0.001, jitter=False))
    return AsyncOVOClient(api_key=API_KEY, transport=fake.transport(), **kwargs)


@pytest.mark.parametrize(
    "retry",
    [RetryPolicy(max_retries=0), RetryPolicy(max_retry_after=0.1)],
    ids=["max_retries=0", "retry_after_over_cap"],
)
async def test_a_429_the_sdk_gives_up_on_still_pauses_every_worker(retry: RetryPolicy) -> None:
    fake = FakeOVO()
    fake.fail_next("send", 1, status=429, retry_after=1)
    fake.fail_next("send", 200, status=None, delay=0.02)  # keeps the run busy meanwhile
    async with client_for(fake, retry=retry) as client:
        outcomes = [
            o async for o in client.sms.send_many(numbers(60), batch_size=None, concurrency=10)
        ]
    limited = [o for o in outcomes if isinstance(o.error, RateLimitError)]
    assert len(limited) == 1 and limited[0].error is not None
    assert limited[0].error.may_have_been_sent is False
    assert sum(o.ok for o in outcomes) == 59
    first = next(r for r in fake.requests if r.status == 429)
    # In flight with the 429, those arrived with it; everything sent later waited.
    later = [r for r in fake.requests if r.received_at > first.received_at + 0.01]
    assert len(later) >= 45
    assert min(r.received_at for r in later) >= first.received_at + 0.95


async def test_after_a_pause_no_second_exceeds_the_rate() -> None:
    """The built-in pacer, its grants logged as they happen: the fake's arrival times
    add the event loop's lag on a loaded machine, which is not the pacer's doing."""
    rate = 100.0
    fake = FakeOVO()
    fake.fail_next("send", 150, status=None)  # answered normally: the run gets going
    fake.fail_next("send", 1, status=429, retry_after=1)  # then a pause mid-run
    pacer = Logged(Pacer(rate))
    async with client_for(fake) as client:
        run = client.sms.send_many(
            numbers(300), batch_size=None, rate_limiter=pacer, concurrency=20
        )
        outcomes = [o async for o in run]
    assert sum(o.ok for o in outcomes) == 300
    times = sorted(t for t, n in pacer.grants for _ in range(n))
    assert len(times) == len(fake.requests)  # every attempt was paced, the retry too
    start = times[0]
    # Over every 1 s window after the first second (the first holds the initial burst).
    worst = 0
    for i, t in enumerate(times):
        if t < start + 1.0:
            continue
        in_window = sum(1 for u in times[i:] if u < t + 1.0)
        worst = max(worst, in_window)
    assert worst <= rate * 1.10, worst
    # The pause held: at the fake, nothing arrived within its Retry-After.
    limited = next(r for r in fake.requests if r.status == 429)
    after = sorted(r.received_at for r in fake.requests if r.received_at > limited.received_at)
    assert after and after[0] >= limited.received_at + 0.95


class Logged:
    """A real `Pacer`, with the time of every grant it makes."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.grants: list[tuple[float, int]] = []

    async def acquire(self, n: int) -> None:
        await self.pacer.acquire(n)
        self.grants.append((time.monotonic(), n))

    def pause(self, seconds: float) -> None:
        self.pacer.pause(seconds)


class Recorder:
    """A custom rate limiter: no limit, just a record of what the run asked of it."""

    def __init__(self) -> None:
        self.acquired: list[int] = []
        self.paused: list[float] = []

    async def acquire(self, n: int) -> None:
        self.acquired.append(n)

    def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


@pytest.mark.parametrize("batch_size", [None, 10])
async def test_a_custom_rate_limiter_sees_every_acquire_and_pause(batch_size: int | None) -> None:
    fake = FakeOVO()
    endpoint = "batch" if batch_size else "send"
    fake.fail_next(endpoint, 1, status=429, retry_after=1)  # retried (whole seconds on the wire)
    fake.fail_next(endpoint, 1, status=429, retry_after=30)  # over the cap: given up
    limiter = Recorder()
    async with client_for(fake, retry=RetryPolicy(max_retry_after=1, jitter=False)) as client:
        outcomes = [
            o
            async for o in client.sms.send_many(
                numbers(50), batch_size=batch_size, rate_limiter=limiter, concurrency=1
            )
        ]
    per_request = batch_size or 1
    assert sum(o.ok for o in outcomes) == 50 - per_request
    # One acquire per attempt that went out (the retried one twice), for its messages.
    assert limiter.acquired == [per_request] * len(fake.requests)
    assert sorted(limiter.paused) == [1.0, 30.0]


@pytest.mark.parametrize("batch_size", [None, 4])
async def test_a_limiter_that_charges_segments_is_asked_for_segments(
    batch_size: int | None,
) -> None:
    """An account limited in segments per second: a 3-segment message costs 3 tokens."""
    limiter = Recorder()
    limiter.charge = "segment"  # type: ignore[attr-defined]
    texts = ["short", "x" * 161, "\u2019" * 134, "y" * 459]  # 1, 2, 2 and 3 segments
    items = [{"to": "+14155550100", "from": "Shop", "message": t} for t in texts]
    async with client_for(FakeOVO()) as client:
        outcomes = [
            o
            async for o in client.sms.send_many(
                items, batch_size=batch_size, rate_limiter=limiter, concurrency=1
            )
        ]
    assert all(o.ok for o in outcomes)
    assert sum(limiter.acquired) == 8
    assert len(limiter.acquired) == (1 if batch_size else 4)


def test_rate_limit_and_rate_limiter_are_exclusive() -> None:
    client = AsyncOVOClient(api_key=API_KEY)
    with pytest.raises(ValidationError, match="rate_limiter"):
        client.sms.send_many([], rate_limit=5, rate_limiter=Recorder())
    with pytest.raises(ValidationError, match="rate_limiter"):
        client.sms.send_many([], rate_limiter=object())  # type: ignore[arg-type]
    for bad in (float("nan"), float("inf"), -1, 0, True):
        with pytest.raises(ValidationError, match="rate_limit"):
            client.sms.send_many([], rate_limit=bad)


async def test_pacer_takes_tokens_only_after_the_gate_opens() -> None:
    pacer = Pacer(50)
    await pacer.acquire(50)  # the first second's burst
    pacer.pause(0.3)
    started = anyio.current_time()
    await pacer.acquire(10)
    # The gate, then 10 tokens at 50/s from an empty bucket: 0.3 + 0.2 s, not 0.3.
    assert anyio.current_time() - started >= 0.49
