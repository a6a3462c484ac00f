"""`ovo` (or `python -m ovo_async`): the command line. `ovo --help` lists the commands.

The commands need the `cli` extra (click and rich); `ovo demo` runs without it.
"""

from __future__ import annotations

import sys

INSTALL = "pip install 'ovo-async[cli]'"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        from ._cli import cli
    except ImportError:
        if args[:1] == ["--version"]:
            from ._version import __version__

            sys.stdout.write(f"ovo-async {__version__}\n")
            return 0
        if args[:1] == ["demo"]:
            from ._demo import run

            return run()
        sys.stderr.write(f"ovo: the command line needs the cli extra: {INSTALL}\n")
        return 2
    try:
        cli.main(args=args, prog_name="ovo", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
