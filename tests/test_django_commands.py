"""``manage.py mobilgroup``: each action's output and exit code, in process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import sms
from django.core.management import call_command
from django.core.management.base import CommandError

from mobilgroup_backends.django.models import SmsRequest
from mobilgroup_backends.emulator import Emulator
from tests.conftest import RunCommand

ROOT = Path(__file__).resolve().parent.parent
PHONE, PHONE2 = "79031234567", "79031234568"


# The settings under test must not be mixed with MOBILGROUP_* variables of the machine.
pytestmark = pytest.mark.usefixtures("no_mobilgroup_environment")


def run(*args: str) -> str:
    out = StringIO()
    call_command("mobilgroup", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fails(*args: str) -> CommandError:
    with pytest.raises(CommandError) as caught:
        run(*args)
    return caught.value


def test_balance(django_emulator: Emulator) -> None:
    django_emulator.account.balance = Decimal("42.50")
    assert run("balance").strip() == "Balance: 42.50"
    assert json.loads(run("balance", "--json")) == {"ok": True, "balance": "42.50"}


def test_status(django_emulator: Emulator) -> None:
    message = sms.Message("hi", recipients=[PHONE, PHONE2])
    assert message.send() == 1
    request_id = message.mobilgroup_status.request_id

    out = run("status", str(request_id))

    lines = out.splitlines()
    assert lines[0].startswith(f"Request {request_id}: mailing ")
    assert {line.split()[0] for line in lines[1:]} == {PHONE, PHONE2}
    data = json.loads(run("status", str(request_id), "--json"))
    assert data["request_id"] == request_id
    assert [r["phone"] for r in data["recipients"]] == [PHONE, PHONE2]
    assert django_emulator.status_queries(request_id) == 2


@pytest.mark.django_db
def test_send(django_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "TRACK_DELIVERY": True}

    out = run("send", "+7 903 123-45-67", PHONE2, "--text", "Привет", "--sender", "MyShop")

    [sent] = django_emulator.outbox
    assert (sent.phones, sent.text, sent.sender) == ((PHONE, PHONE2), "Привет", "MyShop")
    assert out.strip() == f"Sent to 2 recipient(s): request id {sent.request_id}"
    assert SmsRequest.objects.get().request_id == sent.request_id
    data = json.loads(run("send", PHONE, "--text", "again", "--json"))
    assert data["ok"] is True and data["request_ids"] == [django_emulator.outbox[1].request_id]
    assert data["tracked"] is True


def test_send_splits_long_text(django_emulator: Emulator) -> None:
    out = run("send", PHONE, "--text", " ".join(["word"] * 60))
    assert "in 3 parts" in out
    assert len(django_emulator.outbox) == 3


def test_exit_codes(django_emulator: Emulator, settings: Any) -> None:
    assert fails("send", "12", "--text", "x").returncode == 2  # not a phone: nothing sent
    assert fails("status", "not-a-number").returncode == 2
    error = fails("send", PHONE, "--text", "x", "--sender", "Bad alias!")
    assert error.returncode == 2 and "sender" in str(error)
    error = fails("status", "123456789")
    assert error.returncode == 1 and "gateway error 12" in str(error)
    django_emulator.account.blocked = True
    assert fails("balance").returncode == 1
    django_emulator.account.blocked = False
    django_emulator.faults.next("http_500", count=2)  # RETRIES is 1
    error = fails("send", PHONE, "--text", "x")
    assert error.returncode == 3 and "HTTP 500" in str(error)
    assert not django_emulator.outbox
    settings.MOBILGROUP = {"URL": "mobilgroup://demo@1000"}
    error = fails("balance")
    assert error.returncode == 2 and "MOBILGROUP['URL']" in str(error)


def test_usage_errors() -> None:
    with pytest.raises(CommandError):
        run()
    with pytest.raises(CommandError):
        run("send", PHONE)  # --text is required


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env, "PYTHONPATH": str(ROOT),
                   "DJANGO_SETTINGS_MODULE": "tests.django_project.settings"}
    return subprocess.run([sys.executable, "-m", "django", "mobilgroup", *args],
                          capture_output=True, text=True, env=environment, cwd=ROOT,
                          timeout=60, check=False)


def test_exit_codes_as_manage_py_gives_them(mobilgroup_emulator: Emulator,
                                            manage_command: RunCommand) -> None:
    url = mobilgroup_emulator.url(retries=0)
    done = manage_command("balance", url=url)
    assert (done.returncode, done.stdout.strip()) == (0, "Balance: 100"), done.stderr

    done = manage_command("balance")
    assert done.returncode == 2
    assert "no gateway credentials" in done.stderr

    done = manage_command("frobnicate", url=url)
    assert done.returncode == 2  # argparse's usage error
    password = mobilgroup_emulator.account.password
    assert all(password not in text for text in (done.stdout, done.stderr))


def test_real_process_exit_code(mobilgroup_emulator: Emulator) -> None:
    mobilgroup_emulator.account.blocked = True
    done = _manage("balance", env={"MOBILGROUP_URL": mobilgroup_emulator.url(retries=0)})
    assert done.returncode == 1
    assert "refused: gateway error 5" in done.stderr
