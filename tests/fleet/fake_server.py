"""FakeOVO in a process of its own, for the fleet test: its request times are then taken
by a process that does nothing else, so they show the rate the fleet really sent at.

Prints its base URL, then keeps `count` (a file) at the number of stored messages.
SIGUSR1: answer the next batch with 429 and Retry-After: 1. SIGTERM: write every
request (time, endpoint, status, messages) and every stored message's text to `log`
as JSON, and exit.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from ovo_async.testing import FakeOVO


def main() -> None:
    count_path, log_path = sys.argv[1], sys.argv[2]
    fake = FakeOVO(latency=0.01)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM})
    stop = threading.Event()

    def keep_count() -> None:
        while not stop.wait(0.05):
            tmp = count_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(fake.message_count))
            os.replace(tmp, count_path)

    with fake.serve() as url:
        threading.Thread(target=keep_count, daemon=True).start()
        sys.stdout.write(url + "\n")
        sys.stdout.flush()
        while signal.sigwait({signal.SIGUSR1, signal.SIGTERM}) == signal.SIGUSR1:
            fake.fail_next("batch", 1, status=429, retry_after=1)
        stop.set()
        log = {
            "requests": [
                [r.received_at, r.endpoint, r.status, _size(r.body)] for r in fake.requests
            ],
            "messages": [m["message"] for m in fake.messages],
        }
    with open(log_path, "w") as f:
        json.dump(log, f)


def _size(body: object) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    return len(messages) if isinstance(messages, list) else 1


if __name__ == "__main__":
    main()
