"""Launch a campaign: split it into shards and queue one task per shard."""

from __future__ import annotations

import sys

from tasks import send_shard

from ovo_async.contrib.celery import shards


def main(total: int) -> None:
    rows = (
        {"to": f"+1415{i:07d}", "from": "MyShop", "message": f"Hi #{i}, your order shipped"}
        for i in range(total)
    )
    queued = 0
    for shard in shards(rows, size=1000):
        send_shard.delay(shard, "example-campaign")
        queued += 1
    print(f"queued {queued} shards")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
