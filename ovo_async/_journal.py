"""Message identity and the SQLite journal that makes a `send_many` campaign resumable.

Identity: a message is known by `key(item)` when the caller gives one, else by a digest
of `to`, `from`, `message` and `callback_url` plus its occurrence number among equal
messages of the run. Identities, never positions, make idempotency keys, so a re-run of
the same job, filtered or reordered, repeats the same keys for the same messages.

The journal is a write-ahead outbox: before a request goes out, its key, body and
members are committed; after its answer, each member's outcome. WAL mode with
`synchronous=NORMAL` keeps every commit through a `kill -9` (not through a power cut).
One run at a time may use a journal (an exclusive lock next to it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from . import _errors
from ._errors import OVOError
from .models import SMSRequest

__all__ = ["Journal", "Occurrences", "content_digest", "error_from_json", "error_to_json"]

SCHEMA_VERSION = "1"

#: A message's state in the journal.
IN_FLIGHT, ACCEPTED, UNKNOWN, FAILED = "in_flight", "accepted", "unknown", "failed"


def content_digest(request: SMSRequest) -> str:
    """What makes two messages equal: recipient, sender, text and callback URL."""
    fields = (request.to, request.from_ or "", request.message, request.callback_url or "")
    text = "\x1f".join(fields)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def batch_digest(identities: Iterable[str]) -> str:
    """A batch's identity: its members', in the (sorted) order they are sent."""
    return hashlib.blake2b("\n".join(identities).encode(), digest_size=16).hexdigest()


class Occurrences:
    """How many equal messages came before, in memory (runs without a journal)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def number(self, digests: list[str]) -> list[int]:
        seen = self._seen
        out = []
        for digest in digests:
            n = seen.get(digest, 0)
            out.append(n)
            seen[digest] = n + 1
        return out


def error_to_json(error: OVOError) -> str:
    """An error as JSON: its class name and what it pickles with (never the response)."""
    _rebuild, (cls, args, state) = error.__reduce__()
    return json.dumps({"class": cls.__name__, "args": list(args), "state": state}, default=str)


def error_from_json(text: str) -> OVOError:
    """The error `error_to_json` wrote; only SDK error classes are rebuilt (no pickle)."""
    data = json.loads(text)
    classes: dict[str, type[OVOError]] = {
        name: obj
        for name, obj in vars(_errors).items()
        if isinstance(obj, type) and issubclass(obj, OVOError)
    }
    cls = classes.get(data.get("class"), OVOError)
    return _errors._rebuild(cls, tuple(data.get("args", ())), dict(data.get("state", {})))


def _journal_errors(method: Any) -> Any:
    """sqlite3 failures mid-run (disk full, file removed) as an `OVOError` naming the file."""
    import functools

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any) -> Any:
        try:
            return method(self, *args)
        except sqlite3.Error as exc:
            raise OVOError(
                f"the journal {self.path!r} failed ({type(exc).__name__}: {exc}); the run "
                "stopped so that nothing is sent unrecorded"
            ) from None

    return wrapper


class Journal:
    """The SQLite outbox of one `send_many` run. Use from one thread (the event loop's)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = _exclusive_lock(self.path + ".lock")
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            self.db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS requests (
                    key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, body TEXT NOT NULL,
                    members TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS messages (
                    identity TEXT PRIMARY KEY, request_key TEXT NOT NULL, state TEXT NOT NULL,
                    outcome TEXT, run INTEGER NOT NULL
                );
                """
            )
            version = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise OVOError(
                    f"journal {self.path!r} has schema {version[0]}, not {SCHEMA_VERSION}"
                )
            last = db.execute("SELECT v FROM meta WHERE k = 'run'").fetchone()
            self.run = int(last[0]) + 1 if last else 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (str(self.run),))
        except sqlite3.Error as exc:
            self._lock.close()
            raise OVOError(f"cannot use {self.path!r} as a journal: {exc}") from None

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self._lock.close()

    @_journal_errors
    def lookup(self, identities: list[str]) -> dict[str, tuple[str, str | None, int]]:
        """identity -> (state, outcome JSON, run) for those the journal knows."""
        rows = self.db.execute(
            "SELECT identity, state, outcome, run FROM messages "
            f"WHERE identity IN ({','.join('?' * len(identities))})",
            identities,
        ).fetchall()
        return {identity: (state, outcome, run) for identity, state, outcome, run in rows}

    @_journal_errors
    def record(self, key: str, endpoint: str, body: str, members: list[str]) -> None:
        """Before sending: the request and its members, committed."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?, ?, ?, ?)",
                (key, endpoint, body, json.dumps(members)),
            )
            db.executemany(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, NULL, ?)",
                [(identity, key, IN_FLIGHT, self.run) for identity in members],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_journal_errors
    def settle(self, key: str, outcomes: list[tuple[str, str, str]]) -> None:
        """After the answer: (identity, state, outcome JSON) for each member, committed."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "UPDATE messages SET state = ?, outcome = ? WHERE identity = ?",
                [(state, outcome, identity) for identity, state, outcome in outcomes],
            )
            db.execute("DELETE FROM requests WHERE key = ?", (key,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_journal_errors
    def claim(self, identities: list[str]) -> None:
        """Mark replayed messages as taken by this run (for occurrence numbering)."""
        db = self.db
        db.execute("BEGIN")
        try:
            db.executemany(
                "UPDATE messages SET run = ? WHERE identity = ?",
                [(self.run, identity) for identity in identities],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_journal_errors
    def in_flight(self) -> list[tuple[str, str, Any, list[str]]]:
        """Requests recorded but never answered (the process died).

        Each as (key, endpoint, rows of [to, from, message, callback_url], identities).
        """
        rows = self.db.execute("SELECT key, endpoint, body, members FROM requests").fetchall()
        return [(k, endpoint, json.loads(body), json.loads(ids)) for k, endpoint, body, ids in rows]

    @_journal_errors
    def final_outcomes(self) -> int:
        """How many messages have a final outcome (for tests and progress)."""
        row = self.db.execute("SELECT count(*) FROM messages WHERE state != ?", (IN_FLIGHT,))
        return int(row.fetchone()[0])


class _Lock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _exclusive_lock(path: str) -> _Lock:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OVOError(f"cannot use {path[:-5]!r} as a journal: {exc.strerror}") from None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        pass
    except OSError:
        os.close(fd)
        raise OVOError(
            f"the journal {path[:-5]!r} is in use by another run; one run per journal"
        ) from None
    return _Lock(fd)
