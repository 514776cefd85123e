"""A mailing's state file has one owner, and a file that cannot be used is told, not crashed on:
two real `mailing send` processes racing for one state file, a file another program holds under
an SQLite lock, damaged, truncated, foreign and read-only files; templates that ask for more
padding than a message holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ValidationError
from mobilgroup_backends.mailing import MailingState, make_plan, read_contacts
from mobilgroup_backends.mailing.lock import RunLock, lock_path
from mobilgroup_backends.mailing.plan import BAD_ROWS_KEPT, BadRows
from mobilgroup_backends.mailing.state import UNSENT_CHUNK
from tests.conftest import RunCommand
from tests.test_mailing import (
    ACCOUNTS,
    PASSWORD,
    TEMPLATE,
    mobilgroup,
    phone,
    sent_phones,
    start,
    write_contacts,
)

__all__ = ["mobilgroup"]  # the fixture, shared with test_mailing

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")

ROWS = 12
ROUNDS = 20
#: "another run (pid 4242 on web-1, started 2026-01-05 10:00:00 UTC)"
BUSY = re.compile(r"another run \(pid (\d+) on \S+, started \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\) "
                  r"is using this mailing's state file; wait for that run to end")


def finished(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    assert PASSWORD not in out + err
    return process.returncode, out, err


def first_to_end(*processes: subprocess.Popen[str], timeout: float = 60) -> int:
    """The index of the process that ends first (bounded in time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index, process in enumerate(processes):
            if process.poll() is not None:
                return index
        time.sleep(0.01)
    raise AssertionError("neither run ended")


@pytest.mark.slow  # 20 rounds of three runs, a few seconds in all
def test_two_runs_started_together_one_owns_the_state(tmp_path: Path,
                                                      mobilgroup: RunCommand) -> None:
    # Each answer takes a while, so that the first run is still sending when the second asks.
    with Emulator(ACCOUNTS, latency=0.2) as gateway:
        url = gateway.url(timeout=5)
        for round_ in range(ROUNDS):
            folder = tmp_path / f"round-{round_}"
            folder.mkdir()
            write_contacts(folder / "c.csv", ROWS)
            args = ("mailing", "send", "c.csv", "--text", TEMPLATE, "--concurrency", "1")
            runs = [start(*args, url=url, cwd=folder), start(*args, url=url, cwd=folder)]
            try:
                loser = first_to_end(*runs)
                owner = runs[1 - loser]
                code, out, err = finished(runs[loser])
                assert code == 2, (round_, out, err)
                said = BUSY.search(err)
                assert said is not None, err
                assert int(said.group(1)) == owner.pid
                assert "run the same command again" in err and "Traceback" not in err
                # The owner goes on undisturbed; stopped early, it says how to resume.
                owner.send_signal(signal.SIGINT)
                code, out, err = finished(owner)
                assert code in (0, 130), err
            finally:
                for run in runs:
                    run.kill()
                    run.communicate(timeout=30)
            gateway.latency = 0
            done = mobilgroup(*args, url=url, cwd=folder)
            assert done.returncode == 0, done.stderr
            assert f"{ROWS} of {ROWS} SMS accepted" in done.stdout
            gateway.latency = 0.2
        counted = sent_phones(gateway)
        # Every recipient once per round, and no request was recorded failed by a rival run.
        assert set(counted) == {phone(i) for i in range(1, ROWS + 1)}
        assert set(counted.values()) == {ROUNDS}
        assert len(gateway.outbox) == ROUNDS * ROWS
        assert not [m for m in gateway.requests if m.error not in (0, 7, None)]
    assert not list(tmp_path.glob("*/*.new")), "a state file built and left behind"


@contextmanager
def held(take: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that runs ``take`` (code holding ``path``) and sleeps; SIGKILLed after."""
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time\n{take}\n"
                               "print('held', flush=True); time.sleep(60)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()  # SIGKILL: no clean-up code runs
        holder.communicate(timeout=30)


def test_a_lock_held_by_a_dead_run_is_free(tmp_path: Path) -> None:
    state = tmp_path / "m.sqlite"
    with held("from mobilgroup_backends.mailing.lock import RunLock\n"
              "RunLock.take(sys.argv[1])", state) as holder:
        refused = pytest.raises(ValidationError, match=rf"another run \(pid {holder.pid} on ")
        with refused:
            RunLock.take(state)
    RunLock.take(state).release()  # the OS dropped the killed run's lock
    assert lock_path(state).exists()  # kept: deleting it would let two runs lock two files


def test_a_state_file_another_program_locks_is_told_at_once(
        mobilgroup_emulator: Emulator, tmp_path: Path, mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "c.csv", 5)
    state = tmp_path / "c.csv.mailing.sqlite"
    args = ("mailing", "send", "c.csv", "--text", TEMPLATE)
    url = mobilgroup_emulator.url()
    assert mobilgroup(*args, url=url, cwd=tmp_path).returncode == 0
    with held("import sqlite3\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "db.execute('BEGIN EXCLUSIVE')", state):
        for command in (args, ("mailing", "report", "--state", state.name, "--force")):
            started = time.monotonic()
            done = mobilgroup(*command, url=url, cwd=tmp_path)
            took = time.monotonic() - started
            assert done.returncode == 2, done.stderr
            assert took < 2.0
            assert f"--state='{state}'" in done.stderr or f"--state='{state.name}'" in done.stderr
            assert "locked by another program" in done.stderr
            assert "close that program, then run the same command again" in done.stderr
    assert len(mobilgroup_emulator.outbox) == 5


def damage_middle(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.seek(size // 2 // 4096 * 4096)
        handle.write(bytes(range(256)) * 16)


def truncate(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 2 + 100)


def foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('app', 'someone else')")
        db.execute("CREATE TABLE requests (id INTEGER)")
    db.close()


def not_sqlite(path: Path) -> None:
    path.write_bytes(b"phone;name\n" * 500)


def mangled_meta(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'not json' WHERE key = 'options'")
    db.close()


@pytest.mark.parametrize("spoil", [damage_middle, truncate, foreign, not_sqlite, mangled_meta])
def test_a_damaged_state_file_is_refused_clearly(tmp_path: Path, mobilgroup: RunCommand,
                                                 spoil: object) -> None:
    write_contacts(tmp_path / "c.csv", 400)  # many pages: the damage lands among the rows
    state = tmp_path / "c.csv.mailing.sqlite"
    args = ("mailing", "send", "c.csv", "--text", TEMPLATE)
    with Emulator(ACCOUNTS) as gateway:
        url = gateway.url()
        assert mobilgroup(*args, url=url, cwd=tmp_path).returncode == 0
        assert callable(spoil)
        spoil(state)
        for command in (args, ("mailing", "report", "--state", state.name, "--force")):
            done = mobilgroup(*command, url=url, cwd=tmp_path)
            assert done.returncode == 2, done.stdout + done.stderr
            assert done.stderr.startswith(f"mobilgroup: --state='{state.name}': damaged, or not "
                                          "a mailing state file (")
            assert "mailing report --state" in done.stderr
            assert "give --state a new file" in done.stderr and "Traceback" not in done.stderr
        assert len(gateway.outbox) == 400  # nothing was sent again


def test_a_read_only_state_file_or_folder_is_told(mobilgroup_emulator: Emulator,
                                                  tmp_path: Path) -> None:
    write_contacts(tmp_path / "c.csv", 3)
    state = tmp_path / "c.csv.mailing.sqlite"
    args = ["mailing", "send", "c.csv", "--text", TEMPLATE]
    env = {**os.environ, "MOBILGROUP_URL": mobilgroup_emulator.url()}

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        # Root writes read-only files anyway: run as root without that power, as a user is.
        prefix: list[str] = []
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root, and setpriv (util-linux) is not there to drop "
                            "the power to write read-only files")
            prefix = [setpriv, "--inh-caps=-dac_override", "--bounding-set=-dac_override"]
        return subprocess.run([*prefix, sys.executable, "-m", "mobilgroup_backends", *command],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                              check=False)

    assert run(*args).returncode == 0
    state.chmod(0o444)
    for command in (args, ["mailing", "report", "--state", state.name, "--force"]):
        done = run(*command)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"mobilgroup: --state='{state.name}': the state file "
                                      "cannot be ")
        assert "chmod u+w" in done.stderr or "check the path" in done.stderr
        assert "Traceback" not in done.stderr
    state.chmod(0o644)
    tmp_path.chmod(0o555)  # the folder: no lock file, no state file can be made
    try:
        done = run(*args, "--state", "new.sqlite")
    finally:
        tmp_path.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "cannot create its lock file new.sqlite.lock" in done.stderr
    assert "a folder you can write to" in done.stderr and "Traceback" not in done.stderr
    assert len(mobilgroup_emulator.outbox) == 3


def offline_client() -> MobilgroupClient:
    """A client that only prepares messages: a plan is made without sending anything."""
    return MobilgroupClient("1000", "login", "secret", endpoint="http://127.0.0.1:9/extxml.php")


def test_create_never_replaces_a_state_file(tmp_path: Path) -> None:
    write_contacts(tmp_path / "c.csv", 3)
    plan = make_plan(read_contacts(tmp_path / "c.csv"), TEMPLATE, offline_client())
    state = tmp_path / "m.sqlite"
    with MailingState.create(state, plan, source="c.csv", template=TEMPLATE) as first:
        ids = [request.request_id for request in first.unsent()]
        with pytest.raises(ValidationError, match="another run"):
            MailingState(state)
    with pytest.raises(ValidationError, match="the file exists already"):
        MailingState.create(state, plan, source="c.csv", template=TEMPLATE)
    with MailingState.open_or_create(state, plan, source="c.csv", template=TEMPLATE) as again:
        assert [request.request_id for request in again.unsent()] == ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "m.sqlite", "m.sqlite.lock"]
    assert state.stat().st_mode & 0o077 == 0  # phones and texts: for its owner's eyes
    with pytest.raises(ValidationError, match="no such file"):
        MailingState(tmp_path / "gone.sqlite")
    assert not (tmp_path / "gone.sqlite.lock").exists()


@pytest.mark.parametrize(("template", "said"), [
    ("{name:>400000000}", "pads the field wider than a whole message (140 characters)"),
    ("Hi {name:0400000000}", "pads the field wider than a whole message"),
    ("{name:*^141}", "pads the field wider than a whole message"),
    ("{name:{order}}", "holds a field of its own"),
    ("{name:>{order}}", "holds a field of its own"),
    ("{name:!!!}", "is not a format for text"),
])
def test_a_template_cannot_pad_past_a_message(tmp_path: Path, mobilgroup: RunCommand,
                                              mobilgroup_emulator: Emulator, template: str,
                                              said: str) -> None:
    write_contacts(tmp_path / "c.csv", 2000)
    for extra in ((), ("--dry-run",)):
        started = time.monotonic()
        done = mobilgroup("mailing", "send", "c.csv", "--text", template, *extra,
                          url=mobilgroup_emulator.url(), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and "--text" in done.stderr
        assert "1 row(s)" not in done.stderr  # refused as a template, before any row
        assert time.monotonic() - started < 2.0
    assert not mobilgroup_emulator.requests


def test_padding_that_fits_a_message_still_works(tmp_path: Path, mobilgroup: RunCommand,
                                                 mobilgroup_emulator: Emulator) -> None:
    write_contacts(tmp_path / "c.csv", 1)
    done = mobilgroup("mailing", "send", "c.csv", "--text", "[{order:>8}] {name:.6}",
                      url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [m.text for m in mobilgroup_emulator.outbox] == ["[     N-1] Клиент"]


def test_report_and_send_are_refused_while_another_run_holds_the_state(
        mobilgroup_emulator: Emulator, tmp_path: Path, mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "c.csv", 3)
    state = tmp_path / "c.csv.mailing.sqlite"
    url = mobilgroup_emulator.url()
    assert mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, url=url,
                      cwd=tmp_path).returncode == 0
    with held("from mobilgroup_backends.mailing.lock import RunLock\n"
              "RunLock.take(sys.argv[1])", state) as holder:
        for command in (("send", "c.csv", "--text", TEMPLATE),
                        ("report", "--state", state.name, "--force")):
            started = time.monotonic()
            done = mobilgroup("mailing", *command, url=url, cwd=tmp_path)
            assert time.monotonic() - started < 2.0
            assert done.returncode == 2, done.stderr
            said = BUSY.search(done.stderr)
            assert said is not None and int(said.group(1)) == holder.pid, done.stderr
    assert len(mobilgroup_emulator.requests) == 3  # the first run's sends, nothing since


def test_what_a_killed_build_left_is_cleared_by_the_next_owner(tmp_path: Path) -> None:
    write_contacts(tmp_path / "c.csv", 3)
    plan = make_plan(read_contacts(tmp_path / "c.csv"), TEMPLATE, offline_client())
    state = tmp_path / "m[1].sqlite"  # a name glob would misread
    leftover = tmp_path / "m[1].sqlite.k3j2_x.new"
    leftover.write_bytes(b"half a database")
    unrelated = tmp_path / "m1.sqlite.k3j2_x.new"
    unrelated.write_bytes(b"not ours")
    with MailingState.open_or_create(state, plan, source="c.csv", template=TEMPLATE) as opened:
        assert len(opened.unsent()) == 3
    assert not leftover.exists() and unrelated.exists()



def test_unsent_requests_are_read_a_chunk_at_a_time_around_recorded_outcomes(
        tmp_path: Path) -> None:
    rows = UNSENT_CHUNK * 2 + 7
    write_contacts(tmp_path / "c.csv", rows)
    with make_plan(read_contacts(tmp_path / "c.csv"), TEMPLATE, offline_client()) as plan, \
            MailingState.create(tmp_path / "m.sqlite", plan, source="c.csv",
                                template=TEMPLATE) as state:
        unsent = state.unsent()
        assert len(unsent) == plan.requests == rows
        everything = [request.seq for request in unsent]
        assert everything == list(range(rows))
        # Outcomes written while the requests are being read (as a run does), on both sides of
        # a chunk's end: accepted ones are not read again, failed ones are.
        seen = []
        for request in unsent:
            seen.append(request.seq)
            if request.seq % 3 == 0 or request.seq == UNSENT_CHUNK - 1:
                state.record([(request.seq, request.seq % 2 == 0, 1, False, None)])
        assert seen == everything
        left = [request.seq for request in state.unsent()]
        assert left == [seq for seq in everything
                        if not ((seq % 3 == 0 or seq == UNSENT_CHUNK - 1) and seq % 2 == 0)]
        assert len(state.unsent()) == len(left)
    assert not plan.path.exists()


@pytest.mark.parametrize("change", ["rows", "not utf-8"])
def test_a_csv_changed_after_it_was_checked_is_refused(tmp_path: Path, change: str) -> None:
    """The mailing's identity is the digest of the file as checked: rows read from a file
    changed since (and planned with that identity) would resume as another mailing's."""
    source = write_contacts(tmp_path / "c.csv", 3)
    contacts = read_contacts(source)
    with source.open("ab") as out:
        out.write(b"79031234599;\xd0;Z-9\r\n" if change == "not utf-8" else
                  "79031234599;Зоя;Z-9\r\n".encode())
    with pytest.raises(ValidationError, match="changed while it was being read"):
        make_plan(contacts, TEMPLATE, offline_client())
    assert not list(tmp_path.glob("*.sqlite"))


def test_bad_rows_past_the_ones_kept_are_counted(tmp_path: Path, mobilgroup: RunCommand,
                                                 mobilgroup_emulator: Emulator) -> None:
    rows = BAD_ROWS_KEPT + 60
    source = tmp_path / "c.csv"
    with source.open("w", encoding="utf-8") as out:
        out.write("phone;name;order\n" + "79031234567;Анна;A-1\n")
        out.writelines(f"12{i};Клиент;N-{i}\n" for i in range(rows))
    with pytest.raises(BadRows) as refused:
        make_plan(read_contacts(source), TEMPLATE, offline_client(), source="c.csv")
    assert refused.value.count == rows and len(refused.value.rows) == BAD_ROWS_KEPT
    assert [line for line, _ in refused.value.rows[:3]] == [3, 4, 5]
    assert f"{rows} row(s) cannot be sent" in str(refused.value)
    url = mobilgroup_emulator.url()
    shown = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, url=url, cwd=tmp_path)
    assert shown.returncode == 2
    assert f"... and {rows - 50} more (--json lists the first {BAD_ROWS_KEPT})" in shown.stderr
    as_json = json.loads(mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--json",
                                    url=url, cwd=tmp_path).stdout)
    assert as_json["bad_rows_count"] == rows and len(as_json["bad_rows"]) == BAD_ROWS_KEPT
    assert not mobilgroup_emulator.requests
