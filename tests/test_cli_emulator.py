"""``mobilgroup emulator`` and ``mobilgroup demo`` as real programs: what they print works (usage
errors, which stop before anything runs, in process)."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.config import parse_url
from tests.conftest import RunCommand

URL_LINE = re.compile(r"MOBILGROUP_URL='([^']+)'")


class Program:
    """A running command whose output lines are read with a deadline (never a blocked test)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mobilgroup_backends", *args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Read lines until one matches ``pattern``; fail with everything seen otherwise."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            found = re.search(pattern, line)
            if found:
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.seen))

    def stop(self) -> int:
        """Stop it with Ctrl-C, as its users do; its exit code."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in started:
        program.stop()


def start(programs: list[Program], *args: str, env: dict[str, str] | None = None) -> Program:
    program = Program(*args, env=env)
    programs.append(program)
    return program


def test_the_printed_url_works_when_pasted(programs: list[Program]) -> None:
    program = start(programs, "emulator", "--port", "0", "--account", "77:ops@example:s3cret:5")
    page = program.until(r"^Inbox page:\s+(http://127\.0\.0\.1:\d+/)$").group(1)
    url = program.until(URL_LINE.pattern).group(1)
    program.until(r"local test accounts, not secrets")
    program.until(r"Press Ctrl\+C")
    with MobilgroupClient.from_url(url) as client:  # pasted as printed
        assert client.balance() == 5
        sent = client.send("79039587454", "Привет от эмулятора")
    # One line per exchange, phones masked.
    program.until(r"^\d\d:\d\d:\d\d MSK balance -> 0 OK \(\d+\.\d ms\)$")
    line = program.until(rf"send id {sent.request_id} to 7903\*\*\*\*\*54 -> 0 OK").string
    assert "79039587454" not in line
    html = requests.get(page, timeout=10)
    assert html.status_code == 200 and "/static/inbox.js" in html.text
    shown = requests.get(page + "api/messages", timeout=10).json()
    assert [m["text"] for m in shown] == ["Привет от эмулятора"]
    assert program.stop() == 0  # Ctrl-C: a clean stop


def test_every_interface_gives_a_url_for_other_containers(programs: list[Program]) -> None:
    program = start(programs, "emulator", "--port", "0", "--host", "0.0.0.0", "--quiet")
    program.until(r"listening on every interface, port \d+")
    page = program.until(r"^Inbox page:\s+(\S+)$").group(1)
    local = program.until(URL_LINE.pattern).group(1)
    program.until(r"from another machine or container")
    remote = program.until(URL_LINE.pattern).group(1)
    assert page.startswith("http://127.0.0.1:")
    port = page.rsplit(":", 1)[1].rstrip("/")
    assert "allow_insecure_http=yes" in remote  # plain http to a host that is not loopback
    host = re.search(r"endpoint=http%3A%2F%2F([^%]+)%3A", remote)
    assert host and host.group(1) not in ("0.0.0.0", "127.0.0.1", "localhost")
    assert f"%3A{port}%2Fextxml.php" in remote
    settings, _ = parse_url(remote)
    assert settings.allow_insecure_http and settings.endpoint.startswith(f"http://{host.group(1)}:")
    with MobilgroupClient.from_url(local) as client:  # this test only talks to 127.0.0.1
        assert client.balance() == 100


@pytest.mark.parametrize("port", ["99999", "-1", "eighty"])
def test_a_port_out_of_range_is_a_usage_error(port: str, mobilgroup_command: RunCommand) -> None:
    done = mobilgroup_command("emulator", "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr and "0 to 65535" in done.stderr


@pytest.mark.timeout(30)  # were the port not refused, the emulator would serve until stopped
def test_a_taken_port_is_a_usage_error(mobilgroup_command: RunCommand) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = mobilgroup_command("emulator", "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr and "--port 0" in done.stderr


STEPS = ("1. Python client", "2. Django", "3. Apprise", "4. logging",
         "5. The clock moves past the lifetime", "6. Against the real gateway")


def test_the_demo_skips_a_missing_adapter_and_says_how_to_add_it(tmp_path: Path) -> None:
    hidden = tmp_path / "apprise"
    hidden.mkdir()
    (hidden / "__init__.py").write_text(
        'raise ModuleNotFoundError("No module named \'apprise\'", name="apprise")\n')
    done = subprocess.run(
        [sys.executable, "-m", "mobilgroup_backends", "demo"], capture_output=True, text=True,
        encoding="utf-8", timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8",
             "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped: apprise is not installed" in done.stdout
    assert "pip install 'mobilgroup-backends[apprise]'" in done.stdout
    assert "Summary: 3 messages to 5 recipients" in done.stdout
    assert "skipped: Apprise" in done.stdout
    # Without --keep-open the page it pointed to is gone when it exits: it says so.
    assert "add --keep-open to browse it afterwards" in done.stdout
    assert done.stdout.rstrip().endswith(
        "The emulator and its inbox page are closed now. To browse the messages: "
        "mobilgroup demo --keep-open")


def test_the_demo_runs_every_step_and_keeps_the_inbox_open(programs: list[Program]) -> None:
    program = start(programs, "demo", "--keep-open")
    program.until(r"Summary: 4 messages to 6 recipients accepted by the emulator in [\d.]+ s\.$")
    out = "\n".join(program.seen)
    positions = [out.index(step) for step in STEPS]
    assert positions == sorted(positions)
    assert "Привет! Ваш код подтверждения: 4521" in out
    assert "+7 913 000-00-00 fails on purpose" in out and "undeliverable" in out
    assert re.search(r"79130000000\s+undelivered", out)
    assert len(re.findall(r"79039587454\s+delivered", out)) == 4
    assert "Balance: 100 -> 94 (6 spent" in out
    assert "mobilgroup://LOGIN:PASSWORD@USER_ID" in out
    assert "skipped" not in out and "Traceback" not in out
    assert "every message below shows up there too" in out and "closed now" not in out
    assert "demo-password" not in out  # until the demo ends; then the URL to paste shows it
    page = program.until(r"The emulator stays open\. Inbox page: (http://127\.0\.0\.1:\d+/)").group(1)
    url = program.until(URL_LINE.pattern).group(1)
    program.until(r"Press Ctrl\+C")
    messages = requests.get(page + "api/messages", timeout=10).json()
    assert len(messages) == 4
    assert all(m["status"] == "finished" for m in messages)
    assert {r["status"] for m in messages for r in m["recipients"]} == {"delivered", "undelivered"}
    assert requests.get(page + "api/accounts", timeout=10).json()[0]["balance"] == "94"
    with MobilgroupClient.from_url(url) as client:
        client.send("79039587454", "ещё одно")
    program.until(r"send id \d+ to 7903\*\*\*\*\*54 -> 0 OK")
    assert len(requests.get(page + "api/messages", timeout=10).json()) == 5


def test_the_emulator_command_stays_light() -> None:
    """``mobilgroup emulator`` loads neither an HTTP client library nor a framework."""
    code = ("import sys\n"
            "from mobilgroup_backends.cli import _parser\n"
            "import mobilgroup_backends.cli.emulator, mobilgroup_backends.emulator\n"
            "_parser().parse_args(['emulator', '--port', '0'])\n"
            "print(sorted(m for m in ('requests', 'urllib3', 'django', 'apprise') "
            "if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
