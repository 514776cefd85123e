"""`mobilgroup mailing` against the emulator: checked before anything is spent, grouped, resumable
after SIGKILL and Ctrl-C, exactly once under faults, and reported on.

The command runs in this process where what it prints, writes and sends is tested; as a real
program where the process is: killed, or interrupted by a signal."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from mobilgroup_backends.emulator import Emulator
from tests.conftest import RunCommand
from tests.helpers import wait_until

PASSWORD = "demo-password"
ACCOUNTS = [f"1000:demo:{PASSWORD}:100000"]
TEMPLATE = "Здравствуйте, {name}! Ваш заказ {order} готов"

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


def phone(i: int) -> str:
    return f"7903{i:07d}"


def write_contacts(path: Path, count: int, *, separator: str = ";", bom: bool = True,
                   same_text: bool = False) -> Path:
    rows = [f"phone{separator}name{separator}order"]
    for i in range(1, count + 1):
        name = "Анна" if same_text else f"Клиент {i}"
        order = "A-1" if same_text else f"N-{i}"
        rows.append(f"{phone(i)}{separator}{name}{separator}{order}")
    path.write_bytes(("\ufeff" if bom else "").encode() + "\r\n".join(rows).encode() + b"\r\n")
    return path


def start(*args: str, url: str, cwd: Path, temp: Path | None = None) -> subprocess.Popen[str]:
    environment = {**os.environ, "MOBILGROUP_URL": url}  # the module's fixture cleared the rest
    if temp is not None:  # the temporary folder, where a mailing plans
        environment["TMPDIR"] = str(temp)
    return subprocess.Popen([sys.executable, "-m", "mobilgroup_backends", *args], cwd=cwd,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture
def mobilgroup(mobilgroup_command: RunCommand) -> RunCommand:
    def run(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        done = mobilgroup_command(*args, url=url, cwd=cwd)
        assert PASSWORD not in done.stdout + done.stderr
        return done

    return run


def accepted_in(state: Path) -> int:
    """Accepted requests in the state file, read as another process would (never creating it)."""
    if not state.exists():
        return 0
    with sqlite3.connect(f"file:{state}?mode=rw", uri=True, timeout=5) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM requests WHERE state = 'accepted'").fetchone()
    return int(count)


def wait_until_accepted(state: Path, count: int, process: subprocess.Popen[str]) -> int:
    """Wait until ``count`` requests are accepted while the mailing runs; the number seen."""
    seen = 0

    def got_there_or_ended() -> bool:
        nonlocal seen
        seen = accepted_in(state)
        return seen >= count or process.poll() is not None

    wait_until(got_there_or_ended, timeout=60)
    if seen < count:
        raise AssertionError(f"the mailing did not get to {count} accepted requests while running")
    return seen


def sent_phones(gateway: Emulator) -> Counter[str]:
    return Counter(number for message in gateway.outbox for number in message.phones)


def test_a_mailing_from_csv_to_report(mobilgroup_emulator: Emulator, tmp_path: Path,
                                      mobilgroup: RunCommand) -> None:
    contacts = tmp_path / "clients.csv"
    contacts.write_text("phone,name,order\n"
                        "+7 903 000-00-01,Анна,A-1\n"
                        "79030000002,Борис,B-2\n"
                        "\n"
                        "79030000000,Дарья,C-3\n"       # undeliverable in the emulator
                        "+7 (903) 000-00-01,Анна,A-1\n",  # the same phone with the same text
                        encoding="utf-8")
    url = mobilgroup_emulator.url()
    done = mobilgroup("mailing", "send", "clients.csv", "--text", TEMPLATE, "--valid", "2",
                      url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 of 3 SMS accepted" in done.stdout
    assert sorted(sent_phones(mobilgroup_emulator).items()) == [
        ("79030000000", 1), ("79030000001", 1), ("79030000002", 1)]
    texts = {m.phones[0]: m.text for m in mobilgroup_emulator.outbox}
    assert texts["79030000001"] == "Здравствуйте, Анна! Ваш заказ A-1 готов"
    assert {m.valid_hours for m in mobilgroup_emulator.outbox} == {2}
    state = tmp_path / "clients.csv.mailing.sqlite"
    assert accepted_in(state) == 3

    # The same command again sends nothing more.
    again = mobilgroup("mailing", "send", "clients.csv", "--text", TEMPLATE, "--valid", "2",
                       url=url, cwd=tmp_path)
    assert again.returncode == 0 and len(mobilgroup_emulator.outbox) == 3

    # Too early: refused, and the gateway is not asked.
    early = mobilgroup("mailing", "report", url=url, cwd=tmp_path)
    assert early.returncode == 2, early.stderr
    assert early.stderr.startswith("mobilgroup: delivery report: too early: ")
    assert " UTC (in " in early.stderr and "add --force to ask now" in early.stderr
    ids = [m.request_id for m in mobilgroup_emulator.outbox]
    assert sum(mobilgroup_emulator.status_queries(i) for i in ids) == 0

    # Three hours later, for the gateway and for the state file's clock.
    mobilgroup_emulator.clock.advance(timedelta(hours=3))
    with sqlite3.connect(state) as db:
        past = (datetime.now(timezone.utc) - timedelta(hours=3)).isoformat(timespec="seconds")
        db.execute("UPDATE requests SET accepted_at = ?", (past,))
    report = mobilgroup("mailing", "report", "--csv", "report.csv", url=url, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert "2 delivered, 1 undelivered" in report.stdout
    assert [mobilgroup_emulator.status_queries(i) for i in ids] == [1, 1, 1]  # once each
    with (tmp_path / "report.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["line"], r["phone"], r["status"]) for r in rows] == [
        ("2", "79030000001", "delivered"), ("3", "79030000002", "delivered"),
        ("5", "79030000000", "undelivered")]
    assert {r["request_id"] for r in rows} == {str(i) for i in ids}

    as_json = mobilgroup("mailing", "report", "--json", url=url, cwd=tmp_path)
    assert json.loads(as_json.stdout)["summary"] == {"delivered": 2, "undelivered": 1}
    folder = mobilgroup("mailing", "report", "--csv", str(tmp_path), url=url, cwd=tmp_path)
    assert folder.returncode == 2
    assert "--csv" in folder.stderr and "give a path in a folder you can write to" in folder.stderr


def test_bad_rows_are_reported_before_anything_is_spent(mobilgroup_emulator: Emulator,
                                                        tmp_path: Path, mobilgroup: RunCommand) -> None:
    (tmp_path / "bad.csv").write_text(
        "phone;name;order\n"
        "79031234567;Анна;A-1\n"
        "12345;Борис;B-2\n"
        "79031234568;;C-3\n"
        "79031234569;Дарья 🎉;D-4\n"
        "79031234570;" + "Г" * 140 + ";E-5\n"
        "79031234571;Дмитрий\n", encoding="utf-8")
    done = mobilgroup("mailing", "send", "bad.csv", "--text", TEMPLATE,
                      url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert "5 row(s) cannot be sent, so nothing was sent" in lines[0]
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "12345" in lines[1] and "name ''" in lines[2] and "--replace-unencodable" in lines[3]
    assert "--split or --truncate" in lines[4] and "2 cells" in lines[5]
    assert len(mobilgroup_emulator.outbox) == 0 and not mobilgroup_emulator.requests
    assert not (tmp_path / "bad.csv.mailing.sqlite").exists()

    as_json = mobilgroup("mailing", "send", "bad.csv", "--text", TEMPLATE, "--json",
                         url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert as_json.returncode == 2 and as_json.stderr == ""
    assert [row["line"] for row in json.loads(as_json.stdout)["bad_rows"]] == [3, 4, 5, 6, 7]

    unknown = mobilgroup("mailing", "send", "bad.csv", "--text", "Hi {first_name}",
                         url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert unknown.returncode == 2 and "{first_name} is not a column" in unknown.stderr
    assert len(mobilgroup_emulator.outbox) == 0


GOOD_CSV = "phone;name;order\n79031234567;Анна;A-1\n".encode()


@pytest.mark.parametrize(("files", "args", "said"), [
    ({}, ("send", "c.csv", "--concurrency", "0"), ["--concurrency", "out of range", "1 to 64"]),
    ({}, ("send", "c.csv", "--dry-run", "--price", "abc"), ["--price", "not a price", "2.45"]),
    ({}, ("send", "missing.csv"), ["CSV", "missing.csv", "give the path of a CSV file"]),
    ({"c.csv": "phone;name\n79031234567;\xd0\n".encode("latin-1")}, ("send", "c.csv"),
     ["CSV", "not UTF-8 text (byte 24)", "save it as UTF-8"]),
    ({"c.csv": b"\n"}, ("send", "c.csv"), ["CSV", "the file is empty", "'phone;name'"]),
    ({"c.csv": b"tel;name\n79031234567;A\n"}, ("send", "c.csv"),
     ["no 'phone' column (columns: tel, name)", "name the column of phone numbers 'phone'"]),
    ({"c.csv": b"phone;name;order;name\n79031234567;A;B;C\n"}, ("send", "c.csv"),
     ["column(s) name appear twice", "give every column its own name"]),
    ({"c.csv": b"phone;name;order\n"}, ("send", "c.csv"), ["no rows to send", "add rows below"]),
    ({}, ("send", "c.csv", "--text", "Hi {name"), ["--text", "not a valid template"]),
    ({}, ("send", "c.csv", "--text", " "), ["--text", "the template is empty", "{name}"]),
    ({}, ("send", "c.csv", "--text", "Order {order:d}"),
     ["1 row(s) cannot be sent", "line 2: ", "without a number format"]),
    ({"junk.sqlite": b"not a database, not at all" * 100}, ("send", "c.csv", "--state",
                                                            "junk.sqlite"),
     ["--state", "not a mailing state file", "give --state a new file"]),
    ({}, ("report",), ["--state", "0 *.mailing.sqlite files", "name the mailing's state file"]),
    ({}, ("report", "--state", "gone.sqlite"), ["--state", "no such file"]),
], ids=["concurrency", "price", "no file", "not utf-8", "empty", "no phone column",
        "column twice", "no rows", "bad template", "empty template", "number format",
        "not a state file", "no state file", "state file missing"])
def test_a_mistake_is_refused_naming_the_option_and_the_fix(
        mobilgroup_emulator: Emulator, tmp_path: Path, mobilgroup: RunCommand,
        files: dict[str, bytes], args: tuple[str, ...], said: list[str]) -> None:
    (tmp_path / "c.csv").write_bytes(GOOD_CSV)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    if args[0] == "send" and "--text" not in args:
        args = (*args, "--text", TEMPLATE)
    done = mobilgroup("mailing", *args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("mobilgroup: ")
    for text in said:
        assert text in done.stderr
    assert not mobilgroup_emulator.requests


def test_dry_run_counts_and_sends_nothing(mobilgroup_emulator: Emulator, tmp_path: Path,
                                          mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "same.csv", 250, separator=",", bom=False, same_text=True)
    done = mobilgroup("mailing", "send", "same.csv", "--text", TEMPLATE + ". " + "x" * 120,
                      "--split", "--dry-run", "--price", "2,5", "--json",
                      url="mobilgroup://nobody:x@1?endpoint=http%3A%2F%2F127.0.0.1%3A9", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    # Two parts per row, 250 phones per part: 3 requests of 100, 100 and 50 phones each.
    assert (plan["requests"], plan["messages"], plan["recipients"]) == (6, 500, 250)
    assert plan["cost"] == "1250.0"
    assert plan["samples"][0]["text"].startswith("Здравствуйте, Анна!")

    # The same on a terminal, with a phone repeated, with and without a price.
    with (tmp_path / "same.csv").open("a", encoding="utf-8") as contacts:
        contacts.write(f"{phone(7)},Анна,A-1\n")
    args = ("mailing", "send", "same.csv", "--text", TEMPLATE, "--dry-run")
    done = mobilgroup(*args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:4] == [
        "dry run: nothing sent", "  recipients: 250 (1 repeated row(s) merged)",
        "  requests:   3 (rows with the same text share a request)", "  SMS:        250"]
    assert "  cost:       give --price (one SMS) for an estimate" in done.stdout
    assert f"  {phone(1)}: Здравствуйте, Анна! Ваш заказ A-1 готов" in done.stdout
    done = mobilgroup(*args, "--price", "0.5", url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert "  cost:       125.0 (250 x 0.5)" in done.stdout
    assert not mobilgroup_emulator.requests
    assert not (tmp_path / "same.csv.mailing.sqlite").exists()


def test_identical_texts_go_in_batches_and_an_account_refusal_stops_the_run(
        mobilgroup_emulator: Emulator, tmp_path: Path, mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "same.csv", 250, same_text=True)
    args = ("mailing", "send", "same.csv", "--text", TEMPLATE, "--concurrency", "1")
    mobilgroup_emulator.account.balance = Decimal(150)  # the second batch of 100 is refused
    done = mobilgroup(*args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 5
    assert "the account must be fixed first: gateway error 9" in done.stderr
    assert "run the same command again to send the rest" in done.stderr
    # The third batch was not spent on the same refusal.
    assert [len(m.phones) for m in mobilgroup_emulator.outbox] == [100]
    assert len(mobilgroup_emulator.requests) == 2
    report = mobilgroup("mailing", "report", "--force", "--json", url=mobilgroup_emulator.url(),
                        cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["summary"]["not_sent"] == 150

    mobilgroup_emulator.account.balance = Decimal(1000)
    done = mobilgroup(*args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [len(m.phones) for m in mobilgroup_emulator.outbox] == [100, 100, 50]
    assert set(sent_phones(mobilgroup_emulator).values()) == {1}


def test_money_running_out_mid_mailing_stops_it_and_the_same_command_resumes(
        mobilgroup_emulator: Emulator, tmp_path: Path, mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "people.csv", 60)  # personalised: one request per row
    args = ("mailing", "send", "people.csv", "--text", TEMPLATE, "--concurrency", "4", "--json")
    mobilgroup_emulator.account.balance = Decimal(20)
    done = mobilgroup(*args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 5, done.stderr
    summary = json.loads(done.stdout)
    assert summary["stopped"]["verdict"] == "account" and summary["stopped"]["code"] == 9
    assert summary["accepted"] == 20 and summary["left"] == 40
    assert len(summary["errors"]) == 1  # one line for one cause, not one per row
    # A handful of refused requests (those already on the wire), not every remaining row.
    refused = [e for e in mobilgroup_emulator.requests if e.error == 9]
    assert 1 <= len(refused) <= 4
    assert len(mobilgroup_emulator.requests) <= 20 + 4

    mobilgroup_emulator.account.balance = Decimal(100)
    done = mobilgroup(*args, url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["accepted"] == 60
    assert sent_phones(mobilgroup_emulator) == {phone(i): 1 for i in range(1, 61)}


def test_resuming_refuses_another_file_template_or_options(mobilgroup_emulator: Emulator,
                                                   tmp_path: Path, mobilgroup: RunCommand) -> None:
    contacts = write_contacts(tmp_path / "c.csv", 3)
    url = mobilgroup_emulator.url()
    assert mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, url=url,
                      cwd=tmp_path).returncode == 0
    other = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE + "!", url=url, cwd=tmp_path)
    assert other.returncode == 2 and "template differs" in other.stderr
    contacts.write_text(contacts.read_text(encoding="utf-8") + "79039999999;X;Y\n",
                        encoding="utf-8")
    other = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, url=url, cwd=tmp_path)
    assert other.returncode == 2 and "CSV file differs" in other.stderr
    other = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--state", "new.sqlite",
                       url=url, cwd=tmp_path)
    assert other.returncode == 0 and len(mobilgroup_emulator.outbox) == 3 + 4
    # The options are part of the mailing too: max_parts as well as long_messages.
    split = mobilgroup_emulator.url(long_messages="split")
    other = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--state", "new.sqlite",
                       url=split, cwd=tmp_path)
    assert other.returncode == 2 and "options differ" in other.stderr
    assert mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--state", "split.sqlite",
                      url=split, cwd=tmp_path).returncode == 0
    other = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--state", "split.sqlite",
                       url=mobilgroup_emulator.url(long_messages="split", max_parts=2),
                       cwd=tmp_path)
    assert other.returncode == 2 and "options differ" in other.stderr
    assert len(mobilgroup_emulator.outbox) == 3 + 4 + 4


def test_the_options_of_state_files_written_before_max_parts_still_match() -> None:
    """A state file keeps its options as JSON and a resume compares them as text: an option
    added later must not change the text of a mailing that does not use it."""
    from mobilgroup_backends.mailing import MailingOptions

    assert "max_parts" not in json.loads(MailingOptions().to_json())
    assert json.loads(MailingOptions(max_parts=2).to_json())["max_parts"] == 2


@pytest.mark.slow  # about 3 s alone, over 6 s on a busy machine
def test_killed_midway_then_resumed_sends_every_row_exactly_once(tmp_path: Path,
                                                                 mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "big.csv", 1000)
    state = tmp_path / "big.csv.mailing.sqlite"
    with Emulator(ACCOUNTS, latency=0.005) as gateway:
        url = gateway.url(timeout=5)
        args = ("mailing", "send", "big.csv", "--text", TEMPLATE, "--concurrency", "8")
        temp = tmp_path / "temp"
        temp.mkdir()
        process = start(*args, url=url, cwd=tmp_path, temp=temp)
        try:
            seen = wait_until_accepted(state, 200, process)
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert not list(temp.iterdir())  # the plan's file went once the state file was made
        time.sleep(0.3)  # requests the gateway was still answering finish there
        sent_before, recorded = len(gateway.outbox), accepted_in(state)
        assert seen <= recorded <= sent_before < 1000

        gateway.latency = 0  # it only slowed the first run, so that the kill came mid-run
        done = mobilgroup(*args, url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "resuming" in done.stderr
        assert "1000 of 1000 SMS accepted" in done.stdout
        counted = sent_phones(gateway)
        assert len(counted) == 1000 and set(counted.values()) == {1}
        assert len(gateway.outbox) == 1000
        texts = {m.phones[0]: m.text for m in gateway.outbox}
        assert texts[phone(734)] == "Здравствуйте, Клиент 734! Ваш заказ N-734 готов"
    assert accepted_in(state) == 1000
    # What the gateway had accepted but the killed run had not recorded was resent with the
    # same id, and counted as accepted earlier (error 7), not sent again.
    with sqlite3.connect(state) as db:
        (earlier,) = db.execute("SELECT COUNT(*) FROM requests WHERE accepted_earlier").fetchone()
    assert earlier == sent_before - recorded


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path: Path, signum: int,
                                                     mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "c.csv", 600)
    state = tmp_path / "c.csv.mailing.sqlite"
    with Emulator(ACCOUNTS, latency=0.01) as gateway:
        url = gateway.url()
        args = ("mailing", "send", "c.csv", "--text", TEMPLATE, "--concurrency", "4")
        process = start(*args, url=url, cwd=tmp_path)
        wait_until_accepted(state, 50, process)
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert "interrupted" in err and "run the same command again" in err
        # Everything that went out was recorded before the command ended.
        assert accepted_in(state) == len(gateway.outbox) < 600

        gateway.latency = 0  # it only slowed the first run, so that the signal came mid-run
        done = mobilgroup(*args, url=url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert set(sent_phones(gateway).values()) == {1} and len(gateway.outbox) == 600


def test_faults_during_the_run_still_send_exactly_once(mobilgroup_emulator: Emulator,
                                                       tmp_path: Path, mobilgroup: RunCommand) -> None:
    write_contacts(tmp_path / "c.csv", 300)
    mobilgroup_emulator.account.balance = Decimal(1000)
    # Connections dropped before and after the gateway accepted, and HTTP 500s, on 30% of
    # the exchanges; one retry per request, so some requests fail in a run and are resent.
    mobilgroup_emulator.faults.random(rate=0.3, seed=13)
    url = mobilgroup_emulator.url(retries=1)
    runs = []
    for _ in range(8):
        done = mobilgroup("mailing", "send", "c.csv", "--text", TEMPLATE, "--json",
                          url=url, cwd=tmp_path)
        runs.append(done.returncode)
        if done.returncode == 0:
            break
        assert done.returncode == 3, done.stderr
    assert runs[0] == 3 and runs[-1] == 0
    summary = json.loads(done.stdout)
    assert summary["accepted"] == summary["messages"] == 300
    assert summary["accepted_earlier"] > 0  # answers lost after the gateway accepted
    assert mobilgroup_emulator.faults.injected["close_after"] > 0
    counted = sent_phones(mobilgroup_emulator)
    assert len(counted) == 300 and set(counted.values()) == {1}


def test_progress_bar_on_a_terminal(mobilgroup_emulator: Emulator, tmp_path: Path,
                                    on_a_terminal: Callable[..., tuple[int, str]]) -> None:
    write_contacts(tmp_path / "c.csv", 40)
    code, shown = on_a_terminal("mailing", "send", "c.csv", "--text", TEMPLATE,
                                url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert code == 0, shown
    assert "━" in shown  # rich's bar
    assert "sent 40 · failed 0 · left 0" in shown and "SMS/s" in shown


def test_plain_progress_without_rich(mobilgroup_emulator: Emulator, tmp_path: Path,
                                     on_a_terminal: Callable[..., tuple[int, str]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_contacts(tmp_path / "c.csv", 40)
    # As if rich were not installed: importing it, or any module of it, fails.
    for name in {"rich", "rich.console", "rich.progress"} | {
            name for name in sys.modules if name.startswith("rich.")}:
        monkeypatch.setitem(sys.modules, name, None)
    code, shown = on_a_terminal("mailing", "send", "c.csv", "--text", TEMPLATE,
                                url=mobilgroup_emulator.url(), cwd=tmp_path)
    assert code == 0, shown
    assert "sent 40/40, failed 0, left 0" in shown and "━" not in shown
