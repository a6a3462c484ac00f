"""Campaigns on Celery workers: shards, one client per worker process, safe redelivery.

    from celery import Celery
    from ovo_async.contrib.celery import register, shards

    app = Celery("campaigns", broker="redis://127.0.0.1:6379/0")
    send_shard = register(app, redis_url="redis://127.0.0.1:6379/1", rate=2000)

    for shard in shards(rows, size=1000):          # in the launcher
        send_shard.delay(shard, campaign="black-friday")

Each shard runs `send_many` with keys derived from each message's identity and the
campaign name, so the same message always carries the same idempotency key. The task is
`acks_late` and rejected when its worker dies, so a worker killed mid-shard gets its
shard redelivered, and the keys make the resend harmless on a server that honours them
(the client retries what may have been sent only for that reason). All workers share one
rate limit and one pause gate in Redis (`RedisRateLimiter`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from .._errors import ValidationError
from .._retry import RetryPolicy

__all__ = ["register", "send_shard", "shards", "worker_client"]

#: This process's clients, one per set of client options, and the pid they belong to.
_clients: dict[Any, Any] = {}
_clients_pid: list[int] = [os.getpid()]


def worker_client(**options: Any) -> Any:
    """This worker process's `OVOClient` for these options, made on first use after the
    fork: one per process per distinct set of options (tasks of two accounts in one
    process each send with their own key, never the first one's).

    Safe redelivery needs the server to honour idempotency keys, so unless `retry` is
    given the client re-sends what may have been sent, with the same key.
    """
    pid = os.getpid()
    if _clients_pid[0] != pid:
        _clients.clear()  # a parent's clients are not ours to use or close
        _clients_pid[0] = pid
    options.setdefault("retry", RetryPolicy(retry_non_idempotent=True))
    identity = _options_identity(options)
    client = _clients.get(identity)
    if client is None:
        from .._sync import OVOClient

        try:
            client = OVOClient(**options)
        except TypeError as exc:  # an option OVOClient does not take
            raise ValidationError("client_options", str(exc)) from None
        _clients[identity] = client
    return client


def _options_identity(options: dict[str, Any]) -> Any:
    """A hashable stand-in for a set of client options (equal options, equal identity)."""

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return (
                "dict",
                tuple(sorted((str(k), frozen(v)) for k, v in value.items())),
            )
        if isinstance(value, (list, tuple)):
            return ("seq", tuple(frozen(v) for v in value))
        try:
            hash(value)
        except TypeError:
            # Equal values, such as two httpx.Timeout(5.0), share a client; the API key
            # and base URL are strings, so this never mixes accounts.
            return ("repr", type(value).__qualname__, repr(value))
        return (type(value).__qualname__, value)

    import hashlib

    key = options.get("api_key")
    if isinstance(key, str):
        # Only a digest of the key is kept beside the client (never the key in clear).
        options = {**options, "api_key": hashlib.sha256(key.encode()).hexdigest()}
    return frozen(options)


def shards(items: Iterable[Any], size: int = 1000) -> Iterator[list[Any]]:
    """Split a campaign into lists of `size` items for tasks (lazily; a bad `size` is a
    `ValidationError` at once, not at the first shard)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValidationError("size", f"must be a positive int, got {size!r}")
    return _shards(items, size)


def _shards(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    shard: list[Any] = []
    for item in items:
        shard.append(item)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


def send_shard(
    rows: list[dict[str, Any]],
    *,
    campaign: str,
    redis_url: str | None = None,
    rate: float | None = None,
    burst: float = 1.0,
    charge: str = "message",
    client_options: dict[str, Any] | None = None,
    **send_many_options: Any,
) -> dict[str, int]:
    """Send one shard; return counts (`sent`, `failed`, `may_have_been_sent`).

    `campaign` prefixes every idempotency key. With `redis_url` and `rate`, the fleet
    shares one `RedisRateLimiter` named after the campaign.
    """
    client = worker_client(**(client_options or {}))
    if redis_url is not None and rate is not None:
        from .redis import RedisRateLimiter

        send_many_options["rate_limiter"] = RedisRateLimiter(
            redis_url, rate=rate, name=campaign, burst=burst, charge=charge
        )
    counts = {"sent": 0, "failed": 0, "may_have_been_sent": 0}
    with client.sms.send_many(rows, idempotency_prefix=campaign, **send_many_options) as run:
        for outcome in run:
            if outcome.ok:
                counts["sent"] += 1
            else:
                counts["failed"] += 1
                counts["may_have_been_sent"] += bool(outcome.error.may_have_been_sent)
    return counts


def register(
    app: Any,
    *,
    name: str = "ovo.send_shard",
    redis_url: str | None = None,
    rate: float | None = None,
    burst: float = 1.0,
    charge: str = "message",
    client_options: dict[str, Any] | None = None,
) -> Any:
    """Register the shard task on `app` (acks_late, requeued when its worker dies)."""

    @app.task(name=name, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def task(rows: list[dict[str, Any]], campaign: str, **options: Any) -> dict[str, int]:
        return send_shard(
            rows,
            campaign=campaign,
            redis_url=redis_url,
            rate=rate,
            burst=burst,
            charge=charge,
            client_options=client_options,
            **options,
        )

    return task
