"""A campaign on real Celery workers sharing one Redis rate limit (issue 14's fleet test).

redis-server (our own, on a free port) and FakeOVO on loopback; one `celery worker` with
three prefork processes; 20,000 messages in 20 shards at a fleet limit of 2,000 msg/s.
Midway one worker process is killed with SIGKILL, and the fake answers one batch with a
429 and Retry-After: 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ovo_async.contrib.celery import shards
from ovo_async.testing import FakeOVO

from .test_redis_limiter import redis_url  # noqa: F401  (the redis-server fixture)

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parent.parent
RATE = 2000.0
TOTAL = 20_000


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling another process's effects: no event crosses to us


def test_fleet_campaign_rate_pause_and_a_killed_worker(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = redis_url.rsplit("/", 1)[0]
    fake = FakeOVO(latency=0.01)
    pids = tmp_path / "pids"
    with fake.serve() as url:
        env = {
            "FLEET_BROKER": f"{base}/2",
            "FLEET_REDIS": f"{base}/3",
            "FLEET_RATE": str(RATE),
            "FLEET_OVO": url,
            "FLEET_PIDS": str(pids),
            "FLEET_GRANTS": str(tmp_path / "grants"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.fleet.app",
                "worker",
                "--pool=prefork",
                "--concurrency=3",
                "--loglevel=ERROR",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=dict(os.environ, **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        children: set[int] = set()
        try:
            sys.modules.pop("tests.fleet.app", None)
            from tests.fleet.app import send_shard

            rows = [
                {"to": f"+1415{i:07d}", "from": "Shop", "message": f"Campaign row {i}"}
                for i in range(TOTAL)
            ]
            # Batches of 50: a 1 s window then counts in steps of 2.5 % of the rate.
            for shard in shards(rows, size=1000):
                send_shard.delay(shard, "fleet-camp", batch_size=50)

            def stored() -> int:
                return fake.message_count  # cheap: the fake shares this process's GIL

            wait_until(lambda: stored() >= 3000, 40, "the campaign to get going")
            fake.fail_next("batch", 1, status=429, retry_after=1)
            # Kill a worker process in the middle of its shard.
            running = [int(line.split()[0]) for line in pids.read_text().splitlines()]
            children.update(running)
            victim = running[-1]
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: stored() >= TOTAL, 50, "every message to be stored")
            time.sleep(0.5)  # a stray duplicate would arrive now, if there were one
            children.update(int(line.split()[0]) for line in pids.read_text().splitlines())
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if worker.stderr:
                worker.stderr.close()

    texts = Counter(m["message"] for m in fake.messages)
    assert len(texts) == TOTAL and max(texts.values()) == 1  # every message exactly once
    assert len(set(int(line.split()[0]) for line in pids.read_text().splitlines())) >= 4
    batches = [r for r in fake.requests if r.endpoint == "batch"]
    limited = [r for r in batches if r.status == 429]
    assert len(limited) == 1
    t429 = limited[0].received_at
    # The 429 paused every worker: nothing reached the fake in its window (requests
    # already on their way when it was answered are allowed a tenth of a second).
    assert not [r for r in batches if t429 + 0.1 < r.received_at < t429 + 0.95]
    # The fleet's rate, over every 1 s window after the first, at most 10 % above the
    # limit: measured where the limiter grants tokens, in the workers. The fake's own
    # timestamps are taken when it gets round to a request inside pytest's process, so
    # under load they bunch up; they are checked on average below.
    grants = sorted(
        (float(t), int(n))
        for t, n in (line.split() for line in (tmp_path / "grants").read_text().splitlines())
    )
    start = grants[0][0]
    for i, (t, _) in enumerate(grants):
        if t < start + 1.0:
            continue
        in_window = sum(n for u, n in grants[i:] if u < t + 1.0)
        assert in_window <= RATE * 1.10, (t - start, in_window)
    assert sum(n for _, n in grants) >= TOTAL  # every message was paced (retries too)
    # At the fake: after the first second, on average within 10 % of the limit.
    accepted = sorted((r.received_at, len(r.body["messages"])) for r in batches if r.status < 300)
    first, last = accepted[0][0], accepted[-1][0]
    later = sum(n for t, n in accepted if t >= first + 1.0)
    assert later <= RATE * 1.10 * (last - first - 1.0) + 100
