"""The `ovo` command, run as users run it: subprocesses, a real terminal, Ctrl-C."""

from __future__ import annotations

import csv
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovo_async import count_segments
from ovo_async.testing import FakeOVO

from .conftest import run_python

ROOT = Path(__file__).resolve().parent.parent
OVO = [sys.executable, "-m", "ovo_async"]
TEMPLATE = "Hi {name}, your code is {code}"


def write_campaign(path: Path, rows: int = 2000, seed: int = 13) -> dict[str, int]:
    """A CSV as people have them: mixed number formats, bad rows, duplicate rows.

    Returns how many times each valid (number, text) should be sent.
    """
    rng = random.Random(seed)
    expected: Counter[str] = Counter()
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["to", "name", "code"])
        previous: list[str] | None = None
        for i in range(rows):
            n = 5550000 + i
            formats = [
                f"+1415{n:07d}",
                f"(415) {n // 10000:03d}-{n % 10000:04d}",
                f"415.{n // 10000:03d}.{n % 10000:04d}",
            ]
            row = [rng.choice(formats), f"Name{i}", f"{i:04d}"]
            if i % 97 == 5:
                row[0] = "call me"  # invalid number
            elif i % 101 == 7:
                row[0] = "415 555"  # too short
            elif i % 50 == 9 and previous is not None:
                row = list(previous)  # an exact duplicate row: sent once per row
            writer.writerow(row)
            previous = row
            if row[0] not in ("call me", "415 555"):
                digits = "".join(c for c in row[0] if c.isdigit())
                e164 = "+" + (
                    digits if digits.startswith("1") and len(digits) == 11 else "1" + digits
                )
                expected[f"{e164}|{TEMPLATE.format(name=row[1], code=row[2])}"] += 1
    return dict(expected)


@pytest.fixture
def served() -> Iterator[tuple[FakeOVO, dict[str, str]]]:
    fake = FakeOVO(latency=0.02)
    with fake.serve() as url:
        env = dict(os.environ, OVO_BASE_URL=url, OVO_API_KEY="k", COLUMNS="100")
        yield fake, env


def send_many(campaign: Path, *extra: str) -> list[str]:
    """`ovo send-many` on a campaign file with the test's template, region and sender."""
    return [
        *OVO,
        "send-many",
        str(campaign),
        "--message",
        TEMPLATE,
        "--region",
        "US",
        "--from",
        "Shop",
        *extra,
    ]


def stored(fake: FakeOVO) -> Counter[str]:
    return Counter(f"{m['to']}|{m['message']}" for m in fake.messages)


