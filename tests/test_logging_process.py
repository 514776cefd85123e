"""SmsHandler across process boundaries: interpreter exit, fork, and Django's LOGGING.

Each scenario runs a real Python subprocess that logs through ``SmsHandler`` to the emulator
running in this test process, so the proof is what reached the emulator's outbox.
"""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mobilgroup_backends.emulator import Emulator
from mobilgroup_backends.logging import SmsHandler
from tests.helpers import texts

PHONE = "79031234567"
PHONE2 = "79161234567"
CANARY = "Zx9-canary-pw-q7"

# Handlers fall back to MOBILGROUP_* variables: the machine's own must not reach the children.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_mobilgroup_environment")]


@pytest.fixture
def emulator(mobilgroup_emulator: Emulator) -> Emulator:
    mobilgroup_emulator.add_account(user_id="2000", login="alerts", password=CANARY)
    return mobilgroup_emulator


def run(script: str, *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script`` in a fresh interpreter; returns the result and its wall time."""
    environ = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    environ.update(env or {})
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=environ,
                            cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            check=False)
    elapsed = time.monotonic() - started
    assert CANARY not in result.stdout + result.stderr
    return result, elapsed


# --- interpreter exit -----------------------------------------------------------------------


def test_exit_with_pending_alerts_sends_them(emulator: Emulator) -> None:
    result, _ = run("""
        import logging, os, sys
        from mobilgroup_backends.logging import SmsHandler
        handler = SmsHandler(url=os.environ["ALERT_URL"], prefix="batch")
        logging.getLogger().addHandler(handler)
        log = logging.getLogger("nightly")
        log.critical("import failed")
        log.critical("export failed")
        # Exit at once: nothing has been sent yet; logging.shutdown must get it out.
        print("queued", handler.stats.queued + handler.stats.sent, file=sys.stderr)
        sys.exit(3)
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 3, result.stderr
    assert sorted(texts(emulator)) == ["[CRITICAL] batch nightly: export failed",
                                       "[CRITICAL] batch nightly: import failed"]


def test_exit_with_pending_summary_sends_it(emulator: Emulator) -> None:
    result, _ = run("""
        import logging, os
        from mobilgroup_backends.logging import SmsHandler
        logging.getLogger().addHandler(SmsHandler(url=os.environ["ALERT_URL"], max_sms=2))
        for i in range(50):
            logging.getLogger("worker").critical("job %d crashed", i)
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert len(emulator.outbox) == 3  # max_sms + the summary at exit
    assert emulator.outbox[2].text.startswith("+48 more CRITICAL since ")
    assert emulator.outbox[2].text.endswith("worker: job 49 crashed")


def test_exit_with_a_stalled_gateway_is_bounded(emulator: Emulator) -> None:
    emulator.faults.next("delay", count=20, seconds=30)
    result, elapsed = run("""
        import atexit, sys, time
        # Registered before logging is imported, so it runs after logging.shutdown.
        atexit.register(lambda: print(f"exit {time.monotonic() - ended:.3f}", file=sys.stderr))
        import logging, os
        from mobilgroup_backends.logging import SmsHandler
        started = time.monotonic()
        logging.getLogger().addHandler(
            SmsHandler(url=os.environ["ALERT_URL"], flush_timeout=1.0, timeout=20))
        logging.getLogger("db").critical("primary unreachable")
        print(f"log {time.monotonic() - started:.3f}", file=sys.stderr)
        ended = time.monotonic()
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")}, timeout=25)
    assert result.returncode == 0, result.stderr
    times = dict(line.split() for line in result.stderr.splitlines())
    assert float(times["log"]) < 0.5  # logging itself did not wait
    # The request hangs for 30 s (and the client would wait 20 s), yet the exit waits
    # flush_timeout once (flush, then close does not wait for the same stalled worker again).
    assert 0.9 < float(times["exit"]) < 1.7, times
    assert elapsed < 10
    assert emulator.faults.pending < 20  # the request really reached the stalled gateway


def test_reconfiguring_then_exiting_still_delivers_the_old_handlers_alerts(
        emulator: Emulator) -> None:
    emulator.latency = 0.5
    result, _ = run("""
        import logging.config, os
        def config(prefix):
            return {"version": 1, "disable_existing_loggers": False, "handlers": {"sms": {
                        "class": "mobilgroup_backends.logging.SmsHandler",
                        "url": os.environ["ALERT_URL"], "prefix": prefix}},
                    "root": {"handlers": ["sms"]}}
        logging.config.dictConfig(config("old"))
        logging.getLogger("app").critical("logged under the old config")
        logging.config.dictConfig(config("new"))
        # Exit at once. The old handler is no longer known to logging.shutdown, and its worker
        # is still waiting for the slow gateway.
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert texts(emulator) == ["[CRITICAL] old app: logged under the old config"]


# --- fork -----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_its_own_worker(emulator: Emulator) -> None:
    result, _ = run("""
        import logging, os, sys
        from mobilgroup_backends.logging import SmsHandler
        handler = SmsHandler(url=os.environ["ALERT_URL"], prefix="pre")
        logging.getLogger().addHandler(handler)
        log = logging.getLogger("master")
        log.critical("from the parent")
        handler.flush()
        parent_worker = handler._worker
        assert parent_worker is not None and handler.stats.sent == 1
        pid = os.fork()
        if pid == 0:  # the child: like a gunicorn or Celery prefork worker
            assert handler._worker is None and handler.stats.sent == 0
            logging.getLogger("child").critical("from the child")
            handler.flush()
            assert handler._worker is not parent_worker and handler._worker.is_alive()
            print("child sent", handler.stats.sent, flush=True)
            sys.exit(0)  # a normal exit: logging.shutdown runs in the child too
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        log.critical("parent again")
        handler.flush()
        print("parent sent", handler.stats.sent, flush=True)
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert "child sent 1" in result.stdout and "parent sent 2" in result.stdout
    assert sorted(texts(emulator)) == ["[CRITICAL] pre child: from the child",
                                       "[CRITICAL] pre master: from the parent",
                                       "[CRITICAL] pre master: parent again"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_child_forked_while_a_record_is_queued(emulator: Emulator) -> None:
    emulator.faults.next("delay", seconds=0.5)
    result, _ = run("""
        import logging, os, sys
        from mobilgroup_backends.logging import SmsHandler
        handler = SmsHandler(url=os.environ["ALERT_URL"], dedupe_seconds=0)
        logging.getLogger().addHandler(handler)
        logging.getLogger("a").critical("slow one")      # the parent's worker is busy with it
        logging.getLogger("a").critical("queued one")    # and this waits in the queue
        pid = os.fork()
        if pid == 0:
            # The parent's queue and its lock are not the child's: nothing is sent twice.
            assert handler.stats.queued == 0
            logging.getLogger("b").critical("child alert")
            sys.exit(0)
        os.waitpid(pid, 0)
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    # The child's stderr says why, should its alert ever be missing.
    assert sorted(texts(emulator)) == ["[CRITICAL] a: queued one", "[CRITICAL] a: slow one",
                                       "[CRITICAL] b: child alert"], result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pid_check_alone_catches_a_fork(emulator: Emulator) -> None:
    # A handler the at-fork hook does not know of (as if the fork bypassed it): the pid check
    # on emit alone must give the child a fresh queue and worker.
    result, _ = run("""
        import logging, os, sys
        from mobilgroup_backends import logging as sms_logging
        handler = sms_logging.SmsHandler(url=os.environ["ALERT_URL"])
        logging.getLogger().addHandler(handler)
        logging.getLogger("parent").critical("one")
        handler.flush()
        sms_logging._LIVE_HANDLERS.discard(handler)
        pid = os.fork()
        if pid == 0:
            logging.getLogger("child").critical("two")
            handler.flush()
            sys.exit(0 if handler.stats.sent == 1 else 1)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert sorted(texts(emulator)) == ["[CRITICAL] child: two", "[CRITICAL] parent: one"]


# --- no Django unless it is there ------------------------------------------------------------


def test_the_handler_never_imports_django(emulator: Emulator) -> None:
    result, _ = run("""
        import logging, os, sys
        from mobilgroup_backends.errors import ConfigurationError
        from mobilgroup_backends.logging import SmsHandler
        try:
            SmsHandler()
        except ConfigurationError as exc:
            print("refused:", exc.field)
        SmsHandler(url=os.environ["ALERT_URL"]).close()
        print("django imported:", any(name.startswith("django") for name in sys.modules))
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["refused: url", "django imported: False"]


# --- Django LOGGING -------------------------------------------------------------------------

DJANGO_SETTINGS = """
SECRET_KEY = "tests-only"
INSTALLED_APPS = ["django.contrib.contenttypes"]
DATABASES = {{}}
MOBILGROUP = {mobilgroup!r}
LOGGING = {{
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {{"sms": {{
        "class": "mobilgroup_backends.logging.SmsHandler",
        "level": "ERROR",
        "prefix": "shop",
    }}}},
    "loggers": {{"payments": {{"handlers": ["sms"], "level": "INFO"}}}},
}}
"""


def django_run(tmp_path: Path, mobilgroup: Mapping[str, object], script: str) -> str:
    (tmp_path / "alert_settings.py").write_text(DJANGO_SETTINGS.format(mobilgroup=mobilgroup))
    result, _ = run(script, env={"DJANGO_SETTINGS_MODULE": "alert_settings",
                                 "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_django_logging_reads_discrete_mobilgroup_settings(tmp_path: Path,
                                                           emulator: Emulator) -> None:
    mobilgroup = {"USER_ID": "2000", "LOGIN": "alerts", "PASSWORD": CANARY,
                  "ENDPOINT": emulator.endpoint, "SENDER": "Alerts",
                  "ALERT_PHONES": [PHONE, "+7 916 123-45-67"]}
    out = django_run(tmp_path, mobilgroup, """
        import logging
        import django
        django.setup()
        log = logging.getLogger("payments")
        log.warning("below the handler's level")
        log.error("card processor down")
        handler = log.handlers[0]
        print(type(handler).__name__, logging.getLevelName(handler.level), repr(handler))
    """)
    assert out.startswith("SmsHandler ERROR <SmsHandler (ERROR) to 2 phone(s)>")
    [message] = emulator.outbox
    assert message.text == "[ERROR] shop payments: card processor down"
    assert message.phones == (PHONE, PHONE2)
    assert message.sender == "Alerts" and message.user_id == "2000"


def test_django_logging_reads_the_mobilgroup_url(tmp_path: Path, emulator: Emulator) -> None:
    # Discrete keys override the URL, as for the Django SMS backend.
    mobilgroup = {"URL": emulator.url(account="2000", sender="Shop"), "SENDER": "Ops",
                  "ALERT_PHONES": PHONE2}
    django_run(tmp_path, mobilgroup, """
        import logging
        import django
        django.setup()
        logging.getLogger("payments").critical("refunds stuck")
    """)
    [message] = emulator.outbox
    assert message.text == "[CRITICAL] shop payments: refunds stuck"
    assert message.phones == (PHONE2,) and message.sender == "Ops"


def test_django_settings_read_lazily_when_configured_later(tmp_path: Path,
                                                          emulator: Emulator) -> None:
    # dictConfig runs while Django is imported but not configured yet: the handler waits for
    # the settings and reads them in its worker, on the first record.
    result, _ = run("""
        import logging, logging.config, os
        from django.conf import settings
        logging.config.dictConfig({"version": 1, "handlers": {"sms": {
            "class": "mobilgroup_backends.logging.SmsHandler"}}, "root": {"handlers": ["sms"]}})
        handler = logging.getLogger().handlers[0]
        print("phones before:", handler.phones)
        settings.configure(MOBILGROUP={"URL": os.environ["ALERT_URL"],
                                       "ALERT_PHONES": os.environ["ALERT_PHONE"]})
        logging.getLogger("late").critical("configured late")
        handler.flush()
        print("phones after:", handler.phones)
    """, env={"ALERT_URL": emulator.url(account="2000"), "ALERT_PHONE": PHONE})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["phones before: ()", f"phones after: ('{PHONE}',)"]
    assert texts(emulator) == ["[CRITICAL] late: configured late"]


@pytest.fixture
def configured_django() -> Iterator[None]:
    django_conf = sys.modules.get("django.conf")
    if django_conf is None or not django_conf.settings.configured:
        pytest.skip("Django settings are not configured in this test session")
    yield


def test_django_logging_in_process_with_override_settings(
        configured_django: None, emulator: Emulator) -> None:
    from django.test import override_settings

    mobilgroup = {"USER_ID": "2000", "LOGIN": "alerts", "PASSWORD": CANARY,
                  "ENDPOINT": emulator.endpoint, "ALERT_PHONES": PHONE}
    logger = logging.getLogger("dc-django-inprocess")
    with override_settings(MOBILGROUP=mobilgroup):
        logging.config.dictConfig({
            "version": 1, "disable_existing_loggers": False,
            "handlers": {"sms": {"class": "mobilgroup_backends.logging.SmsHandler"}},
            "loggers": {logger.name: {"handlers": ["sms"], "propagate": False}},
        })
    handler = logger.handlers[0]
    try:
        assert isinstance(handler, SmsHandler)
        logger.critical("from Django settings")
        assert emulator.outbox.wait_for(1)
        assert texts(emulator) == [f"[CRITICAL] {logger.name}: from Django settings"]
    finally:
        logger.removeHandler(handler)
        handler.close()


# --- a refused handler never reaches logging.shutdown ------------------------------------------


def test_a_refused_handler_does_not_break_shutdown_or_later_configuration(
        emulator: Emulator) -> None:
    """A dictConfig whose SmsHandler is refused (a wrong URL) leaves nothing half-built in
    logging's list: a MemoryHandler's records are still flushed, later dictConfig calls work, and
    logging.shutdown at exit runs to its end."""
    result, _ = run("""
        import logging, logging.config, logging.handlers, os, sys
        target = logging.StreamHandler(sys.stdout)
        memory = logging.handlers.MemoryHandler(100, flushLevel=logging.CRITICAL + 1,
                                                target=target)
        app = logging.getLogger("app")
        app.setLevel(logging.INFO)
        app.addHandler(memory)
        app.info("first record, held in memory")
        bad = {"version": 1, "disable_existing_loggers": False, "handlers": {"sms": {
            "class": "mobilgroup_backends.logging.SmsHandler",
            "url": "mobilgroup://alerts:pw@not-digits/79031234567"}},
            "loggers": {"jobs": {"handlers": ["sms"]}}}
        try:
            logging.config.dictConfig(bad)
        except ValueError as exc:
            kept = exc  # the traceback keeps the refused handler alive until exit
            print("refused:", type(exc.__cause__).__name__, file=sys.stderr)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "handlers": {"sms": {
                                       "class": "mobilgroup_backends.logging.SmsHandler",
                                       "url": os.environ["ALERT_URL"]}},
                                   "loggers": {"jobs": {"handlers": ["sms"]}}})
        memory = logging.handlers.MemoryHandler(100, flushLevel=logging.CRITICAL + 1,
                                                target=target)
        app.addHandler(memory)
        app.info("second record, held in memory until exit")
        logging.getLogger("jobs").critical("configured after the refusal")
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    assert "refused: ConfigurationError" in result.stderr
    assert "Traceback" not in result.stderr and "_pid" not in result.stderr
    assert "first record, held in memory" in result.stdout
    assert "second record, held in memory until exit" in result.stdout
    assert texts(emulator) == ["[CRITICAL] jobs: configured after the refusal"]


def test_exit_summary_counts_repeats_the_dedupe_held_back(emulator: Emulator) -> None:
    result, _ = run("""
        import logging, os
        from mobilgroup_backends.logging import SmsHandler
        logging.getLogger().addHandler(SmsHandler(url=os.environ["ALERT_URL"]))
        for _ in range(1000):
            logging.getLogger("db").critical("replica lag")
    """, env={"ALERT_URL": emulator.url(PHONE, account="2000")})
    assert result.returncode == 0, result.stderr
    first, summary = texts(emulator)
    assert first == "[CRITICAL] db: replica lag"
    assert summary.startswith("+999 more CRITICAL since ") and "replica lag" in summary
