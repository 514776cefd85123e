"""The `mobilgroup` command as a shell user types it, against the emulator: comma-separated phones,
long and unencodable texts, credentials off the command line, `status --wait`, one JSON shape and
exit code shared with `manage.py mobilgroup`, completion.

The commands run in this process (what is tested is what they print and return); test_cli.py runs
the installed program once as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mobilgroup_backends import cli
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.protocol import GATEWAY_TIMEZONE
from tests.conftest import RunCommand

PASSWORD = "demo-password"

pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


@pytest.fixture
def mobilgroup(mobilgroup_command: RunCommand) -> RunCommand:
    def run(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        done = mobilgroup_command(*args, **options)
        if args[0] != "completion":  # the emulator's help names its public demo account
            assert PASSWORD not in done.stdout + done.stderr
        return done

    return run


@pytest.fixture
def manage(manage_command: RunCommand) -> RunCommand:
    def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        done = manage_command(*args, url=url)
        assert PASSWORD not in done.stdout + done.stderr
        return done

    return run


def test_comma_separated_phones_and_url_file(mobilgroup_emulator: Emulator,
                                             tmp_path: Path, mobilgroup: RunCommand) -> None:
    url_file = tmp_path / "gateway.url"
    url_file.write_text(mobilgroup_emulator.url() + "\n")
    done = mobilgroup("send", "79031234567,+7 923 123-45-67", "79031234568", "--text", "hi",
                      "--url-file", str(url_file))
    assert done.returncode == 0, done.stderr
    [message] = mobilgroup_emulator.outbox
    assert message.phones == ("79031234567", "79231234567", "79031234568")


def test_url_from_standard_input(mobilgroup_emulator: Emulator, tmp_path: Path,
                                 mobilgroup: RunCommand) -> None:
    done = mobilgroup("balance", "--url", "-", stdin=mobilgroup_emulator.url() + "\n")
    assert (done.returncode, done.stdout.strip()) == (0, "100"), done.stderr
    done = mobilgroup("send", "79031234567", "--text", "-", "--url", "-", stdin="x\n")
    assert done.returncode == 2 and "--url-file" in done.stderr
    done = mobilgroup("balance", "--url-file", str(tmp_path / "missing"))
    assert done.returncode == 2 and "--url-file" in done.stderr
    (tmp_path / "empty").write_text("\n")
    done = mobilgroup("balance", "--url-file", str(tmp_path / "empty"))
    assert done.returncode == 2 and "first line" in done.stderr
    assert not mobilgroup_emulator.outbox


def test_long_and_unencodable_texts(mobilgroup_emulator: Emulator,
                                    mobilgroup: RunCommand) -> None:
    url = mobilgroup_emulator.url()
    long_text = " ".join(["слово"] * 50)  # 299 characters: three messages of at most 140

    refused = mobilgroup("send", "79031234567", "--text", long_text, url=url)
    assert refused.returncode == 2 and "299 characters" in refused.stderr
    emoji = mobilgroup("send", "79031234567", "--text", "Готово 🎉", url=url)
    assert emoji.returncode == 2 and "U+1F389" in emoji.stderr
    own_id = mobilgroup("send", "79031234567", "--text", long_text, "--split", "--id", "42",
                        url=url)
    assert own_id.returncode == 2
    assert "3 messages, each needs its own id" in own_id.stderr and "leave --id out" in own_id.stderr
    assert not mobilgroup_emulator.outbox

    split = mobilgroup("send", "79031234567", "--text", long_text, "--split", "--json", url=url)
    assert split.returncode == 0, split.stderr
    result = json.loads(split.stdout)
    assert result["parts"] == 3 and len(result["request_ids"]) == 3
    assert [m.text for m in mobilgroup_emulator.outbox] == [
        " ".join(["слово"] * 23), " ".join(["слово"] * 23), " ".join(["слово"] * 4)]
    assert [m.request_id for m in mobilgroup_emulator.outbox] == result["request_ids"]

    done = mobilgroup("send", "79031234567", "--text", long_text, "--truncate", url=url)
    assert done.returncode == 0, done.stderr
    truncated = mobilgroup_emulator.outbox[-1].text
    assert len(truncated) == 140 and truncated.endswith("…")

    done = mobilgroup("send", "79031234567", "--text", "Готово 🎉", "--replace-unencodable",
                      url=url)
    assert done.returncode == 0, done.stderr
    assert mobilgroup_emulator.outbox[-1].text == "Готово ?"

    both = mobilgroup("send", "79031234567", "--text", "x", "--split", "--truncate", url=url)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_status_wait_asks_again_after_the_lifetime(mobilgroup: RunCommand,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The first pause once the lifetime has run out is 5 s; the rule, not the pause, is tested.
    monkeypatch.setattr(cli, "FIRST_RECHECK_SECONDS", 0.5)
    # The gateway's clock stands two hours back: the lifetime (1 h) of what is sent now has run
    # out by the wall clock the command waits with, but the emulated gateway has not got there.
    past = datetime.now(GATEWAY_TIMEZONE).replace(tzinfo=None, microsecond=0) - timedelta(hours=2)
    with Emulator(start_time=past, freeze_clock=True) as gateway:
        from mobilgroup_backends import MobilgroupClient

        with MobilgroupClient.from_url(gateway.url()) as client:
            sent = client.send(["79031234567", "79031230000"], "wait for it")
        moved = threading.Event()

        def move_the_clock_after_the_first_ask() -> None:
            deadline = time.monotonic() + 30
            while gateway.status_queries(sent.request_id) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            gateway.clock.advance(timedelta(hours=2))
            moved.set()

        mover = threading.Thread(target=move_the_clock_after_the_first_ask, daemon=True)
        mover.start()
        started = time.monotonic()
        done = mobilgroup("status", str(sent.request_id), "--wait", "--json", url=gateway.url())
        took = time.monotonic() - started
        mover.join(10)
    assert done.returncode == 0, done.stderr
    assert moved.is_set()
    report = json.loads(done.stdout)
    assert report["complete"] is True
    assert {r["phone"]: r["status"] for r in report["recipients"]} == {
        "79031234567": "delivered", "79031230000": "undelivered"}
    assert gateway.status_queries(sent.request_id) == 2  # asked once, then once more
    assert took < 20


def test_status_wait_gives_up_at_the_timeout(mobilgroup_emulator: Emulator,
                                             mobilgroup: RunCommand) -> None:
    mobilgroup_emulator.clock.freeze()
    done = mobilgroup("send", "79031234567", "--text", "hi", "--json", url=mobilgroup_emulator.url())
    [request_id] = json.loads(done.stdout)["request_ids"]
    done = mobilgroup("status", str(request_id), "--wait", "--timeout", "1",
                      url=mobilgroup_emulator.url())
    assert done.returncode == 4
    assert "queued" in done.stdout and "ask again later" in done.stderr
    assert mobilgroup_emulator.status_queries(request_id) == 1


def _shape(value: Any) -> Any:
    """The keys and value types of a JSON document, recursively."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_one_json_shape_and_exit_code_for_both_commands(mobilgroup_emulator: Emulator,
                                                        mobilgroup: RunCommand,
                                                        manage: RunCommand) -> None:
    url = mobilgroup_emulator.url(retries=0)
    ours = mobilgroup("send", "79031234567", "79031234568", "--text", "hi", "--json", url=url)
    django = manage("send", "79031234567", "79031234568", "--text", "hi", "--json", url=url)
    assert ours.returncode == django.returncode == 0, ours.stderr + django.stderr
    sent_ours, sent_django = json.loads(ours.stdout), json.loads(django.stdout)
    assert sent_django.pop("tracked") is False
    assert _shape(sent_ours) == _shape(sent_django)
    assert sent_ours["phones"] == sent_django["phones"] == ["79031234567", "79031234568"]

    mobilgroup_emulator.clock.advance(60)
    [request_id] = sent_ours["request_ids"]
    ours = mobilgroup("status", str(request_id), "--json", url=url)
    django = manage("status", str(request_id), "--json", url=url)
    assert json.loads(ours.stdout) == json.loads(django.stdout)
    assert json.loads(ours.stdout)["recipients"][0] == {
        "phone": "79031234567", "status": "delivered", "status_code": 1, "final": True,
        "time": json.loads(ours.stdout)["recipients"][0]["time"]}

    for args in (("status", "123456789"), ("send", "12", "--text", "x")):
        ours = mobilgroup(*args, "--json", url=url)
        django = manage(*args, "--json", url=url)
        assert ours.returncode == django.returncode != 0
        assert json.loads(ours.stdout) == json.loads(django.stdout)
        assert ours.stderr == django.stderr == ""  # printed once: as JSON, nowhere else
        plain_ours, plain_django = mobilgroup(*args, url=url), manage(*args, url=url)
        assert plain_ours.returncode == plain_django.returncode == ours.returncode
        assert plain_ours.stdout == plain_django.stdout == ""
        assert len(plain_ours.stderr.strip().splitlines()) == 1
        assert len(plain_django.stderr.strip().splitlines()) == 1
    assert json.loads(ours.stdout)["error"] == "invalid"


