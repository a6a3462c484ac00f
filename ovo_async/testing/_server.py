"""Serving FakeOVO on loopback with uvicorn (the `fake` extra)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._fake import FakeOVO

#: How often, when served, the fake looks for status changes to call back about.
TICK = 0.05


@contextmanager
def serve(fake: FakeOVO, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `fake` in a background thread; yields `http://host:port/v1`."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - depends on the environment
        raise RuntimeError("serving FakeOVO needs uvicorn: pip install 'ovo-async[fake]'") from None
    # The fake drops connections on purpose; uvicorn would log each as an app error.
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
    config = uvicorn.Config(
        fake,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_config=None,
        log_level="critical",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-ovo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"FakeOVO could not start on {host}:{port} (is the port taken?)")
        time.sleep(0.005)
    bound = server.servers[0].sockets[0].getsockname()[1]
    fake.use_real_time()
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(TICK):
            fake.deliver_callbacks()

    ticker = threading.Thread(target=tick, name="fake-ovo-callbacks", daemon=True)
    ticker.start()
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{bound}/v1"
    finally:
        stop.set()
        server.should_exit = True
        thread.join(5)
        ticker.join(5)
