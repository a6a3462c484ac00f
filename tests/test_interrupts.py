"""Ctrl-C and SIGTERM during a blocking run, as a real signal to a real process (DESIGN 7.0)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ovo_async.testing import FakeOVO

from .conftest import default_sigint, run_python, untraced_env

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 20

#: Twenty blocking runs, each interrupted by the test mid-run; each must end in
#: KeyboardInterrupt (SIGTERM is turned into one the way the `ovo` command does).
RUNS = textwrap.dedent(
    """
    import signal, sys
    from ovo_async import OVOClient
    from ovo_async._cli import interrupt_on_sigterm
    interrupt_on_sigterm()
    url, rounds = sys.argv[1], int(sys.argv[2])
    with OVOClient(api_key="k", base_url=url, default_from="OVO") as client:
        for i in range(rounds):
            items = ({"to": f"+1415555{n:04d}", "message": f"r{i} m{n}"} for n in range(10**6))
            try:
                with client.sms.send_many(items, batch_size=None, concurrency=2) as run:
                    for n, outcome in enumerate(run):
                        if n == 3:
                            print("running", i, flush=True)
                print("finished", i, flush=True)  # never: the run is endless
            except KeyboardInterrupt:
                print("interrupted", i, flush=True)
            sys.stdout.flush()
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_blocking_run_with_keyboard_interrupt_every_time(
    signum: signal.Signals,
) -> None:
    fake = FakeOVO(latency=0.005)
    with fake.serve() as url:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNS, url, str(ROUNDS)],
            cwd=ROOT,
            env=untraced_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=default_sigint,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            for i in range(ROUNDS):
                assert proc.stdout.readline().split() == ["running", str(i)]
                proc.send_signal(signum)
                line = proc.stdout.readline()
                if line.split() != ["interrupted", str(i)]:
                    proc.kill()
                    pytest.fail(f"round {i}: {line!r}; {proc.communicate()[1][-3000:]}")
            assert proc.wait(30) == 0
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    assert "Traceback" not in err and "RuntimeError" not in err, err


DAEMON = textwrap.dedent(
    """
    import sys, threading
    from ovo_async import OVOClient

    client = OVOClient(api_key="k", base_url=sys.argv[1], default_from="OVO")
    started = threading.Event()

    def work():
        items = ({"to": f"+1415555{n:04d}", "message": f"m{n}"} for n in range(10**6))
        for n, _ in enumerate(client.sms.send_many(items, batch_size=None)):
            if n == 2:
                started.set()

    threading.Thread(target=work, daemon=True).start()
    assert started.wait(30)
    print("exiting", flush=True)
    """
)


def test_a_daemon_thread_running_send_many_at_exit_prints_no_traceback() -> None:
    with FakeOVO(latency=0.01).serve() as url:
        done = run_python(DAEMON, url)
    assert done.returncode == 0 and done.stdout == "exiting\n", done.stderr
    assert "Traceback" not in done.stderr and "Exception in thread" not in done.stderr, done.stderr
