"""The toll-fraud guard: bursts to one number, premium and foreign ranges, the fleet's ceiling,
and four processes counting together in one real Redis cache; what the emulator received is the
proof of what was paid for."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from mobilgroup_backends.django.codes import send_code
from mobilgroup_backends.django.guard import CodeRefused, GuardLimits, admit, would_admit
from mobilgroup_backends.django.signals import code_refused
from mobilgroup_backends.emulator import Emulator
from tests.django_project.helpers import gateway_settings
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PHONE = "+79000000011"


def _ask(phone: str) -> str:
    """Ask for one code: "sent", or the reason of the refusal."""
    try:
        send_code(phone, "424242", minutes=5, purpose="test")
    except CodeRefused as exc:
        return exc.reason
    return "sent"


@pytest.fixture
def refusals() -> Any:
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    code_refused.connect(receiver)
    yield seen
    code_refused.disconnect(receiver)


def test_a_burst_to_one_number_sends_the_hourly_limit_and_refuses_the_rest(
        otp_emulator: Emulator, refusals: list[dict[str, Any]],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mobilgroup_backends.django.guard")

    answers = [_ask(PHONE) for _ in range(8)]

    assert answers == ["sent"] * 3 + ["phone_hour"] * 5  # the default: 3 an hour
    assert len(otp_emulator.outbox) == 3
    assert [r["reason"] for r in refusals] == ["phone_hour"] * 5
    assert all(r["phone"] == "79000000011" and r["purpose"] == "test" for r in refusals)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # one line per refusal
    assert all("7900*****11" in line and "79000000011" not in line for line in lines)
    assert "424242" not in caplog.text


def test_premium_and_foreign_numbers_are_refused_before_any_request(
        otp_emulator: Emulator, settings: Any, refusals: list[dict[str, Any]]) -> None:
    assert _ask("+882 345 678 901") == "premium"      # international networks
    assert _ask("+883 1234 5678") == "premium"
    assert _ask("+7 809 123-45-67") == "premium"      # a Russian premium-rate range
    assert _ask("+380 50 123 4567") == "region"       # not the configured region
    assert len(otp_emulator.outbox) == 0
    assert len(otp_emulator.requests) == 0  # refused for free: nothing reached the gateway

    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_REGIONS": ["RU", "UA"]}
    assert _ask("+380 50 123 4567") == "sent"
    assert _ask("+7 809 123-45-67") == "premium"  # premium rate stays refused in any region
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_REGIONS": "RU,001"}
    assert _ask("+882 345 678 901") == "sent"  # allowed only when named
    assert len(otp_emulator.outbox) == 2


def test_the_fleet_ceiling_gives_back_the_slots_it_refuses(otp_emulator: Emulator,
                                                            settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_HOUR": 2}

    assert [_ask(f"+7900000002{n}") for n in range(4)] == ["sent", "sent", "fleet_hour",
                                                            "fleet_hour"]
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_HOUR": 5}
    # The numbers refused by the ceiling did not lose their own hourly slots.
    assert [_ask("+79000000023") for _ in range(4)] == ["sent"] * 3 + ["phone_hour"]
    assert len(otp_emulator.outbox) == 5


def test_the_day_limit_counts_across_hours(otp_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_PHONE_HOUR": 2, "OTP_PER_PHONE_DAY": 3}
    limits = GuardLimits.from_settings()
    morning = datetime(2026, 12, 7, 8, 10, tzinfo=timezone.utc)
    admit("79000000031", limits=limits, now=morning)
    admit("79000000031", limits=limits, now=morning)
    with pytest.raises(CodeRefused, match="this hour") as hourly:
        admit("79000000031", limits=limits, now=morning)
    assert hourly.value.reason == "phone_hour"
    assert "79000000031" not in str(hourly.value)
    admit("79000000031", limits=limits, now=morning + timedelta(hours=1))
    with pytest.raises(CodeRefused, match="today") as daily:
        admit("79000000031", limits=limits, now=morning + timedelta(hours=2))
    assert daily.value.reason == "phone_day"
    assert would_admit("79000000031", limits=limits, now=morning + timedelta(days=1)) is None


def test_manage_py_mobilgroup_codes_shows_the_counts(otp_emulator: Emulator) -> None:
    for _ in range(4):
        _ask(PHONE)
    _ask("+882 345 678 901")

    out = StringIO()
    call_command("mobilgroup", "codes", "--json", stdout=out)
    counts = json.loads(out.getvalue())
    assert counts["sent_this_hour"] == 3
    assert counts["refused_phone_hour"] == 1 and counts["refused_premium"] == 1
    assert counts["limits"]["regions"] == ["RU"]

    text = StringIO()
    call_command("mobilgroup", "codes", stdout=text)
    assert "sent this hour: 3 of 1000" in text.getvalue()
    assert "Refused today: 2" in text.getvalue()


def test_a_bad_limit_names_the_setting_and_the_fix(otp_emulator: Emulator, settings: Any) -> None:
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_PHONE_HOUR": "many"}
    with pytest.raises(ImproperlyConfigured, match=r"MOBILGROUP\['OTP_PER_PHONE_HOUR'\].*many"):
        _ask(PHONE)
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_PER_PHONE_HOUR": 3, "OTP_REGIONS": ["XX"]}
    with pytest.raises(ImproperlyConfigured, match="OTP_REGIONS"):
        _ask(PHONE)
    settings.MOBILGROUP = {**settings.MOBILGROUP, "OTP_REGIONS": None, "OTP_CACHE": "shared"}
    with pytest.raises(ImproperlyConfigured,
                       match=r"OTP_CACHE'\]: 'shared' is not a cache of CACHES \('default'\)"):
        _ask(PHONE)
    assert len(otp_emulator.outbox) == 0


def test_a_cache_that_cannot_count_refuses_every_code(otp_emulator: Emulator, settings: Any,
                                                      refusals: list[dict[str, Any]]) -> None:
    from tests.redis_server import _free_port

    # A Redis cache on a port where nothing listens: an outage of the guard's counts.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{_free_port()}/0",
                                   "OPTIONS": {"socket_connect_timeout": 1}}}

    assert _ask(PHONE) == "uncounted"
    assert would_admit("79000000011") is not None
    assert len(otp_emulator.outbox) == 0
    assert [r["reason"] for r in refusals] == ["uncounted"]
    assert "OTP_CACHE" in str(refusals[0]["error"])


def _hour() -> int:
    return int(time.time()) // 3600


def _fleet(emulator: Emulator, redis_server: RedisServer, tmp_path: Path,
           mobilgroup: dict[str, Any], phones_per_child: list[list[str]]) -> list[dict[str, Any]]:
    """Four (or more) processes asking at once, counting in one Redis; their results."""
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": redis_server.url(0), "KEY_PREFIX": uuid.uuid4().hex}}
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django_project.settings",
           "TESTS_MOBILGROUP": json.dumps(mobilgroup), "TESTS_CACHES": json.dumps(caches),
           "PYTHONPATH": str(ROOT)}
    env.pop("MOBILGROUP_URL", None)
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    children = [subprocess.Popen([sys.executable, "-m", "tests.otp_child", str(folder), str(i),
                                  *phones], cwd=ROOT, env=env)
                for i, phones in enumerate(phones_per_child)]
    try:
        deadline = time.monotonic() + 60
        while not all((folder / f"ready-{i}").exists() for i in range(len(children))):
            assert time.monotonic() < deadline, "the children did not start"
            time.sleep(0.02)
        (folder / "go").touch()
        for child in children:
            assert child.wait(timeout=60) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return [json.loads((folder / f"result-{i}").read_text()) for i in range(len(children))]


@pytest.mark.slow
def test_four_processes_sharing_a_redis_cache_count_together(
        otp_emulator: Emulator, redis_server: RedisServer, tmp_path: Path) -> None:
    mobilgroup = {**gateway_settings(otp_emulator), "OTP_PER_PHONE_HOUR": 3, "OTP_PER_HOUR": 10}
    for _ in range(2):  # a run that straddles an hour boundary counts in two hours: run again
        otp_emulator.reset()
        started = _hour()
        one_phone = _fleet(otp_emulator, redis_server, tmp_path, mobilgroup,
                           [[PHONE] * 6 for _ in range(4)])
        many_phones = _fleet(otp_emulator, redis_server, tmp_path, mobilgroup,
                             [[f"+790000001{i}{n}" for n in range(6)] for i in range(4)])
        if _hour() == started:
            break

    assert [r["unexpected"] for r in one_phone + many_phones] == [[]] * 8
    # One number, 24 requests from 4 processes: the hourly limit, for the whole fleet.
    assert sum(r["sent"] for r in one_phone) == 3
    assert sum(r["refused"] for r in one_phone) == 21
    # 24 numbers: the fleet's ceiling (the second run has its own cache prefix: a fresh hour).
    assert sum(r["sent"] for r in many_phones) == 10
    outbox = otp_emulator.outbox.snapshot()
    assert len(outbox) == 13
    assert sum(1 for message in outbox if message.phones == ("79000000011",)) == 3
