"""Message identity and the SQLite journal that makes a `send_many` campaign resumable.

Identity: a message is known by `key(item)` when the caller gives one, else by a digest
of `to`, `from`, `message` and `callback_url` plus its occurrence number among equal
messages of the run. Identities, never positions, make idempotency keys, so a re-run of
the same job, filtered or reordered, repeats the same keys for the same messages.

The journal is a write-ahead outbox of requests: before a request goes out, one row with
its key, body and members is committed; after its answer, the members' outcomes go into
that same row. One row per request, appended, keeps the journal's cost per message small
(a row per message, keyed by a random digest, writes a B-tree page per message). The
index by identity that a re-run needs is built from those rows when the next run opens
the journal. WAL mode with `synchronous=NORMAL` keeps every commit through a `kill -9`
(not through a power cut). One run at a time may use a journal (a lock next to it).
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from . import _errors, _json
from ._errors import OVOError
from .models import SMSRequest

__all__ = [
    "DAMAGE",
    "Journal",
    "Occurrences",
    "Taken",
    "accepted_fields",
    "content_digest",
    "damaged",
    "error_from_json",
    "error_to_json",
    "raw_digests",
]

SCHEMA_VERSION = "3"
#: Journals of this schema are brought up to date when opened (3 added the campaign
#: prefix and the content digests beside caller keys).
_UPGRADABLE = {"2"}

#: `Journal(path)` without a prefix: to look at a journal, not to run its campaign.
ANY = object()

#: A message's state in the journal.
IN_FLIGHT, ACCEPTED, UNKNOWN, FAILED = "in_flight", "accepted", "unknown", "failed"


def content_digest(request: SMSRequest) -> str:
    """What makes two messages equal: recipient, sender, text and callback URL."""
    return raw_digests([request])[0].hex()


def raw_digests(requests: list[SMSRequest]) -> list[bytes]:
    """`content_digest` of each request, as bytes (12 each)."""
    # Copying a made hasher skips parsing its parameters: a third of the cost. This runs
    # once per message, so the texts are made in one comprehension first.
    new_hasher = _BLAKE2B_12.copy
    raws: list[bytes] = []
    append = raws.append
    for text in [
        f"{r.to}\x1f{r.from_ or ''}\x1f{r.message}\x1f{r.callback_url or ''}".encode()
        for r in requests
    ]:
        hasher = new_hasher()
        hasher.update(text)
        append(hasher.digest())
    return raws


_BLAKE2B_12 = hashlib.blake2b(digest_size=12)


def batch_digest(identities: Iterable[str]) -> str:
    """A batch's identity: its members', in the (sorted) order they are sent."""
    return hashlib.blake2b("\n".join(identities).encode(), digest_size=16).hexdigest()


class Occurrences:
    """How many equal messages came before, in memory (runs without a journal)."""

    def __init__(self) -> None:
        #: Digests numbered so far; only those seen more than once get a count.
        self._seen: set[bytes] = set()
        self._next: dict[bytes, int] = {}

    def identities(self, requests: list[SMSRequest]) -> list[str]:
        """Each message's identity, `content_digest.n`, n counting equal messages
        numbered earlier by this object."""
        raws = raw_digests(requests)
        out = [digest + ".0" for digest in map(bytes.hex, raws)]
        counts = self._next
        for position in _seen_before(self._seen, raws):
            raw = raws[position]
            n = counts.get(raw, 1)
            counts[raw] = n + 1
            out[position] = f"{out[position][:-2]}.{n}"
        return out


def _seen_before(seen: set[bytes], raws: list[bytes]) -> list[int]:
    """Add `raws` to `seen`; the positions of those already there (or earlier in
    `raws`). All new is the usual case: whole-set steps, no loop."""
    if len(fresh := set(raws)) == len(raws) and seen.isdisjoint(fresh):
        seen |= fresh
        return []
    repeats = []
    for position, raw in enumerate(raws):
        if raw in seen:
            repeats.append(position)
        else:
            seen.add(raw)
    return repeats


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
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise OVOError(
                f"the journal {self.path!r} failed ({type(exc).__name__}: {exc}); the run "
                "stopped so that nothing is sent unrecorded"
            ) from None
        except DAMAGE as exc:
            raise damaged(self.path, exc) from None

    return wrapper


#: What decoding a journal's rows raises when they were changed outside the SDK.
DAMAGE = (ValueError, TypeError, KeyError, IndexError, AttributeError)


def damaged(path: str, exc: BaseException) -> OVOError:
    """The error for a journal whose rows do not read back (edited, or another
    program's file): the run stops, since it cannot tell what was sent."""
    return OVOError(
        f"the journal {path!r} is damaged ({type(exc).__name__}: {exc}); the run stopped, "
        "since it cannot tell what that journal's requests sent"
    )


#: (state, outcome) of one message: outcome is [id, status, created_at] when accepted,
#: an error as JSON otherwise.
Entry = tuple[str, Any]


class Journal:
    """The SQLite outbox of one campaign's `send_many` runs. Use from one thread (the
    event loop's).

    A journal belongs to the campaign of its first run: it records that run's
    `idempotency_prefix`, and a run with another one is refused before anything is sent
    (its keys would not be the campaign's, and its messages would be taken for the
    campaign's replays).
    """

    def __init__(self, path: str | os.PathLike[str], prefix: str | object | None = ANY) -> None:
        self.path = os.fspath(path)
        #: Identities of requests an earlier run left in flight that this run could not
        #: resolve (a re-send got no answer): (state, outcome, run), as `lookup` gives.
        self.unresolved: dict[str, tuple[str, str | None, int]] = {}
        self._claimed_unresolved: set[str] = set()
        self._unresolved_contents: dict[str, str] = {}
        #: The lowest row a re-send of this run settled: indexed again from there.
        self._resettled: int | None = None
        self._lock = _exclusive_lock(self.path + ".lock")
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            self.db = db
            # Ours alone (the lock file says so): SQLite then keeps the WAL index in its
            # own memory and takes no file locks per transaction (a sixth of a commit).
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            # A new journal's pages hold a 100-message request whole (no overflow pages to
            # write and free): a third less time per request in SQLite. An existing
            # journal keeps its page size.
            db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS requests (
                    id INTEGER PRIMARY KEY, key TEXT NOT NULL, endpoint TEXT NOT NULL,
                    run INTEGER NOT NULL, members TEXT NOT NULL, body TEXT, outcomes TEXT
                );
                CREATE TABLE IF NOT EXISTS messages (
                    identity TEXT PRIMARY KEY, state TEXT NOT NULL, outcome TEXT,
                    run INTEGER NOT NULL
                ) WITHOUT ROWID;
                """
            )
            version = db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                _add_content_columns(db)
            elif version[0] in _UPGRADABLE:
                _add_content_columns(db)
                db.execute("UPDATE meta SET v = ? WHERE k = 'schema'", (SCHEMA_VERSION,))
            elif version[0] != SCHEMA_VERSION:
                raise OVOError(
                    f"journal {self.path!r} has schema {version[0]}, not {SCHEMA_VERSION}"
                )
            self._own(prefix)
            last = db.execute("SELECT v FROM meta WHERE k = 'run'").fetchone()
            self.run = int(last[0]) + 1 if last else 1
            db.execute("INSERT OR REPLACE INTO meta VALUES ('run', ?)", (str(self.run),))
            #: Whether earlier runs left anything to replay (else lookups are skipped).
            self.history = db.execute("SELECT 1 FROM requests LIMIT 1").fetchone() is not None
        except sqlite3.Error as exc:
            self._abandon()
            raise OVOError(f"cannot use {self.path!r} as a journal: {exc}") from None
        except DAMAGE as exc:
            self._abandon()
            raise damaged(self.path, exc) from None
        except BaseException:
            self._abandon()
            raise

    def _own(self, prefix: str | object | None) -> None:
        """Record the campaign's prefix on first use; refuse a run with another one
        (`ANY`: a look at the journal, not a run)."""
        if prefix is ANY:
            return
        db = self.db
        row = db.execute("SELECT v FROM meta WHERE k = 'campaign'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('campaign', ?)", (json.dumps(prefix),))
            return
        recorded = json.loads(row[0])
        if recorded != prefix:
            raise OVOError(
                f"the journal {self.path!r} belongs to the campaign with idempotency_prefix "
                f"{recorded!r}, not {prefix!r}: nothing was sent. A new campaign needs a new "
                "journal (its messages would be taken for that campaign's)"
            )

    def _abandon(self) -> None:
        """Opening failed: release the connection (if made) and the lock."""
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
        self._lock.close()

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self._lock.close()

    @_journal_errors
    def catch_up(self, through_run: int | None = None) -> None:
        """Index the settled requests of earlier runs by message identity.

        Done once when a run opens the journal (after in-flight requests are resolved),
        so the run itself only appends; later requests override earlier ones.
        """
        through = self.run - 1 if through_run is None else through_run
        db = self.db
        row = db.execute("SELECT v FROM meta WHERE k = 'indexed'").fetchone()
        done = int(row[0]) if row else 0
        if self._resettled is not None:
            # A request an earlier run left in flight, settled now by its re-send: its
            # row lies below what was indexed, so the index is brought up from there.
            done = min(done, self._resettled - 1)
            self._resettled = None
        top = db.execute("SELECT max(id) FROM requests WHERE run <= ?", (through,)).fetchone()[0]
        if top is None or top <= done:
            return
        cursor = db.cursor()
        cursor.execute(
            "SELECT members, outcomes, run, contents FROM requests "
            "WHERE id > ? AND id <= ? AND outcomes IS NOT NULL ORDER BY id",
            (done, top),
        )

        def rows() -> Iterator[tuple[str, str, str, int, str | None]]:
            for members, outcomes, run, contents in cursor:
                entries = _expand(_json.loads(outcomes))
                identities = members.split("\n")
                if len(entries) != len(identities):
                    raise ValueError(f"{len(entries)} outcomes for {len(identities)} members")
                digests: Iterable[str | None] = (
                    contents.split("\n") if contents else itertools.repeat(None)
                )
                for identity, (state, outcome), content in zip(
                    identities, entries, digests, strict=False
                ):
                    yield identity, state, outcome, run, content

        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO messages (identity, state, outcome, run, content) "
                "VALUES (?, ?, ?, ?, ?)",
                rows(),
            )
            db.execute("INSERT OR REPLACE INTO meta VALUES ('indexed', ?)", (str(top),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_journal_errors
    def lookup(self, identities: list[str]) -> dict[str, tuple[str, str | None, int]]:
        """identity -> (state, outcome, run) for those earlier runs settled, and for
        those still in flight from an earlier run (`unresolved`)."""
        if not self.history:
            return {}
        rows = self.db.execute(
            "SELECT identity, state, outcome, run FROM messages "
            f"WHERE identity IN ({','.join('?' * len(identities))})",
            identities,
        ).fetchall()
        found = {identity: (state, outcome, run) for identity, state, outcome, run in rows}
        return _with_unresolved(found, self.unresolved, identities)

    @_journal_errors
    def contents(self, identities: list[str]) -> dict[str, str]:
        """identity -> the content digest recorded beside it (caller keys only)."""
        rows = self.db.execute(
            "SELECT identity, content FROM messages WHERE content IS NOT NULL "
            f"AND identity IN ({','.join('?' * len(identities))})",
            identities,
        ).fetchall()
        return _with_unresolved(dict(rows), self._unresolved_contents, identities)

    @_journal_errors
    def record(
        self,
        key: str,
        endpoint: str,
        body: str,
        members: list[str],
        contents: list[str] | None = None,
    ) -> int:
        """Before sending: the request and its members (with caller keys, each one's
        content digest too), committed. Returns its row id."""
        cursor = self.db.execute(
            "INSERT INTO requests (key, endpoint, run, members, body, contents) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (key, endpoint, self.run, "\n".join(members), body, _joined(contents)),
        )
        return int(cursor.lastrowid or 0)

    def keep_unresolved(
        self, identities: list[str], outcome: str, contents: list[str] | None
    ) -> None:
        """A request an earlier run left in flight whose re-send got no answer: it stays
        in flight in the file, and this run reports its messages as `outcome` (unknown)."""
        for position, identity in enumerate(identities):
            self.unresolved[identity] = (UNKNOWN, outcome, self.run - 1)
            if contents:
                self._unresolved_contents[identity] = contents[position]

    def resettled(self, request: int) -> None:
        """A request an earlier run left in flight got its answer in this run."""
        if self._resettled is None or request < self._resettled:
            self._resettled = request

    @_journal_errors
    def settle(self, request: int, entries: list[Entry]) -> None:
        """After the answer: each member's (state, outcome), committed; the body goes."""
        self.db.execute(
            "UPDATE requests SET outcomes = ?, body = NULL WHERE id = ?",
            (_json.dumps_text(entries), request),
        )

    @_journal_errors
    def settle_accepted(
        self, request: int, created_at: str, ids: list[str], statuses: list[str]
    ) -> None:
        """`settle` for a request whose members were all accepted at one time: stored
        as three lists, not a record per message (a batch's usual answer)."""
        self.db.execute(
            "UPDATE requests SET outcomes = ?, body = NULL WHERE id = ?",
            (_json.dumps_text({"at": created_at, "ids": ids, "statuses": statuses}), request),
        )

    @_journal_errors
    def claim(self, identities: list[str]) -> None:
        """Mark replayed messages as taken by this run (for occurrence numbering)."""
        db = self.db
        if self.unresolved:
            # Not in the messages table: this run's claim on them is kept in memory.
            self._claimed_unresolved.update(i for i in identities if i in self.unresolved)
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
    def taken_in_run(self, start: str, exact: bool) -> set[str]:
        """This run's identities equal to `start` (`exact`) or beginning with it.

        A scan of this run's requests: asked only when a repeat is suspected.
        """
        found: set[str] = set()
        for (members,) in self.db.execute(
            "SELECT members FROM requests WHERE run = ? AND instr(members, ?) > 0",
            (self.run, start),
        ):
            for identity in members.split("\n"):
                if identity == start or (not exact and identity.startswith(start)):
                    found.add(identity)
        if exact:
            rows = self.db.execute(
                "SELECT identity FROM messages WHERE identity = ? AND run = ?", (start, self.run)
            )
        else:
            rows = self.db.execute(
                "SELECT identity FROM messages WHERE identity >= ? AND identity < ? AND run = ?",
                (start, start + "\U0010ffff", self.run),
            )
        found.update(identity for (identity,) in rows)
        found.update(
            identity
            for identity in self._claimed_unresolved
            if identity == start or (not exact and identity.startswith(start))
        )
        return found

    @_journal_errors
    def in_flight(self) -> list[tuple[int, str, str, Any, list[str], list[str] | None]]:
        """Requests recorded but never answered (the process died, or a re-send of it
        never reached the server).

        Each as (row id, key, endpoint, rows of [to, from, message, callback_url],
        identities, content digests of caller-keyed members or None).
        """
        rows = self.db.execute(
            "SELECT id, key, endpoint, body, members, contents FROM requests "
            "WHERE outcomes IS NULL ORDER BY id"
        ).fetchall()
        return [
            (i, k, e, _json.loads(body), ids.split("\n"), c.split("\n") if c else None)
            for i, k, e, body, ids, c in rows
        ]

    @_journal_errors
    def tally(self) -> collections.Counter[str]:
        """How many messages are in each state, each identity counted once."""
        self.catch_up(self.run)
        counts: collections.Counter[str] = collections.Counter()
        for state, n in self.db.execute("SELECT state, count(*) FROM messages GROUP BY state"):
            counts[state] = n
        for (members,) in self.db.execute("SELECT members FROM requests WHERE outcomes IS NULL"):
            counts[IN_FLIGHT] += len(members.split("\n"))
        return counts


_V = TypeVar("_V")


def _with_unresolved(
    found: dict[str, _V], unresolved: dict[str, _V], identities: list[str]
) -> dict[str, _V]:
    """`found`, with what this run holds in memory for requests still in flight."""
    if unresolved:
        for identity in identities:
            entry = unresolved.get(identity)
            if entry is not None:
                found[identity] = entry
    return found


def _add_content_columns(db: sqlite3.Connection) -> None:
    """Schema 3: content digests beside caller keys (NULL for content identities)."""
    for table, column in (("requests", "contents"), ("messages", "content")):
        names = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if column not in names:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")


def _joined(contents: list[str] | None) -> str | None:
    return "\n".join(contents) if contents else None


def _expand(stored: Any) -> list[tuple[str, str]]:
    """What `settle` or `settle_accepted` stored, as one (state, outcome text) per
    member: an accepted one's outcome is the JSON of [id, status, created_at]."""
    if isinstance(stored, dict):
        at = stored["at"]
        return [
            (ACCEPTED, _json.dumps_text([message_id, status, at]))
            for message_id, status in zip(stored["ids"], stored["statuses"], strict=True)
        ]
    return [
        (state, outcome if isinstance(outcome, str) else _json.dumps_text(outcome))
        for state, outcome in stored
    ]


def accepted_fields(outcome: str) -> tuple[str, str, str]:
    """(message id, status, created_at) from an accepted message's stored outcome."""
    if outcome.startswith("["):
        try:
            fields = _json.loads(outcome)
        except ValueError:
            fields = None
        if isinstance(fields, list) and len(fields) == 3:
            message_id, status, created_at = fields
            if isinstance(message_id, str) and isinstance(status, str):
                return message_id, status, str(created_at)
    # Journals written before the JSON form: fields joined by tabs (the time has none).
    rest, created_at = outcome.rsplit("\t", 1)
    message_id, _, status = rest.rpartition("\t")
    return message_id, status, created_at


class Taken:
    """The identities this run has taken (being sent, sent, or replayed), exactly;
    past the first `EXACT`, in memory that holds no object per message.

    The first `EXACT` digests are kept in a set: exact, and whole-list steps per batch.
    Past that, they move to tables of 16-bit fingerprints, each filled to half its
    slots before the next is added (4 MiB per million messages): these answer "new" for
    nearly every message, and only their "maybe" (a repeat, or about one false alarm in
    a million messages) asks the journal. Digests found repeated are then counted in a
    dict. Identities are pending from the moment they are taken until the journal has
    them (recorded or claimed).
    """

    #: Digests kept exactly (about 2.5 MiB at most): a run this long allocates no table,
    #: which costs as much as sending a few thousand messages.
    EXACT = 1 << 15
    #: Fingerprint slots per table (4 MiB). Open addressing, not a Bloom filter: one
    #: probe instead of three, and half the interpreted steps per message.
    SLOTS = 1 << 21
    #: Longest probe: past it a table answers "maybe" (slower, still exact).
    PROBES = 32

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._exact: set[bytes] | None = set() if self.EXACT > 0 else None
        #: Full tables (looked up only), then the one being filled.
        self._tables: list[memoryview] = []
        self._filled = 0
        if self._exact is None:
            self._add_table()
        self._repeats: dict[str, int] = {}
        self.pending: set[str] = set()

    def _add_table(self) -> None:
        self._tables.append(memoryview(bytearray(2 * self.SLOTS)).cast("H"))
        self._filled = 0

    def _maybe_seen(self, slot: int, fingerprint: int) -> bool:
        """Add a fingerprint at its slot (or the next free one) of the table being
        filled; whether it may have been in any table already."""
        fingerprint = fingerprint & 0xFFFF or 1  # 0 marks an empty slot
        *full, filling = self._tables
        for table in full:
            if _probe(table, slot, fingerprint, add=False):
                return True
        return _probe(filling, slot, fingerprint, add=True)

    def _add_raw(self, raws: list[bytes]) -> list[int]:
        """Take these digests; the positions of those that may have been taken before
        (in this list too)."""
        exact = self._exact
        if exact is not None:
            suspects = _seen_before(exact, raws)
            if len(exact) > self.EXACT:
                # Into tables, in flat memory from now on; all distinct, so any "maybe"
                # here is a false alarm, which a lookup would have raised just the same.
                self._exact = None
                self._add_table()
                digests = iter(exact)  # in slices: no list as long as the set on top of it
                while chunk := list(itertools.islice(digests, 4096)):
                    self._add_raw(chunk)
            return suspects
        # A digest is 12 bytes: three native words; the slot comes from the first, the
        # fingerprint from the second, read for the whole list in one cast.
        words = memoryview(b"".join(raws)).cast("I")
        slots, fingerprints = words[0::3].tolist(), words[1::3].tolist()
        suspects = []
        if len(self._tables) == 1:
            table = self._tables[0]
            mask = len(table) - 1
            maybe_seen = self._maybe_seen
            for position, slot, fingerprint in zip(itertools.count(), slots, fingerprints):
                if not table[slot & mask]:
                    table[slot & mask] = fingerprint & 0xFFFF or 1
                elif maybe_seen(slot, fingerprint):
                    suspects.append(position)
        else:
            suspects = [
                position
                for position, slot, fingerprint in zip(itertools.count(), slots, fingerprints)
                if self._maybe_seen(slot, fingerprint)
            ]
        # What went in (a "maybe" adds nothing); past half full, the next table.
        self._filled += len(raws) - len(suspects)
        if self._filled > self.SLOTS // 2:
            self._add_table()
        return suspects

    def identities(self, requests: list[SMSRequest]) -> list[str]:
        """Each message's identity, `content_digest.n`, n counting equal messages taken
        earlier in this run; they are pending from now on."""
        # This runs once per message, so the work goes in whole-list steps where it can.
        raws = raw_digests(requests)
        out = [digest + ".0" for digest in map(bytes.hex, raws)]
        suspects = self._add_raw(raws)
        if not suspects:
            self.pending.update(out)
            return out
        # Repeats, and the tables' rare false alarms: numbered exactly, in input order,
        # after every new one is pending.
        suspected = set(suspects)
        self.pending.update(out[i] for i in range(len(out)) if i not in suspected)
        repeats = self._repeats
        for position in suspects:
            digest = out[position][:-2]
            n = repeats.get(digest)
            if n is None:
                n = self._first_free(digest)
            repeats[digest] = n + 1
            identity = out[position] = f"{digest}.{n}"
            self.pending.add(identity)
        return out

    def _first_free(self, digest: str) -> int:
        """A repeat, or a table's "maybe": the exact occurrence number, from the
        journal and what is pending."""
        taken = self._journal.taken_in_run(digest + ".", exact=False)
        taken.update(i for i in self.pending if i.startswith(digest + "."))
        n = 0
        while f"{digest}.{n}" in taken:
            n += 1
        return n

    def take(self, identity: str) -> bool:
        """Take a caller's key; False if this run already took it."""
        raw = hashlib.blake2b(identity.encode(), digest_size=12).digest()
        if identity in self.pending:
            return False
        if self._add_raw([raw]) and self._journal.taken_in_run(identity, exact=True):
            return False
        self.pending.add(identity)
        return True

    def stored(self, identities: Iterable[str]) -> None:
        """The journal has them now (recorded or claimed)."""
        self.pending.difference_update(identities)


def _probe(table: memoryview, slot: int, fingerprint: int, *, add: bool) -> bool:
    """Whether `fingerprint` is at `slot` or in the probes after it (True too when
    they are all taken: crowded, let the journal answer); else, with `add`, put it in
    the first free one."""
    mask = len(table) - 1
    slot &= mask
    for _ in range(Taken.PROBES):
        found = table[slot]
        if not found:
            if add:
                table[slot] = fingerprint
            return False
        if found == fingerprint:
            return True
        slot = (slot + 1) & mask
    return True


class _Lock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _exclusive_lock(path: str) -> _Lock:
    """The lock that keeps a second run off a journal in use: fcntl's flock, or msvcrt's
    byte lock on Windows. Without either the journal is refused: unlocked, two runs on
    one journal could each send the same messages."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise OVOError(f"cannot use {path[:-5]!r} as a journal: {exc.strerror}") from None
    try:
        _lock_fd(fd)
    except ImportError:
        os.close(fd)
        raise OVOError(
            f"the journal {path[:-5]!r} cannot be locked on this platform (neither fcntl "
            "nor msvcrt is available), and an unlocked journal could let two runs send the "
            "same messages: nothing was sent"
        ) from None
    except OSError:
        os.close(fd)
        raise OVOError(
            f"the journal {path[:-5]!r} is in use by another run; one run per journal"
        ) from None
    return _Lock(fd)


def _lock_fd(fd: int) -> None:
    """Lock `fd` for this process alone, without waiting: OSError if another holds it,
    ImportError where the platform has no file locks."""
    try:
        import fcntl
    except ImportError:
        import msvcrt  # Windows

        windows: Any = msvcrt  # typeshed describes it only for win32
        windows.locking(fd, windows.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
