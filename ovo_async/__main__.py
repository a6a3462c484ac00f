"""`python -m ovo_async demo` (or `ovo demo`): the SDK end to end against a local fake."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovo", description="ovo-async command line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo", help="send SMS through a fake OVO server on loopback (no real messages)"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run

        return run()
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
