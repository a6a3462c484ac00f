"""The Celery app the fleet test's workers run (configured by environment variables)."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery  # type: ignore[import-untyped]
from celery.signals import task_prerun  # type: ignore[import-untyped]

from ovo_async.contrib import redis as ovo_redis
from ovo_async.contrib.celery import register

_acquire = ovo_redis.RedisRateLimiter.acquire


async def _logged_acquire(self: Any, n: int) -> None:
    # Every grant, with this machine's clock: the fleet's pacing as the limiter made it.
    await _acquire(self, n)
    with open(os.environ["FLEET_GRANTS"], "a") as f:  # noqa: ASYNC230 (one short append)
        f.write(f"{time.time()} {n}\n")


ovo_redis.RedisRateLimiter.acquire = _logged_acquire  # type: ignore[method-assign]

app = Celery("fleet", broker=os.environ["FLEET_BROKER"])
app.conf.update(
    worker_prefetch_multiplier=1,  # one shard at a time per process: a kill loses one
    task_acks_late=True,
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
)
send_shard = register(
    app,
    redis_url=os.environ["FLEET_REDIS"],
    rate=float(os.environ["FLEET_RATE"]),
    # A token bucket lets any 1 s window hold rate x (1 + burst): one batch's worth
    # (50 messages, 0.025 s) leaves the rest of the 10 % for requests that a busy
    # machine delays from one window into the next on their way to the server.
    burst=0.025,
    client_options={"api_key": "k", "base_url": os.environ["FLEET_OVO"]},
)


@task_prerun.connect  # type: ignore[untyped-decorator]
def note_pid(task_id: str, task: object, args: tuple[object, ...], **_: object) -> None:
    # Tell the test which process runs which shard, so it can kill one mid-shard.
    with open(os.environ["FLEET_PIDS"], "a") as f:
        f.write(f"{os.getpid()} {args[1] if len(args) > 1 else '?'}\n")
