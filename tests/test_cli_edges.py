"""`ovo send-many` at its edges (DESIGN 7.0): a second run on a busy journal, SIGTERM and
Ctrl-C mid-run, and input that used to end in a traceback."""

from __future__ import annotations

import csv
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from ovo_async.testing import FakeOVO

from .test_cli import OVO, ROOT, TEMPLATE, run_together, send_many, served, write_campaign

__all__ = ["served"]  # the fixture, shared with test_cli


def run_ovo(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """An `ovo` command run to its end, as from a shell."""
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False
    )


def results_rows(path: Path) -> list[dict[str, str]]:
    """The results file read back whole: it must be CSV to its last byte."""
    data = path.read_bytes()
    assert b"\x00" not in data
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert all(None not in row and len(row) == 5 for row in rows), "a torn row"
    return rows


def assert_results_match_the_server(rows: list[dict[str, str]], fake: FakeOVO) -> None:
    """Every id in the results is a stored message; what is stored and not in them is at
    most what was in flight when the run stopped: 4 batches of 20 sent, and one answered
    on its way to the consumer."""
    ids = {r["message_id"] for r in rows if r["message_id"]}
    stored = {m["message_id"] for m in fake.messages}
    assert ids <= stored and len(stored - ids) <= (4 + 1) * 20


def start_and_wait_for_progress(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start `command` and return once it has printed its second progress line."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None
    out = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(out.readline() for _ in range(2)), daemon=True
    )
    reader.start()
    reader.join(60)
    if reader.is_alive() or not all("done" in line for line in lines):
        proc.kill()
        pytest.fail(f"no progress from the CLI: {lines} {proc.communicate()[1][-2000:]}")
    return proc


def test_a_refused_second_run_leaves_the_running_ones_results_whole(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = served
    campaign, journal = tmp_path / "c.csv", tmp_path / "run.sqlite"
    results = tmp_path / "results.csv"
    write_campaign(campaign)
    command = send_many(campaign, "--batch-size", "20", "--journal", str(journal))
    # The first run paced slowly enough to be still running when the second starts.
    first = start_and_wait_for_progress([*command, "--results", str(results), "--rate", "100"], env)
    try:
        second = run_ovo([*command, "--results", str(results)], env)
        first.send_signal(signal.SIGTERM)  # then the first stops, keeping what it has
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr and "in use by another run" in second.stderr
    assert len(second.stderr.strip().splitlines()) <= 2, second.stderr
    assert first.returncode == 1 and "stopped:" in err, err
    rows = results_rows(results)
    assert 0 < len(rows) < 2000
    assert_results_match_the_server(rows, fake)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C x2"])
def test_a_signal_mid_run_prints_the_summary_and_keeps_every_result(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path, signum: signal.Signals
) -> None:
    fake, env = served
    campaign, results = tmp_path / "c.csv", tmp_path / "results.csv"
    write_campaign(campaign)
    proc = start_and_wait_for_progress(
        send_many(campaign, "--batch-size", "20", "--results", str(results)), env
    )
    try:
        proc.send_signal(signum)
        if signum == signal.SIGINT:
            proc.send_signal(signum)  # the second Ctrl-C: stop now
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    assert "Traceback" not in err and "stopped:" in err, err
    summary = err.strip().splitlines()[-1]
    sent = int(summary.split("stopped: ")[1].split(" sent")[0])
    rows = results_rows(results)
    assert 0 < len(rows) < 2000
    assert sum(r["message_id"] != "" for r in rows) == sent
    assert_results_match_the_server(rows, fake)


def one_line_errors(cases: dict[str, list[str]], env: dict[str, str]) -> None:
    names = list(cases)
    for name, (code, _out, err) in zip(
        names, run_together([cases[n] for n in names], env), strict=True
    ):
        assert "Traceback" not in err, (name, err)
        # One error line (click puts its usage line and a hint before a usage error's).
        errors = [line for line in err.splitlines() if line.lower().startswith("error:")]
        assert code in (1, 2) and len(errors) == 1, (name, code, err)


def test_bad_paths_journals_templates_and_senders_are_one_line_errors(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = served
    campaign = tmp_path / "c.csv"
    campaign.write_text("to,name,0,a.b\n+14155550100,Ann,zero,dotted\n")
    not_a_journal = tmp_path / "notes.txt"
    not_a_journal.write_text("these are my notes, not a journal\n" * 100)
    missing = tmp_path / "nowhere" / "x"

    def command(*extra: str, template: str = "Hi {name}") -> list[str]:
        return [*OVO, "send-many", str(campaign), "--message", template, *extra]

    cases = {
        "journal in a missing directory": command("--journal", f"{missing}.sqlite"),
        "results in a missing directory": command("--results", f"{missing}.csv"),
        "not a journal": command("--journal", str(not_a_journal)),
        "--from with a newline": command("--from", "Shop\nX"),
        "{0} with no such column": command(template="Hi {1}"),
        "{a[0]} with no such column": command(template="Hi {a[0]}"),
    }
    one_line_errors(cases, env)
    assert fake.messages == [], "a refused command sent something"
    assert not_a_journal.read_text().startswith("these are my notes")

    # Columns whose names str.format would take for a position or an attribute.
    done = run_ovo(command("--from", "Shop", template="{name}: {0} {a.b}"), env)
    assert done.returncode == 0, done.stderr
    assert [m["message"] for m in fake.messages] == ["Ann: zero dotted"]


def test_a_template_field_is_a_whole_column_name() -> None:
    from ovo_async._cli import _Template

    template = _Template("Hi {name}, {0} {a.b} {a[0]} {{braces}}")
    assert template.fields == ["name", "0", "a.b", "a[0]"]
    row = {"name": "Ann", "0": "zero", "a.b": "dot", "a[0]": "idx"}
    assert template.render(row) == "Hi Ann, zero dot idx {braces}"
    assert TEMPLATE  # the shared template still names plain columns


def test_the_next_campaign_on_the_same_journal_file_is_refused_before_it_sends(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    """The CLI took its key prefix from the journal's name alone: last week's campaign's
    journal reused for this week's new text reported this week's messages as sent."""
    fake, env = served
    campaign, journal = tmp_path / "c.csv", tmp_path / "campaign.sqlite"
    campaign.write_text("to,name\n+14155550100,Ann\n+14155550101,Bob\n")

    def run(template: str) -> subprocess.CompletedProcess[str]:
        command = [*OVO, "send-many", str(campaign), "--message", template]
        return run_ovo([*command, "--from", "Shop", "--journal", str(journal)], env)

    assert run("Sale! {name}").returncode == 0
    assert run("Sale! {name}").returncode == 0  # the same campaign again: replays
    refused = run("New week, {name}")
    assert refused.returncode == 1 and "belongs to the campaign" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(m["message"] for m in fake.messages) == ["Sale! Ann", "Sale! Bob"]
