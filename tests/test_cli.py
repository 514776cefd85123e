"""The `mobilgroup` command, in process and as a real program, against the emulator."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from mobilgroup_backends.cli import main
from mobilgroup_backends.emulator import Emulator

PASSWORD = "demo-password"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    return code, out, err


@pytest.fixture
def env(mobilgroup_emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
        no_mobilgroup_environment: None) -> Emulator:
    monkeypatch.setenv("MOBILGROUP_URL", mobilgroup_emulator.url())
    return mobilgroup_emulator


def test_send_status_balance(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["send", "+7 903 958-74-54", "79236411579", "--text", "Привет",
                        "--sender", "Shop", "--valid", "2"], capsys)
    assert code == 0 and "accepted: request id" in out
    (message,) = env.outbox
    assert (message.phones, message.text, message.sender, message.valid_hours) == (
        ("79039587454", "79236411579"), "Привет", "Shop", 2)
    request_id = str(message.request_id)
    assert request_id in out

    env.clock.advance(10)
    code, out, _ = run(["status", request_id, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["request_id"] == int(request_id)
    assert [r["status"] for r in report["recipients"]] == ["delivered", "delivered"]

    code, out, _ = run(["status", request_id], capsys)
    assert "79039587454" in out and "delivered" in out
    # The gateway reports Moscow time (as --json keeps it); the command line shows UTC, saying so.
    moscow = datetime.strptime(report["recipients"][0]["time"], "%Y-%m-%d %H:%M")
    assert f"{moscow - timedelta(hours=3):%Y-%m-%d %H:%M} UTC" in out

    code, out, _ = run(["balance", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"ok": True, "balance": "98"}


def test_send_json_and_stdin(env: Emulator, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("из stdin\n"))
    code, out, _ = run(["send", "79039587454", "--text", "-", "--no-translit", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["phones"] == ["79039587454"]
    assert env.outbox[0].text == "из stdin"
    assert env.outbox[0].transliterate is False


def test_url_option_overrides_environment(env: Emulator, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOBILGROUP_URL", "mobilgroup://x:y@1?endpoint=http%3A%2F%2F127.0.0.1%3A9")
    code, out, _ = run(["balance", "--url", env.url()], capsys)
    assert code == 0 and out.strip() == "100"


def test_refused_by_gateway_exit_1(env: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    url = env.url().replace(PASSWORD, "wrong")
    code, _, err = run(["balance", "--url", url], capsys)
    assert code == 1
    assert "gateway error 4" in err and "wrong login" in err
    code, out, _ = run(["balance", "--url", url, "--json"], capsys)
    assert code == 1 and json.loads(out)["code"] == 4


@pytest.mark.parametrize("argv", [
    ["send", "12", "--text", "hi"],
    ["send", "79039587454", "--text", "я" * 141],
    ["send", "79039587454", "--text", "hi", "--schedule", "tomorrow"],
    ["send", "79039587454", "--text", "hi", "--valid", "99"],
    ["status", "not-a-number"],
])
def test_bad_input_exit_2_and_nothing_sent(env: Emulator, capsys: pytest.CaptureFixture[str],
                                           argv: list[str]) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err.startswith("mobilgroup: ")
    assert len(env.outbox) == 0


@pytest.mark.usefixtures("no_mobilgroup_environment")
def test_no_credentials_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["balance"], capsys)
    assert code == 2 and "MOBILGROUP_URL" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as caught:
        main(["send"])
    assert caught.value.code == 2


def test_unreachable_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = "mobilgroup://demo:pw@1?endpoint=http%3A%2F%2F127.0.0.1%3A9%2Fx&retries=0"
    code, _, err = run(["balance", "--url", url], capsys)
    assert code == 3 and "connection" in err


def test_the_installed_program_and_module(env: Emulator, tmp_path: Path) -> None:
    environment = {**os.environ, "MOBILGROUP_URL": env.url()}
    for command in ([sys.executable, "-m", "mobilgroup_backends"],
                    [str(Path(sys.executable).with_name("mobilgroup"))]):
        done = subprocess.run([*command, "send", "79039587454", "--text", "hi", "--json"],
                              env=environment, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["ok"] is True
    assert len(env.outbox) == 2


def test_apprise_install_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    code, out, _ = run(["apprise", "install", str(folder)], capsys)
    assert code == 0 and (folder / "mobilgroup.py").exists()
    code, out, _ = run(["apprise", "path"], capsys)
    assert code == 0 and (Path(out.strip()) / "mobilgroup.py").exists()


def test_apprise_install_refuses_to_overwrite(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mobilgroup.py").write_text("# somebody else's plugin\n")
    code, _, err = run(["apprise", "install", str(tmp_path)], capsys)
    assert code == 2 and "--force" in err
    assert (tmp_path / "mobilgroup.py").read_text() == "# somebody else's plugin\n"
    code, _, _ = run(["apprise", "install", str(tmp_path), "--force"], capsys)
    assert code == 0 and "mobilgroup_backends" in (tmp_path / "mobilgroup.py").read_text()
    code, _, err = run(["apprise", "install", str(tmp_path / "mobilgroup.py")], capsys)
    assert code == 2 and "folder" in err


def test_emulator_command_bad_input_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = run(["emulator", "--port", str(taken.getsockname()[1])], capsys)
    assert code == 2 and "--port" in err and "--port 0" in err
    with pytest.raises(SystemExit) as caught:
        main(["emulator", "--port", "0", "--history-limit", "-1"])
    assert caught.value.code == 2