def run_together(
    commands: list[list[str]], env: dict[str, str] | None = None
) -> list[tuple[int, str, str]]:
    """Run commands at once (each is a process start): (exit status, stdout, stderr)
    of each. Any still running when the test gives up is killed."""
    procs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for command in commands
    ]
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            results.append((proc.returncode, out, err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_a_campaign_sends_once_per_valid_row_and_reports_every_row(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = served
    campaign, results = tmp_path / "c.csv", tmp_path / "results.csv"
    expected = write_campaign(campaign)
    done = subprocess.run(
        send_many(campaign, "--results", str(results)),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr  # some rows are invalid
    assert stored(fake) == expected
    with results.open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["row"]) for r in rows) == list(range(1, 2001))
    assert list(rows[0]) == ["row", "to", "message_id", "status", "error"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2000 - sum(expected.values())
    assert all(r["error"].startswith("to:") for r in failed)
    assert "\x1b[" not in done.stdout  # piped: plain lines, no progress bar
    assert "2000/2000 done" in done.stdout


def test_exit_status_zero_when_all_sent_and_two_for_usage(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    _, env = served
    clean = tmp_path / "clean.csv"
    clean.write_text("to,name,code\n+14155550123,Ann,1\n+14155550124,Bob,2\n")

    def ovo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OVO, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )

    assert ovo("send-many", str(clean), "--message", TEMPLATE, "--from", "Shop").returncode == 0
    usage = [
        ("send-many", str(clean), "--message", "Hi {nom}", "--from", "Shop"),  # no such column
        ("send-many", str(tmp_path / "missing.csv"), "--message", "x"),
        ("send-many", str(clean)),  # no --message
        ("send-many", str(clean), "--message", "Hi {}", "--from", "Shop"),  # positional
        ("send-many", str(clean), "--message", "Hi {0}", "--from", "Shop"),
        ("send-many", str(clean), "--message", "{name:>999999999}", "--from", "Shop"),
        ("send-many", str(clean), "--message", "{name!r}", "--from", "Shop"),
        ("send-many", str(clean), "--message", "{name.upper}", "--from", "Shop"),
        ("send-many", str(clean), "--message", "Hi {name", "--from", "Shop"),
        ("send-many", str(clean), "--message", "x", "--from", "Shop", "--rate", "nan"),
        ("send", "--to", "nope", "--message", "Hi", "--from", "Shop"),
        ("frobnicate",),
    ]
    for args in usage:
        assert ovo(*args).returncode == 2, args
    sent = ovo("send", "--to", "+14155550123", "--message", "Hi", "--from", "Shop")
    assert sent.returncode == 0 and sent.stdout.split()[1] == "queued"
    message_id = sent.stdout.split()[0]
    # The served fake runs on real time: by now (a process start later) it may be sent,
    # or on a slow machine delivered.
    shown = ovo("status", message_id).stdout.split()
    assert shown[0] == message_id and shown[1] in ("queued", "sent", "delivered"), shown
    assert ovo("status", "sm_nope").returncode == 1


GOOD_ROWS = "+14155550100,First,0\n+14155550101,Second,1\n"
MALFORMED_CSV: dict[str, bytes] = {
    # A short row: "Hi {name}" went out as "Hi , your code is ".
    "short_row": f"to,name,code\n{GOOD_ROWS}+14155550124\n".encode(),
    # Which "to" was used depended on DictReader keeping the last.
    "column_twice": b"to,to,name,code\n+14155550123,+14155550124,Ann,1\n",
    # These stopped the run halfway with a traceback.
    "latin_1": f"to,name,code\n{GOOD_ROWS}+14155550123,Jos\u00e9,1\n".encode("latin-1"),
    "huge_field": f"to,name,code\n{GOOD_ROWS}+14155550123,Ann,".encode() + b"9" * 200_000,
}


def test_a_malformed_csv_is_a_usage_error_before_anything_is_sent(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = served
    for name, content in MALFORMED_CSV.items():
        (tmp_path / f"{name}.csv").write_bytes(content)
    results = run_together([send_many(tmp_path / f"{name}.csv") for name in MALFORMED_CSV], env)
    for name, (code, _, err) in zip(MALFORMED_CSV, results, strict=True):
        assert code == 2, (name, err)
        assert f"{name}.csv" in err and "Traceback" not in err, (name, err)
    # Not even the good rows before the bad one.
    assert fake.messages == []


def test_any_journal_file_name_makes_a_usable_key_prefix(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    # The prefix came from the file name as is: "\u00fc" or a trailing space in it was
    # refused as an idempotency_prefix, so the campaign could not run at all.
    fake, env = served
    campaign = tmp_path / "c.csv"
    campaign.write_text("to,name,code\n+14155550123,Ann,1\n")
    names = ("kampagne-\u00fc.sqlite", "my run .sqlite")
    commands = [[*send_many(campaign), "--journal", str(tmp_path / name)] for name in names]
    for code, _, err in run_together(commands, env):
        assert code == 0, err
    keys = sorted(r.headers["idempotency-key"] for r in fake.requests if r.endpoint == "batch")
    prefixes = [key.rsplit("-t", 1)[0] for key in keys]
    assert prefixes == ["ovo-kampagne-_", "ovo-my run"]


def test_ctrl_c_halfway_then_the_same_journal_finishes_without_sending_twice(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = served
    campaign, journal = tmp_path / "c.csv", tmp_path / "run.sqlite"
    expected = write_campaign(campaign)
    command = send_many(campaign, "--batch-size", "20", "--journal", str(journal))
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stderr is not None
    # Plain progress lines come every tenth of the rows: stop after the second one. Read on
    # a thread with a deadline, so a CLI that hangs fails this test instead of the suite.
    lines: list[str] = []
    out = proc.stdout
    reader = threading.Thread(
        target=lambda: lines.extend(out.readline() for _ in range(2)), daemon=True
    )
    reader.start()
    reader.join(60)
    if reader.is_alive():
        proc.kill()
        pytest.fail(f"no progress from the CLI within 60 s: {proc.communicate()[1][-2000:]}")
    assert all("done" in line for line in lines), lines
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "stopped:" in err and "--journal" in err
    partial = stored(fake)
    assert 0 < sum(partial.values()) < sum(expected.values())
    again = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False
    )
    assert again.returncode == 1  # the invalid rows
    assert stored(fake) == expected  # every valid row exactly once, across both runs


def test_estimate_agrees_with_count_segments(
    served: tuple[FakeOVO, dict[str, str]], tmp_path: Path
) -> None:
    _, env = served
    campaign = tmp_path / "c.csv"
    expected = write_campaign(campaign, rows=300)
    template = TEMPLATE + " \u2019 " + "x" * 60
    done = subprocess.run(
        [*OVO, "estimate", str(campaign), "--message", template, "--region", "US"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = dict(
        line.split(": ", 1)
        for line in done.stdout.splitlines()
        if ": " in line and not line.startswith("  ")
    )
    with campaign.open() as f:
        rendered = [template.format(**row) for row in csv.DictReader(f)]
    valid_rows = sum(expected.values())
    assert int(report["messages"]) == valid_rows
    assert int(report["invalid rows"]) == 300 - valid_rows
    per_text = {text: count_segments(text).segments for text in rendered}
    with campaign.open() as f:
        valid_texts = [
            template.format(**row)
            for row in csv.DictReader(f)
            if row["to"] not in ("call me", "415 555")
        ]
    assert int(report["segments"]) == sum(per_text[t] for t in valid_texts)
    assert int(report["UCS-2"]) == valid_rows and int(report["GSM-7"]) == 0


def test_progress_bar_on_a_terminal(served: tuple[FakeOVO, dict[str, str]], tmp_path: Path) -> None:
    _, env = served
    campaign = tmp_path / "c.csv"
    write_campaign(campaign, rows=400)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        send_many(campaign, "--batch-size", "10"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(env, TERM="xterm"),
        cwd=ROOT,
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(30)
    text = screen.decode("utf-8", "replace")
    assert "/400" in text  # the total
    assert "msg/s" in text  # the rate
    assert "ETA" in text
    assert "\x1b[" in text  # drawn, not printed line by line
    assert "done:" in text  # and a summary at the end


def test_ovo_fake_prints_its_settings(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*OVO, "fake", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline().strip(), proc.stdout.readline().strip()]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert lines[0].startswith("OVO_BASE_URL=http://127.0.0.1:")
    assert lines[1].startswith("OVO_API_KEY=")


def test_ovo_fake_refuses_a_port_it_cannot_serve_on() -> None:
    # 99999 served on some other port, silently; a taken port was a traceback.
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    expected = {"99999": 2, "-5": 2, str(taken.getsockname()[1]): 1}
    try:
        results = run_together([[*OVO, "fake", "--port", port] for port in expected])
    finally:
        taken.close()
    for (port, code_wanted), (code, out, err) in zip(expected.items(), results, strict=True):
        assert out == "" and "Traceback" not in err, (port, err)
        assert code == code_wanted, (port, err)


@pytest.mark.parametrize("command", ["send", "send-many", "estimate", "status", "fake", "demo"])
def test_every_command_has_help(command: str) -> None:
    done = subprocess.run(
        [*OVO, command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=30, check=False
    )
    assert done.returncode == 0 and "Usage: ovo" in done.stdout
    if command != "demo":
        assert "Example" in done.stdout or "example" in done.stdout


def test_version() -> None:
    import ovo_async

    for code in (
        "import sys; from ovo_async.__main__ import main; sys.exit(main(['--version']))",
        # Without the cli extra too.
        "import sys; sys.modules['click'] = None\n"
        "from ovo_async.__main__ import main; sys.exit(main(['--version']))",
    ):
        done = run_python(code)
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"ovo-async {ovo_async.__version__}\n"


def test_the_demo_without_the_fake_extra_says_which_to_install() -> None:
    done = run_python(
        "import sys; sys.modules['uvicorn'] = None\n"
        "from ovo_async.__main__ import main; sys.exit(main(['demo']))"
    )
    assert done.returncode == 2 and "ovo-async[fake]" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_without_the_cli_extra_it_says_which_to_install() -> None:
    code = (
        "import sys; sys.modules['click'] = None\n"
        "from ovo_async.__main__ import main\n"
        "sys.exit(main(['send']))"
    )
    done = run_python(code)
    assert done.returncode == 2
    assert "ovo-async[cli]" in done.stderr
