"""The Celery app the Celery tests run real workers with (``celery -A tests.celery_app worker``).

The broker comes from ``MOBILGROUP_TEST_BROKER``; the gateway from ``MOBILGROUP_URL``, as a
deployment would give it, or from the Celery setting ``mobilgroup_secret_url`` when
``MOBILGROUP_TEST_SETTING_URL`` is set; results are stored when ``MOBILGROUP_TEST_BACKEND`` names
a result backend. The visibility timeout is short so that a killed worker's messages come
back within seconds instead of an hour.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from celery import Celery

import mobilgroup_backends.celery  # noqa: F401  (registers the tasks)

VISIBILITY_TIMEOUT = 3


def make_app(broker: str) -> Celery:
    app = Celery("mobilgroup_tests", broker=broker)
    app.conf.update(
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # Sweep for abandoned messages every second (the default is minutes).
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(os.environ.get("MOBILGROUP_TEST_BROKER", "memory://"))
if os.environ.get("MOBILGROUP_TEST_SETTING_URL"):
    app.conf.mobilgroup_secret_url = os.environ["MOBILGROUP_TEST_SETTING_URL"]
if os.environ.get("MOBILGROUP_TEST_BACKEND"):
    app.conf.update(result_backend=os.environ["MOBILGROUP_TEST_BACKEND"], task_ignore_result=False)


class Worker:
    """``celery -A tests.celery_app worker --pool=prefork`` as a subprocess in its own process
    group, so that a test can SIGKILL the whole pool at once, as an OOM killer or a lost host
    would."""

    def __init__(self, broker: str, gateway_url: str, log: str, *, concurrency: int = 4,
                 name: str = "w1", env: dict[str, str] | None = None) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "MOBILGROUP_TEST_BROKER": broker, "MOBILGROUP_URL": gateway_url,
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
               **(env or {})}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.log_path = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker",
                 "--pool=prefork", f"--concurrency={concurrency}", "--loglevel=INFO",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 f"--hostname={name}@%h"],
                cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL to the main process and every pool child: nothing gets to acknowledge."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (finish running tasks), then SIGKILL if that takes too long."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self.kill()

    def log_tail(self, lines: int = 40) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-lines:])
