"""The alert receiver's test parts: the app on a real waitress server in a thread, the
``mobilgroup serve`` command as a process (to kill), a real Prometheus Alertmanager, and payloads
as the tools' documentation shows them."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
from waitress import create_server
from waitress.wasyncore import close_all, loop

from mobilgroup_backends.serve import ReceiverApp
from tests.helpers import closed_port, stop_process, wait_until

TOKEN = "test-receiver-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@contextlib.contextmanager
def serving(app: ReceiverApp) -> Iterator[str]:
    """``app`` on waitress on a free port of 127.0.0.1 (its base URL), stopped and closed after."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    stop = threading.Event()

    def run() -> None:
        # waitress's own loop, a step at a time, so that it ends when told and closes its
        # sockets in its own thread (closing them from another one races its select()).
        while not stop.is_set():
            loop(timeout=0.05, map=server._map, count=1)
        server.task_dispatcher.shutdown()
        close_all(server._map)

    thread = threading.Thread(target=run, daemon=True, name="receiver-under-test")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(10)
        app.close()
        assert not thread.is_alive(), "the receiver's server did not stop"


def alertmanager_payload(status: str = "firing", *, name: str = "HighLatency",
                         fingerprints: tuple[str, ...] = ("a1b2c3d4e5f60718",),
                         starts: str = "2026-05-04T12:00:00Z", receiver: str = "sms",
                         summary: str = "p99 latency above 2 s",
                         labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A version 4 webhook body as Alertmanager's documentation describes it."""
    common = {"alertname": name, "severity": "critical", "job": "api", **(labels or {})}
    return {
        "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "truncatedAlerts": 0,
        "status": status, "receiver": receiver, "groupLabels": {"alertname": name},
        "commonLabels": common, "commonAnnotations": {"summary": summary},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{"status": status, "labels": {**common, "instance": f"api-{n}:9100"},
                    "annotations": {"summary": summary}, "startsAt": starts,
                    "endsAt": "0001-01-01T00:00:00Z" if status == "firing"
                    else "2026-05-04T12:10:00Z",
                    "generatorURL": "http://prometheus.example:9090/graph",
                    "fingerprint": fingerprint}
                   for n, fingerprint in enumerate(fingerprints)],
    }


def grafana_payload() -> dict[str, Any]:
    """The example body of Grafana alerting's webhook contact point (its documentation's)."""
    return {
        "receiver": "My Super Webhook", "status": "firing", "orgId": 1,
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {"description": "The system has high memory usage",
                            "runbook_url": "https://myrunbook.com/runbook/1234",
                            "summary": "This alert was triggered for zone us-1"},
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana",
            "dashboardURL": "", "panelURL": "", "values": {"B": 44.23943737541908, "C": 1},
        }],
        "groupLabels": {}, "commonLabels": {"team": "blue"}, "commonAnnotations": {},
        "externalURL": "https://play.grafana.org/", "version": "1",
        "groupKey": '{}:{alertname="High memory usage"}', "truncatedAlerts": 0,
        "title": "[FIRING:1]  (blue)",
        "state": "alerting",
        "message": "**Firing**\n\nLabel alertname = High memory usage\n",
    }


def post(base: str, route: str, body: Any, headers: Mapping[str, str] | None = None,
         **kwargs: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(base + route, data=data, timeout=30,
                         headers={"Content-Type": "application/json",
                                  **(AUTH if headers is None else headers)}, **kwargs)


class ReceiverProcess:
    """``mobilgroup serve`` as its own process on a fixed port (so that it can be killed and
    started again where Alertmanager expects it); its output goes to a file."""

    def __init__(self, folder: Path, env: Mapping[str, str], *args: str) -> None:
        self.folder = folder
        self.port = closed_port()
        self.env = {**os.environ, **env}
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverProcess:
        self.starts += 1
        log = self.folder / f"receiver-{self.starts}.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mobilgroup_backends", "serve",
                 "--listen", f"127.0.0.1:{self.port}", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env)
        if not wait_until(lambda: "listening on" in log.read_text(errors="replace")
                          or self.process is None or self.process.poll() is not None, 30):
            raise RuntimeError("the receiver did not start")
        if self.process.poll() is not None:
            raise RuntimeError("the receiver exited: " + log.read_text(errors="replace"))
        return self

    def output(self) -> str:
        return "".join(path.read_text(errors="replace")
                       for path in sorted(self.folder.glob("receiver-*.log")))

    def kill(self) -> None:
        """SIGKILL: no answer, no cleanup, no summary."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)


class Alertmanager:
    """A real Prometheus Alertmanager on free ports of 127.0.0.1, clustering off, its data and
    configuration in ``folder``, notifying ``webhook`` with the bearer token."""

    def __init__(self, folder: Path, webhook: str, *, token: str = TOKEN,
                 group_wait: str = "1s", group_interval: str = "2s") -> None:
        if ALERTMANAGER is None:
            raise RuntimeError("prometheus-alertmanager is not installed (apt-get install "
                               "prometheus-alertmanager; .ci/run does)")
        self.folder = folder
        self.port = closed_port()
        self.webhook = webhook
        self.group_wait, self.group_interval = group_wait, group_interval
        self.configure(token)
        self.process: subprocess.Popen[bytes] | None = None
        self._starts: dict[str, float] = {}

    def configure(self, token: str) -> None:
        """Write the configuration, with ``token`` as the webhook's bearer credentials."""
        config = {
            "route": {"receiver": "sms", "group_by": ["alertname"],
                      "group_wait": self.group_wait, "group_interval": self.group_interval,
                      "repeat_interval": "24h"},
            "receivers": [{"name": "sms", "webhook_configs": [{
                "url": self.webhook, "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials": token}}}]}],
        }
        (self.folder / "alertmanager.yml").write_text(json.dumps(config))  # JSON is YAML

    def reload(self, token: str) -> None:
        """A new token in the configuration, loaded by the running Alertmanager."""
        self.configure(token)
        requests.post(f"http://127.0.0.1:{self.port}/-/reload", timeout=10).raise_for_status()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2"

    def start(self) -> Alertmanager:
        log = (self.folder / "alertmanager.log").open("wb")
        assert ALERTMANAGER is not None
        self.process = subprocess.Popen(
            [ALERTMANAGER, f"--config.file={self.folder / 'alertmanager.yml'}",
             f"--storage.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=debug"], stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def ready() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=1).ok
            except requests.ConnectionError:
                return False

        if not wait_until(ready, 30):
            self.stop()
            raise RuntimeError("Alertmanager did not start: " + self.log())
        return self

    def log(self) -> str:
        return (self.folder / "alertmanager.log").read_text(errors="replace")

    def fire(self, name: str, *, resolved: bool = False, **labels: str) -> None:
        """Post one alert to the API; ``resolved`` sends it with an end in the past."""
        now = time.time()
        starts = self._starts.setdefault(name, now - 60)  # one alert: the same start each time
        alert: dict[str, Any] = {
            "labels": {"alertname": name, "severity": "critical", **labels},
            "annotations": {"summary": f"{name} on the test system"},
            "startsAt": _rfc3339(starts)}
        if resolved:
            alert["endsAt"] = _rfc3339(now - 1)
        answer = requests.post(f"{self.api}/alerts", json=[alert], timeout=10)
        answer.raise_for_status()

    def stop(self) -> None:
        stop_process(self.process)


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
