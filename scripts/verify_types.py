"""Fail unless pyright rates the public API of ovo_async at least `--floor` % typed.

Types from other packages (httpx's cookies, pytest's internals) are not ours to fix, so
they are ignored (`--ignoreexternal`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--floor", type=float, default=98.0)
    args = parser.parse_args()
    done = subprocess.run(
        ["pyright", "--verifytypes", "ovo_async", "--ignoreexternal", "--outputjson"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    score = report["typeCompleteness"]["completenessScore"] * 100
    sys.stdout.write(f"pyright --verifytypes ovo_async: {score:.1f} % (floor {args.floor:g} %)\n")
    if score < args.floor:
        for symbol in report["typeCompleteness"]["symbols"]:
            for diagnostic in symbol["diagnostics"]:
                if diagnostic["severity"] == "error":
                    sys.stdout.write(f"  {symbol['name']}: {diagnostic['message']}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
