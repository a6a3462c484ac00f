"""The Celery app of the example: one task that sends a shard of a campaign."""

from __future__ import annotations

import os

from celery import Celery

from ovo_async.contrib.celery import register

REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("campaigns", broker=f"{REDIS}/0")
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True)

# Every worker process shares one limit of 2,000 msg/s and one pause gate in Redis. The
# OVO key and URL come from OVO_API_KEY and OVO_BASE_URL.
send_shard = register(app, redis_url=f"{REDIS}/1", rate=2000)