@pytest.mark.django_db
def test_manage_track_takes_verbosity_after_the_action(mobilgroup_emulator: Emulator,
                                                       settings: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.MOBILGROUP = {"URL": mobilgroup_emulator.url()}
    out = StringIO()
    call_command("mobilgroup", "track", "-v", "2", stdout=out)
    assert "Polled 0 request(s)" in out.getvalue()


def test_manage_takes_verbosity_before_or_after_the_action(mobilgroup_emulator: Emulator,
                                                           manage: RunCommand) -> None:
    for args in (("balance", "-v", "2"), ("-v", "0", "balance"), ("balance", "--verbosity=3")):
        done = manage(*args, url=mobilgroup_emulator.url())
        assert (done.returncode, done.stdout.strip()) == (0, "Balance: 100"), done.stderr
    assert manage("balance", "-v", "7", url=mobilgroup_emulator.url()).returncode == 2


def test_apprise_install_says_unchanged_and_where_apprise_looks(tmp_path: Path,
                                                               mobilgroup: RunCommand) -> None:
    folder = tmp_path / "plugins"
    first = mobilgroup("apprise", "install", str(folder))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("wrote ")
    assert f"--plugin-path {folder}" in first.stdout and "does not read this folder" in first.stdout
    again = mobilgroup("apprise", "install", str(folder))
    assert again.returncode == 0 and again.stdout.startswith("unchanged ")


def test_bash_completion_completes_commands_and_options(mobilgroup: RunCommand) -> None:
    done = mobilgroup("completion", "bash")
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0

    def complete(*words: str) -> list[str]:
        probe = (script + "\nCOMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + ")\n"
                 f"COMP_CWORD={len(words) - 1}\nCOMP_LINE='{' '.join(words)}'\n"
                 "COMP_POINT=${#COMP_LINE}\n_shtab_mobilgroup\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
        run = subprocess.run(["bash", "--norc", "--noprofile"], input=probe, text=True,
                             capture_output=True, timeout=30, check=False)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    assert {"send", "status", "balance", "completion"} <= set(complete("mobilgroup", ""))
    assert complete("mobilgroup", "comp") == ["completion"]
    assert complete("mobilgroup", "send", "--rep") == ["--replace-unencodable"]
    assert "--url-file" in complete("mobilgroup", "status", "--url")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed here")
def test_zsh_completion_is_valid_zsh(mobilgroup: RunCommand) -> None:
    done = mobilgroup("completion", "zsh")
    assert done.returncode == 0 and "#compdef mobilgroup" in done.stdout
    assert subprocess.run(["zsh", "-n"], input=done.stdout, text=True, check=False).returncode == 0
