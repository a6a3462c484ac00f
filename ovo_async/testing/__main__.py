"""`python -m ovo_async.testing --port 8787`: serve FakeOVO until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from ._fake import FakeOVO


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ovo_async.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port (default 8787, 0 = any)")
    parser.add_argument("--api-key", default=None, help="accept only this key (default: any)")
    parser.add_argument("--sent-after", type=float, default=1.0, help="seconds queued -> sent")
    parser.add_argument(
        "--delivered-after", type=float, default=2.0, help="seconds queued -> delivered"
    )
    args = parser.parse_args(argv)
    fake = FakeOVO(
        api_key=args.api_key, sent_after=args.sent_after, delivered_after=args.delivered_after
    )
    with fake.serve(args.host, args.port) as url:
        sys.stdout.write(f"FakeOVO serving at {url} (OVO_BASE_URL={url}); Ctrl-C stops it\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
