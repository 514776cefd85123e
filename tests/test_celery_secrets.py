"""The gateway password never travels through Celery: a real worker on a real Redis server of
the test's own, configured through the setting the docs recommend, with a password made of
every character a URL treats specially. ``celery report``, ``celery inspect conf`` (its reply
goes through the broker), ``app.conf.humanize(censored=True)``, every command the broker saw
(``redis-cli MONITOR``), every key it stores and the worker's log are searched for it, in every
spelling. Task failures come back from the JSON result backend as their own type and message.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from celery import Celery

from mobilgroup_backends import celery as mobilgroup_celery
from mobilgroup_backends import protocol
from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.errors import ClientBlocked, ValidationError
from tests.celery_app import Worker, make_app
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow

PASSWORD = "Pw@x:y/z?q#f%2&a=b-Celery"
USER_ID, LOGIN = "3000", "ops@example"
ROOT = Path(__file__).resolve().parent.parent


def spellings(secret: str) -> list[bytes]:
    """``secret`` as it could show up: raw, percent-encoded, JSON-escaped, and inside base64 at
    any alignment (kombu base64-encodes message bodies)."""
    forms = {secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]}
    found: list[bytes] = []
    for form in forms:
        raw = form.encode()
        found.append(raw)
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + raw)
            found.append(encoded[4:-4])  # the part that does not depend on the neighbours
    return found


def leaks(data: bytes | str) -> list[bytes]:
    blob = data.encode() if isinstance(data, str) else data
    return [form for form in spellings(PASSWORD) if form in blob]


class Setup:
    def __init__(self, gateway: Emulator, redis: RedisServer, worker: Worker, app: Celery,
                 env: dict[str, str], monitor: subprocess.Popen[bytes], monitor_log: Path):
        self.gateway, self.redis, self.worker, self.app = gateway, redis, worker, app
        self.env, self.monitor, self.monitor_log = env, monitor, monitor_log


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    folder = tmp_path_factory.mktemp("celery-secrets")
    redis = RedisServer(folder).start()
    monitor_log = folder / "monitor.log"
    with monitor_log.open("wb") as out:
        monitor = subprocess.Popen(["redis-cli", "-p", str(redis.port), "monitor"], stdout=out,
                                   stderr=subprocess.STDOUT)
    gateway = Emulator(["2000:decoy:decoy-password:100"])
    gateway.add_account(user_id=USER_ID, login=LOGIN, password=PASSWORD, balance=100)
    worker: Worker | None = None
    try:
        gateway.start()
        broker, backend = redis.url(0), redis.url(1)
        env = {"MOBILGROUP_TEST_BROKER": broker, "MOBILGROUP_TEST_BACKEND": backend,
               # As the docs say: the URL in the setting Celery censors. The environment's URL
               # (another account) is there to prove which one the worker used.
               "MOBILGROUP_TEST_SETTING_URL": gateway.url(account=USER_ID, retries=0)}
        worker = Worker(broker, gateway.url(account="2000"), str(folder / "worker.log"),
                        concurrency=1, name="secrets", env=env)
        app = make_app(broker)
        app.conf.update(result_backend=backend, task_ignore_result=False)
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[worker_name()], timeout=0.5):
            assert time.monotonic() < deadline, worker.log_tail()
            assert worker.process.poll() is None, worker.log_tail()
        yield Setup(gateway, redis, worker, app, env, monitor, monitor_log)
    finally:
        if worker is not None:
            worker.stop()
        gateway.stop()
        monitor.terminate()
        monitor.wait(10)
        redis.stop()


def worker_name() -> str:
    import socket

    return f"secrets@{socket.gethostname()}"


def run_task(setup: Setup, phones: list[str], text: str, *, retries: int = 0) -> Any:
    """The task's result, once final; ``retries``: the runs it has had already (as a message
    Celery has retried that often carries)."""
    result = setup.app.send_task(mobilgroup_celery.SEND_TASK,
                                 args=(protocol.new_request_id(), phones, text),
                                 serializer="json", retries=retries)
    result.get(timeout=60, propagate=False)
    return result


def celery_command(setup: Setup, *args: str) -> str:
    env = {**os.environ, **setup.env,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "tests.celery_app", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_task_failures_come_back_as_their_own_type_and_message(setup: Setup) -> None:
    sent = run_task(setup, ["79031234567"], "Код 5521")
    assert sent.successful(), sent.traceback
    [message] = setup.gateway.outbox
    assert message.user_id == USER_ID  # the setting's account, not the environment's

    setup.gateway.accounts[USER_ID].blocked = True
    try:
        # An account refusal is retried (test_celery.py shows it): its last run's error is the
        # one that comes back, so the task starts as its last run rather than wait for 8.
        refused = run_task(setup, ["79031234567"], "Код 5522",
                           retries=mobilgroup_celery.MAX_RETRIES)
    finally:
        setup.gateway.accounts[USER_ID].blocked = False
    assert refused.failed()
    error = refused.result
    assert type(error) is ClientBlocked and error.code == 5
    assert str(error).startswith("gateway error 5: the client account is blocked (request id ")
    assert "gateway error gateway error" not in str(error)

    invalid = run_task(setup, ["12"], "Код 5523")
    assert invalid.failed()
    error = invalid.result
    assert type(error) is ValidationError
    assert str(error).startswith("phones='12': not a phone number")
    assert error.describe() == str(error)


def test_the_password_is_nowhere_celery_shows_or_sends(setup: Setup) -> None:
    run_task(setup, ["79031234567"], "Код 1")  # some traffic of every kind
    reply = setup.app.control.inspect(destination=[worker_name()], timeout=5).conf()
    assert reply, "the worker did not answer inspect conf"
    assert reply[worker_name()]["mobilgroup_secret_url"] == "********"
    assert not leaks(json.dumps(reply))

    report = celery_command(setup, "report")
    assert "mobilgroup_secret_url: '********'" in report
    assert not leaks(report)
    conf = celery_command(setup, "inspect", "conf", "--timeout", "5", "-d", worker_name())
    assert "mobilgroup_secret_url" in conf and not leaks(conf)

    app = make_app("memory://")
    app.conf.mobilgroup_secret_url = setup.env["MOBILGROUP_TEST_SETTING_URL"]
    for with_defaults in (False, True):
        assert not leaks(app.conf.humanize(with_defaults=with_defaults, censored=True))

    # What the broker saw and keeps.
    time.sleep(0.5)  # MONITOR's last lines reach its file
    seen = setup.monitor_log.read_bytes()
    assert b"LPUSH" in seen.upper() and b"celery" in seen  # it did watch the traffic
    assert not leaks(seen)
    for db in (0, 1):
        client = setup.redis.client(db)
        for key in client.scan_iter():
            kind = client.type(key)
            if kind == b"list":
                values = client.lrange(key, 0, -1)
            elif kind == b"hash":
                values = [*client.hkeys(key), *client.hvals(key)]
            elif kind == b"zset":
                values = client.zrange(key, 0, -1)
            elif kind == b"set":
                values = list(client.smembers(key))
            else:
                values = [client.dump(key) or b""]
            assert not leaks(b"".join([key, *values])), key
    assert not leaks(setup.worker.log_tail(10_000))


def test_the_old_setting_still_works_and_says_to_rename_it(
        mobilgroup_emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    app = Celery("old", broker="memory://")
    app.conf.mobilgroup_url = mobilgroup_emulator.url()
    mobilgroup_celery._warn_old_setting.cache_clear()
    with caplog.at_level(logging.WARNING, logger="mobilgroup_backends.celery"):
        assert mobilgroup_celery.worker_client(app).balance() > 0
    [warning] = [r.getMessage() for r in caplog.records if "mobilgroup_url" in r.getMessage()]
    assert "rename it mobilgroup_secret_url" in warning and "MOBILGROUP_URL" in warning
    # Why: Celery shows that name in full.
    assert mobilgroup_emulator.account.password in app.conf.humanize(censored=True)
