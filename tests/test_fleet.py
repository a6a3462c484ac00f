"""A campaign on real Celery workers sharing one Redis rate limit (issue 14's fleet test).

redis-server (our own, on a free port) and FakeOVO on loopback; one `celery worker` with
three prefork processes; 20,000 messages in 20 shards at a fleet limit of 2,000 msg/s.
Midway one worker process is killed with SIGKILL, and the fake answers one batch with a
429 and Retry-After: 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from celery import Celery  # type: ignore[import-untyped]

from ovo_async.contrib.celery import register, shards

from .conftest import untraced_env
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


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it is still there after 20 s; close its pipes."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def test_fleet_campaign_rate_pause_and_a_killed_worker(
    redis_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    base = redis_url.rsplit("/", 1)[0]
    pids, count, log = tmp_path / "pids", tmp_path / "count", tmp_path / "fake.json"
    # The fake in a process of its own: its clock then sees the fleet's real rate.
    fake = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fleet" / "fake_server.py"), str(count), str(log)],
        cwd=ROOT,
        env=untraced_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    worker: subprocess.Popen[str] | None = None
    children: set[int] = set()
    try:
        assert fake.stdout is not None
        url = fake.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        env = {
            "FLEET_BROKER": f"{base}/2",
            "FLEET_REDIS": f"{base}/3",
            "FLEET_RATE": str(RATE),
            "FLEET_OVO": url,
            "FLEET_PIDS": str(pids),
            "FLEET_GRANTS": str(tmp_path / "grants"),
        }
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
            env=untraced_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        rows = [
            {"to": f"+1415{i:07d}", "from": "Shop", "message": f"Campaign row {i}"}
            for i in range(TOTAL)
        ]
        launch = Celery("fleet", broker=env["FLEET_BROKER"])
        # Batches of 50: a 1 s window then counts in steps of 2.5 % of the rate.
        for shard in shards(rows, size=1000):
            launch.send_task(
                "ovo.send_shard", args=(shard, "fleet-camp"), kwargs={"batch_size": 50}
            )

        def stored() -> int:
            try:
                return int(count.read_text() or 0)
            except FileNotFoundError:
                return 0

        wait_until(lambda: stored() >= 3000, 40, "the campaign to get going")
        # Kill a worker process in the middle of its shard.
        running = [int(line.split()[0]) for line in pids.read_text().splitlines()]
        children.update(running)
        os.kill(running[-1], signal.SIGKILL)
        # Then a 429, once the others have carried on: armed together, the 429 could
        # answer the killed process's last request, and nobody would pause the fleet.
        resumed = stored() + 1000
        wait_until(lambda: stored() >= resumed, 40, "the fleet to carry on")
        fake.send_signal(signal.SIGUSR1)  # the next batch gets a 429 with Retry-After: 1
        wait_until(lambda: stored() >= TOTAL, 50, "every message to be stored")
        time.sleep(0.5)  # a stray duplicate would arrive now, if there were one
        children.update(int(line.split()[0]) for line in pids.read_text().splitlines())
    finally:
        if worker is not None:
            stop(worker)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop(fake)  # on SIGTERM it writes its log, then exits

    seen = json.loads(log.read_text())
    texts = Counter(seen["messages"])
    assert len(texts) == TOTAL and max(texts.values()) == 1  # every message exactly once
    assert len(set(int(line.split()[0]) for line in pids.read_text().splitlines())) >= 4
    batches = [(t, status, n) for t, endpoint, status, n in seen["requests"] if endpoint == "batch"]
    limited = [t for t, status, _ in batches if status == 429]
    assert len(limited) == 1
    t429 = limited[0]
    # The 429 paused every worker: nothing reached the fake in its window (requests
    # already on their way when it was answered are allowed a tenth of a second).
    assert not [t for t, _, _ in batches if t429 + 0.1 < t < t429 + 0.95]
    # The fleet's rate at the fake, over every 1 s window after the first: at most 10 %
    # above the limit.
    accepted = sorted((t, n) for t, status, n in batches if status < 300)
    start = accepted[0][0]
    for i, (t, _) in enumerate(accepted):
        if t < start + 1.0:
            continue
        in_window = sum(n for u, n in accepted[i:] if u < t + 1.0)
        assert in_window <= RATE * 1.10, (round(t - start, 2), in_window)
    # And every message was paced, retries too (the workers log each grant).
    grants = (tmp_path / "grants").read_text().splitlines()
    assert sum(int(line.split()[1]) for line in grants) >= TOTAL


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "10", None])
def test_shards_refuses_a_bad_size_at_once(size: Any) -> None:
    # A ValueError came only when the first shard was taken, inside the caller's loop.
    from ovo_async import ValidationError

    with pytest.raises(ValidationError) as info:
        shards([{"to": "+14155550123"}], size=size)
    assert info.value.field == "size"
    assert [len(s) for s in shards(range(5), size=2)] == [2, 2, 1]


def test_two_accounts_tasks_in_one_worker_process_send_with_their_own_keys() -> None:
    """The per-process client was cached by pid alone: the second account's shard went
    out with the first account's key, to the first account's server."""
    from ovo_async.testing import FakeOVO

    app = Celery("accounts", broker="memory://")
    app.conf.task_always_eager = True  # both tasks run in this one process
    first, second = FakeOVO(api_key="key-first"), FakeOVO(api_key="key-second")
    with first.serve() as first_url, second.serve() as second_url:
        tasks = [
            register(
                app,
                name=f"ovo.send_shard.{account}",
                client_options={"api_key": f"key-{account}", "base_url": url},
            )
            for account, url in (("first", first_url), ("second", second_url))
        ]
        rows = [{"to": "+14155550100", "from": "Shop", "message": "Hi"}]
        counts = [task.delay(rows, campaign=f"c{i}").get() for i, task in enumerate(tasks)]
        again = tasks[0].delay(rows, campaign="c2").get()  # the first account's client again
    assert counts == [{"sent": 1, "failed": 0, "may_have_been_sent": 0}] * 2
    assert again["sent"] == 1
    assert len(first.messages) == 2 and len(second.messages) == 1
    assert all(r.status == 201 or r.status == 200 for r in first.requests + second.requests)


def test_worker_clients_are_one_per_set_of_options_and_refuse_unknown_ones() -> None:
    from ovo_async import ValidationError
    from ovo_async.contrib.celery import worker_client

    a = worker_client(api_key="k1", base_url="http://127.0.0.1:9/v1", timeout=5.0)
    b = worker_client(api_key="k1", base_url="http://127.0.0.1:9/v1", timeout=5.0)
    c = worker_client(api_key="k2", base_url="http://127.0.0.1:9/v1", timeout=5.0)
    assert a is b and a is not c
    with pytest.raises(ValidationError) as info:
        worker_client(api_key="k1", no_such_option=1)
    assert info.value.field == "client_options"
