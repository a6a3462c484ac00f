"""Developer tasks: `nox -s tests lint typecheck`, `nox -s coverage`, `nox -s lowest`,
`nox -s wheel`, `nox -s generate`, `nox -s bench`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
# uv makes the sessions' environments in seconds (CI makes five); virtualenv otherwise.
nox.options.default_venv_backend = "uv|virtualenv"

PYTHON = "3.11"
#: The oldest and newest supported Pythons: CI runs the suite on both (timestamps, asyncio
#: and typing differ between them).
PYTHONS = ["3.10", "3.13"]


def _let_pyenv_shims_find_every_python() -> None:
    # pyenv's `python3.10` shim refuses to run unless 3.10 is a selected version; list
    # every installed one (the global first) so nox finds each interpreter it needs.
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if "PYENV_VERSION" in os.environ or not versions.is_dir():
        return
    installed = sorted(p.name for p in versions.iterdir() if (p / "bin" / "python").exists())
    global_file = versions.parent / "version"
    first = global_file.read_text().split() if global_file.exists() else []
    os.environ["PYENV_VERSION"] = ":".join(first + [v for v in installed if v not in first])


_let_pyenv_shims_find_every_python()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite (the same one the README's test command runs) on the oldest and
    newest supported Pythons; `nox -s tests -- --cov` adds branch coverage."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS[-1])
def coverage(session: nox.Session) -> None:
    """The suite on the newest supported Python, with branch coverage (its floor is in
    pyproject.toml): CI measures coverage once, here."""
    session.install("-e", ".[test]")
    session.run("pytest", "--cov", *session.posargs)


@nox.session(python=PYTHONS[0], venv_backend="uv")
def lowest(session: nox.Session) -> None:
    """The suite on the lowest versions every range in pyproject.toml allows, on the
    oldest Python: a floor that crashes or leaks shows here, not at a user's."""
    session.run_install(
        "uv",
        "pip",
        "install",
        "--resolution",
        "lowest-direct",
        "-e",
        ".[test]",
        env={"VIRTUAL_ENV": session.virtualenv.location},
    )
    session.run("uv", "pip", "list", env={"VIRTUAL_ENV": session.virtualenv.location})
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python=PYTHON)
def wheel(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, and run the installed wheel alone in a
    fresh venv outside the tree: the demo, `ovo --help` and a user's test file."""
    session.install("build>=1.2", "twine>=5")
    session.run("bash", ".ci/check_wheel.sh", external=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright on the package, the tests and the typing examples, and
    pyright's completeness score of the public API (at least 98 %)."""
    session.install(
        "-e", ".[test]", "mypy>=1.10", "typing_extensions>=4.6", "nox>=2024.4.15", "pyright"
    )
    session.run("mypy", "--strict", "ovo_async", "tests", "scripts")
    session.run("pyright")
    session.run("python", "scripts/verify_types.py", "--floor", "98")


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Regenerate the sync facade (ovo_async/_sync/) from the async code."""
    session.install("-e", ".")
    session.run("python", "scripts/generate_sync.py", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Run the benchmarks and write benchmarks/RESULTS.md (not part of CI)."""
    # Installed as users get it (not editable): imports are timed from site-packages.
    session.install(".[fake,aiohttp,fast]", "psutil>=5.9")
    # Other SDKs' sync clients, measured side by side when they install.
    for rival in ("twilio", "telnyx"):
        try:
            session.install(rival)
        except nox.command.CommandFailed:
            session.warn(f"{rival} did not install; its comparison is left out")
    session.run("python", "benchmarks/run.py", *session.posargs)
