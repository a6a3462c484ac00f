"""The `ovo` command: send, estimate and run CSV campaigns from a shell.

Built on click and rich (the `cli` extra). Configuration comes from `OVO_API_KEY` and
`OVO_BASE_URL` (never a key on the command line, where `ps` shows it) and from flags.
Exit status: 0 when everything was sent, 1 when anything failed or the run was stopped,
2 for usage errors.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import string
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ._errors import OVOError, ValidationError
from ._validation import sender as sender_field
from ._version import __version__

__all__ = ["cli"]

EXAMPLE_SEND_MANY = (
    "Example:\n\n"
    "    export OVO_API_KEY=sk_live_...\n\n"
    "    ovo send-many customers.csv --message 'Hi {name}, your order shipped' \\\n"
    "        --from MyShop --region GB --journal run.sqlite --results results.csv"
)


def interrupt_on_sigterm() -> None:
    """Make SIGTERM (systemd's stop, `docker stop`) end a blocking run as Ctrl-C does:
    with `KeyboardInterrupt`, so the run stops its requests and the command prints its
    summary and keeps its results, instead of dying where it stands."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _client(**options: Any) -> Any:
    from ._sync import OVOClient

    try:
        return OVOClient(**options)
    except OVOError as exc:
        raise click.UsageError(str(exc)) from None


@contextlib.contextmanager
def _one_call() -> Iterator[None]:
    """A command's one API call: bad input is a usage error (exit 2), any other failure
    is printed and exits 1."""
    try:
        yield
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    except OVOError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


class _Template:
    """A `--message` template: literal text and `{column}` fields, each field the whole
    name of a column (`{0}`, `{a.b}` and `{a[0]}` name columns "0", "a.b" and "a[0]"; to
    str.format they would be a position, an attribute and an index, and fail per row)."""

    def __init__(self, template: str) -> None:
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise click.BadParameter(f"{exc}", param_hint="--message") from None
        self.parts: list[tuple[str, str | None]] = []
        for literal, field, spec, conversion in parsed:
            if field is not None and (not field or spec or conversion):
                raise click.BadParameter(
                    "use plain {column} fields (write {{ and }} for braces)",
                    param_hint="--message",
                )
            self.parts.append((literal, field))
        #: The columns it names, in order.
        self.fields = [field for _, field in self.parts if field is not None]

    def render(self, row: dict[str, Any]) -> str:
        return "".join(
            literal + ("" if field is None else row.get(field) or "")
            for literal, field in self.parts
        )


class _Rows:
    """A CSV campaign read lazily: one send_many item per row, rows rendered on the way."""

    def __init__(self, path: Path, template: str, to_column: str, sender: str | None) -> None:
        self.path, self.to_column, self.sender = path, to_column, sender
        self.template = _Template(template)
        self.stop_requested = False
        self.total = self._scan([to_column, *self.template.fields])

    def _scan(self, needed: list[str]) -> int:
        """Read the whole file once before anything is sent: its rows, or a usage error
        for a file that would send wrong texts (a short row made "Hi {name}" into "Hi ")
        or stop halfway (not UTF-8, a field past csv's limit)."""
        path = self.path
        rows = 0
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, [])
                missing = [c for c in needed if c not in header]
                if missing:
                    raise click.UsageError(
                        f"{path} has no column {missing[0]!r} "
                        f"(its columns: {', '.join(header) or 'none'})"
                    )
                twice = sorted({c for c in needed if header.count(c) > 1})
                if twice:
                    raise click.UsageError(
                        f"{path} has the column {twice[0]!r} more than once: "
                        "rename one, so that it is clear which to use"
                    )
                last = max(header.index(c) for c in needed)
                for row in reader:
                    if not row:  # a blank line: DictReader skips it too
                        continue
                    rows += 1
                    if len(row) <= last:
                        short = [c for c in needed if header.index(c) >= len(row)]
                        raise click.UsageError(
                            f"{path} row {rows} has {len(row)} of the header's "
                            f"{len(header)} fields: no {short[0]!r}. Nothing was sent"
                        )
        except UnicodeDecodeError as exc:
            raise click.UsageError(
                f"{path} is not UTF-8 text (it holds byte {exc.object[exc.start]:#04x}); save "
                'it as UTF-8 ("CSV UTF-8" in Excel). Nothing was sent'
            ) from None
        except csv.Error as exc:
            raise click.UsageError(f"{path} row {rows + 1}: {exc}. Nothing was sent") from None
        return rows

    def count(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[dict[str, Any]]:
        with self.path.open(newline="", encoding="utf-8-sig") as f:
            for row in csv.DictReader(f):
                if self.stop_requested:
                    return  # Ctrl-C: take no more rows, let those in flight finish
                item: dict[str, Any] = {
                    "to": row.get(self.to_column) or "",
                    "message": self.template.render(row),
                }
                if self.sender:
                    item["from"] = self.sender
                yield item


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ovo-async", message="%(prog)s %(version)s")
def cli() -> None:
    """ovo: send SMS through the OVO API from a shell (OVO_API_KEY, OVO_BASE_URL)."""


@cli.command()
@click.option("--to", required=True, help="Recipient, E.164 or national with --region.")
@click.option("--message", required=True, help="The text to send.")
@click.option("--from", "sender", help="Sender ID or number (default: OVO's default).")
@click.option("--region", help="Region for national numbers, such as GB (the phone extra).")
@click.option("--callback-url", help="URL to receive status callbacks.")
def send(
    to: str, message: str, sender: str | None, region: str | None, callback_url: str | None
) -> None:
    """Send one SMS and print its id and status.

    Example: ovo send --to '+44 7700 900123' --from MyShop --message 'Hi'
    """
    with _client(default_region=region) as client, _one_call():
        sent = client.sms.send(to=to, from_=sender, message=message, callback_url=callback_url)
    click.echo(f"{sent.message_id} {sent.status}")


@cli.command()
@click.argument("message_id")
@click.option("--wait", is_flag=True, help="Poll until the status is final.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait may take.")
def status(message_id: str, wait: bool, timeout: float) -> None:
    """Print a message's status (with --wait, its final status).

    Example: ovo status sm_0123456789 --wait
    """
    with _client() as client, _one_call():
        if wait:
            message = client.sms.wait_until_final(message_id, timeout=timeout)
        else:
            message = client.sms.retrieve(message_id)
    click.echo(f"{message.message_id} {message.status} segments={message.segments}")


def _campaign_options(command: Any) -> Any:
    for option in reversed(
        [
            click.argument(
                "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
            ),
            click.option("--message", "template", required=True, help="Template, {column} fields."),
            click.option("--to-column", default="to", show_default=True, help="Number column."),
            click.option("--region", help="Region for national numbers, such as GB."),
        ]
    ):
        command = option(command)
    return command


@cli.command()
@_campaign_options
def estimate(csv_file: Path, template: str, to_column: str, region: str | None) -> None:
    """Count what a campaign costs, without sending: messages, segments, encodings.

    Example: ovo estimate customers.csv --message 'Hi {name}' --region GB
    """
    from ._estimate import estimate as run_estimate

    rows = _Rows(csv_file, template, to_column, "OVO")
    try:
        result = run_estimate(rows, default_region=region)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    _print_estimate(result)


def _print_estimate(result: Any) -> None:
    click.echo(f"messages: {result.messages}")
    click.echo(f"segments: {result.segments}")
    click.echo(f"GSM-7: {result.gsm7}")
    click.echo(f"UCS-2: {result.ucs2}")
    if result.non_gsm:
        click.echo("UCS-2 because of: " + " ".join(repr(c) for c in result.non_gsm[:20]))
    click.echo(f"invalid rows: {result.invalid}")
    for index, error in result.errors[:10]:
        click.echo(f"  row {index + 1}: {error}")


@cli.command("send-many", epilog=EXAMPLE_SEND_MANY)
@_campaign_options
@click.option("--from", "sender", help="Sender ID or number for every row.")
@click.option("--rate", type=float, help="Messages per second at most.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path), help="Resume file.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path), help="Results CSV.")
@click.option("--dry-run", is_flag=True, help="Validate and estimate; send nothing.")
def send_many(
    csv_file: Path,
    template: str,
    to_column: str,
    region: str | None,
    sender: str | None,
    rate: float | None,
    batch_size: int,
    journal: Path | None,
    results: Path | None,
    dry_run: bool,
) -> None:
    """Send one SMS per CSV row, with progress, a results file and a resume journal.

    Ctrl-C stops taking rows, lets those in flight finish, and prints a summary; run the
    same command with the same --journal to finish without sending anything twice.
    """
    if sender is not None:
        try:
            sender_field("--from", sender)
        except ValidationError as exc:
            raise click.UsageError(str(exc)) from None
    for option, path in (("--journal", journal), ("--results", results)):
        if path is not None and not path.parent.is_dir():
            raise click.UsageError(
                f"{option} {path}: the directory {str(path.parent)!r} does not exist"
            )
    rows = _Rows(csv_file, template, to_column, sender)
    if dry_run:
        from ._estimate import estimate as run_estimate

        result = run_estimate(rows, default_region=region)
        _print_estimate(result)
        sys.exit(1 if result.invalid else 0)
    total = rows.count()
    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def on_sigint(signum: int, frame: Any) -> None:
        if rows.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        rows.stop_requested = True

    signal.signal(signal.SIGINT, on_sigint)
    interrupt_on_sigterm()
    sent = failed = 0
    started = time.monotonic()
    failure: OVOError | None = None
    out = _ResultsFile(results) if results is not None else None
    try:
        with _client(default_region=region) as client:
            prefix = _key_prefix(journal, template) if journal is not None else None
            try:
                run = client.sms.send_many(
                    rows,
                    batch_size=batch_size,
                    rate_limit=rate,
                    journal=journal,
                    idempotency_prefix=prefix,
                )
            except ValidationError as exc:
                raise click.UsageError(str(exc)) from None
            with run, _Display(total) as display:
                for outcome in run:
                    request = outcome.request
                    to = getattr(request, "to", None) or (
                        request.get("to", "") if isinstance(request, dict) else ""
                    )
                    if outcome.ok:
                        sent += 1
                        message = outcome.message
                        row = [message.message_id, str(message.status), ""]
                    else:
                        failed += 1
                        row = ["", "failed", str(outcome.error)]
                    if out is not None:
                        out.write([outcome.index + 1, to, *row])
                    display.update(sent + failed, failed)
    except KeyboardInterrupt:
        rows.stop_requested = True
    except OVOError as exc:  # the run could not go on (its journal, its rate limiter)
        failure = exc
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
        if out is not None:
            # Everything written so far replaces the file at once; a refused or failed
            # run leaves an earlier run's file as it was.
            out.finish(keep=sent + failed > 0 or failure is None)
    if failure is not None:
        click.echo(f"error: {failure}", err=True)
        if sent + failed == 0:
            sys.exit(2 if isinstance(failure, ValidationError) else 1)
    elapsed = time.monotonic() - started
    stopped = rows.stop_requested or failure is not None
    click.echo(
        f"{'stopped' if stopped else 'done'}: {sent} sent, {failed} failed, "
        f"{total - sent - failed} not sent, in {elapsed:.1f} s"
        + (f"; run again with --journal {journal} to finish" if stopped and journal else ""),
        err=stopped,
    )
    sys.exit(0 if failed == 0 and not stopped else 1)


