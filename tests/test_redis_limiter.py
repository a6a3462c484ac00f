"""The fleet limiter against a real redis-server: many processes, one bucket, one gate."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovo_async import OVOError, ValidationError

from .conftest import run_python

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, stopped by its pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)  # no readiness signal but the port
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from ovo_async.contrib.redis import RedisRateLimiter
    url, name = sys.argv[1], sys.argv[4]
    rate, seconds, pause_at = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[5])

    async def main():
        limiter = RedisRateLimiter(url, rate=rate, name=name)
        print("ready", flush=True)
        sys.stdin.readline()  # every process starts together
        grants, started = [], time.monotonic()
        while time.monotonic() - started < seconds:
            await limiter.acquire(1)
            grants.append(time.monotonic())
            if pause_at and len(grants) == 1 and pause_at > 0:
                limiter.pause(pause_at)
        print(json.dumps(grants))

    asyncio.run(main())
    """
)


def run_fleet(
    url: str, processes: int, rate: float, seconds: float, name: str, pause: float = 0.0
) -> list[float]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                url,
                str(rate),
                str(seconds),
                name,
                str(pause if i == 0 else 0),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        grants: list[float] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            grants += json.loads(out.strip().splitlines()[-1])
        return sorted(grants)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_ten_processes_never_exceed_the_bucket(redis_url: str) -> None:
    rate = 200.0
    grants = run_fleet(redis_url, processes=10, rate=rate, seconds=1.5, name="t-bucket")
    start = grants[0]
    # However the processes interleave, by any moment at most one burst plus the refill
    # since the start has been granted. Grant times are read by each process after its
    # answer: 10 processes on 2 cores read them up to a few tens of ms late, hence 30 ms.
    for count, at in enumerate(grants, start=1):
        assert count <= rate + rate * (at - start + 0.03), (count, at - start)
    assert len(grants) >= rate * 1.5  # and the fleet did get its rate


def test_a_pause_by_one_process_holds_every_process(redis_url: str) -> None:
    grants = run_fleet(redis_url, processes=4, rate=1000.0, seconds=1.2, name="t-gate", pause=0.5)
    first = grants[0]
    # Process 0 paused right after its first grant: nobody got a token for ~0.5 s.
    gaps = [b - a for a, b in itertools.pairwise(grants) if a - first < 0.2]
    assert max(gaps) >= 0.45
    resumed = [t for t in grants if t > first + 0.45]
    assert resumed and resumed[0] - first >= 0.45
    # No burst after the gate opens: within the next 0.2 s at most ~0.2 s of tokens.
    burst = [t for t in resumed if t < resumed[0] + 0.2]
    assert len(burst) <= 1000 * 0.2 * 1.1 + 1


def test_bad_arguments() -> None:
    from ovo_async.contrib.redis import RedisRateLimiter

    for rate in (0, -1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(ValidationError, match="rate"):
            RedisRateLimiter("redis://127.0.0.1:1/0", rate=rate)  # type: ignore[arg-type]
    for burst in (0, -1, 61, float("nan"), True):
        with pytest.raises(ValidationError, match="burst"):
            RedisRateLimiter("redis://127.0.0.1:1/0", rate=1, burst=burst)
    with pytest.raises(ValidationError, match="name"):
        RedisRateLimiter("redis://127.0.0.1:1/0", rate=1, name="a b")
    for charge in ("segments", "", None):
        with pytest.raises(ValidationError, match="charge"):
            RedisRateLimiter("redis://127.0.0.1:1/0", rate=1, charge=charge)  # type: ignore[arg-type]
    assert RedisRateLimiter("redis://127.0.0.1:1/0", rate=1, charge="segment").charge == "segment"
    with pytest.raises(ValidationError, match="redis_url"):
        RedisRateLimiter("http://127.0.0.1:1", rate=1)


async def test_a_redis_that_does_not_answer_stops_the_run_with_an_ovo_error() -> None:
    # redis-py's ConnectionError came out of send_many as it was.
    from ovo_async import AsyncOVOClient
    from ovo_async.contrib.redis import RedisRateLimiter
    from ovo_async.testing import FakeOVO

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port of ours that nobody listens on
    try:
        port = closed.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", rate=100, name="down")
        fake = FakeOVO()
        items = [{"to": "+14155550123", "from": "OVO", "message": "held back"}]
        async with AsyncOVOClient(api_key="k", transport=fake.transport()) as client:
            with pytest.raises(OVOError, match="no answer from Redis") as info:
                async for _ in client.sms.send_many(items, rate_limiter=limiter):
                    pass
    finally:
        closed.close()
    assert "'down'" in str(info.value)
    assert fake.requests == []


def test_without_the_extra_it_says_which_to_install() -> None:
    code = (
        "import sys; sys.modules['redis'] = None; sys.modules['redis.asyncio'] = None\n"
        "from ovo_async.contrib.redis import RedisRateLimiter\n"
        "RedisRateLimiter('redis://127.0.0.1:1/0', rate=1)"
    )
    done = run_python(code)
    assert "ovo-async[redis]" in done.stderr
    assert OVOError.__name__ in done.stderr


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:99999/0", "redis://[::1", "redis://h:-1/0", "redis://:pw@[x/0"]
)
def test_a_url_redis_cannot_use_is_refused_at_construction(url: str) -> None:
    # These raised a raw ValueError out of send_many, at the first request.
    from ovo_async.contrib.redis import RedisRateLimiter

    with pytest.raises(ValidationError) as info:
        RedisRateLimiter(url, rate=10)
    assert info.value.field == "redis_url" and "pw" not in str(info.value)


def test_the_password_in_the_url_is_never_shown() -> None:
    from ovo_async.contrib.redis import RedisRateLimiter

    limiter = RedisRateLimiter("redis://:s3cr3t-pw@127.0.0.1:6379/0", rate=10)
    shown = [
        repr(limiter),
        str(limiter),
        repr(vars(limiter)) if hasattr(limiter, "__dict__") else "",
    ]
    shown += [repr(getattr(limiter, name, None)) for name in dir(limiter)]
    assert not any("s3cr3t" in text for text in shown)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(limiter)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "5", True])
def test_a_bad_timeout_is_refused(timeout: object) -> None:
    from ovo_async.contrib.redis import RedisRateLimiter

    with pytest.raises(ValidationError) as info:
        RedisRateLimiter("redis://127.0.0.1:6379/0", rate=10, timeout=timeout)  # type: ignore[arg-type]
    assert info.value.field == "timeout"


async def test_a_frozen_redis_stops_the_run_within_its_timeout() -> None:
    """A Redis that accepts connections and never answers (stopped with SIGSTOP, or a
    dead network path) hung the run forever."""
    import asyncio

    from ovo_async.contrib.redis import RedisRateLimiter

    frozen = socket.socket()
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(8)  # accepted by the kernel, never read
    try:
        port = frozen.getsockname()[1]
        limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", rate=10, timeout=0.3)
        # Without a timeout of its own, wait_for's TimeoutError would come instead.
        with pytest.raises(OVOError, match="no answer from Redis"):
            await asyncio.wait_for(limiter.acquire(1), 10)
    finally:
        frozen.close()
