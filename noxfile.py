"""Developer tasks: `nox -s tests lint typecheck`, `nox -s generate`, `nox -s bench`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite (the same one the README's test command runs)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package, the tests and the typing examples."""
    session.install("-e", ".[test]", "mypy>=1.10", "nox>=2024.4.15")
    session.run("mypy", "--strict", "ovo_async", "tests", "scripts")


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Regenerate the sync facade (ovo_async/_sync/) from the async code."""
    session.install("-e", ".")
    session.run("python", "scripts/generate_sync.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write benchmarks/RESULTS.md (not part of CI)."""
    session.install("-e", ".[fake,aiohttp]", "psutil>=5.9")
    session.run("python", "benchmarks/run.py", *session.posargs)