class _ResultsFile:
    """The `--results` CSV, written beside its final name and moved there in one step
    when the run ends (however it ends), so that no crash, Ctrl-C or concurrent run
    leaves it torn or truncated: it is the old file whole, or the new one whole."""

    HEADER = ("row", "to", "message_id", "status", "error")

    def __init__(self, path: Path) -> None:
        import tempfile

        self.path = path
        try:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        except OSError as exc:
            raise click.UsageError(f"--results {path}: {exc.strerror}") from None
        self._temp = Path(name)
        self._file = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.HEADER)

    def write(self, row: list[Any]) -> None:
        self._writer.writerow(row)

    def finish(self, *, keep: bool) -> None:
        self._file.close()
        if keep:
            os.replace(self._temp, self.path)
        else:
            self._temp.unlink(missing_ok=True)


def _key_prefix(journal: Path, template: str) -> str:
    """The campaign's idempotency-key prefix, from its journal's name and its template:
    the same command gives the same keys, and the next campaign (another template) on the
    same journal file is refused by the journal before it sends, instead of being taken
    for this one's replays. What a key cannot hold (non-ASCII, control characters) becomes
    "_", and it never ends with a space: "kampagne-\u00fc.sqlite" was refused as a prefix."""
    import hashlib

    text = f"ovo-{journal.stem}"[:60]
    name = "".join(c if c.isascii() and c.isprintable() else "_" for c in text).rstrip()
    digest = hashlib.blake2b(template.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{name}-t{digest}"


class _Display:
    """A rich progress bar (total, rate, ETA) on a terminal; plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._next_line = 0

    def __enter__(self) -> _Display:
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} msg/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[failed]} failed"),
            )
            self._progress.start()
            self._task = self._progress.add_task("send", total=self.total, rate="-", failed=0)
        return self

    def update(self, done: int, failed: int) -> None:
        if self._progress is not None:
            task = self._progress.tasks[0]
            speed = task.speed
            rate = f"{speed:,.0f}" if speed else "-"
            self._progress.update(self._task, completed=done, rate=rate, failed=failed)
        elif done >= self._next_line or done == self.total:
            click.echo(f"{done}/{self.total} done, {failed} failed")
            self._next_line = done + max(1, self.total // 10)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port on 127.0.0.1 (0: any).",
)
def fake(port: int) -> None:
    """Serve a fake OVO API on loopback, for trying things out (no real SMS).

    Example: eval "$(ovo fake --port 8787 | head -2)" in one shell, ovo send ... in another.
    """
    import threading

    from .testing import FakeOVO

    key = "sk_fake_key"
    # Ctrl-C and SIGTERM stop it, even when it was started with SIGINT ignored (a shell
    # job without job control: `ovo fake &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupt_on_sigterm()
    with contextlib.ExitStack() as serving:
        try:
            url = serving.enter_context(FakeOVO(api_key=key).serve("127.0.0.1", port))
        except RuntimeError as exc:  # the port is taken
            raise click.ClickException(str(exc)) from None
        click.echo(f"OVO_BASE_URL={url}")
        click.echo(f"OVO_API_KEY={key}")
        click.echo("# serving a fake OVO API; Ctrl-C stops it", err=True)
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


@cli.command()
def demo() -> None:
    """Send SMS through a fake OVO server on loopback (no real messages)."""
    from ._demo import run

    sys.exit(run())
