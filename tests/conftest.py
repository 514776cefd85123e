"""Fixtures shared by several test modules.

The emulator fixtures are one family, each named for what it adds to a fresh emulator:
``mobilgroup_emulator`` (the package's own pytest plugin: a fresh emulator, the default
account), ``frozen_emulator`` (its clock stands still), ``tls_emulator`` (over HTTPS, a test CA),
``django_emulator`` (Django's ``MOBILGROUP`` pointing at it; a module adds keys with
``pytestmark = pytest.mark.mobilgroup_settings(RETRIES=0, ...)``) and ``otp_emulator`` (the
one-time code tests': ``django_emulator`` with a cache of the test's own). A module that needs
something else names its own fixture for what it adds (``secret_emulator``, ``slow_emulator``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from hypothesis import HealthCheck, settings

from mobilgroup_backends import MobilgroupClient
from mobilgroup_backends.emulator import Emulator
from tests.helpers import FROZEN_PASSWORD, FROZEN_START
from tests.postgres import PostgresServer, shared_copy_folder
from tests.redis_server import RedisServer

pytest_plugins = ["tests.xdist_groups"]

# Many tests stop a command with Ctrl-C (SIGINT), in this process or in a child. A shell that
# starts a job in the background without job control starts it with SIGINT ignored, and that
# is inherited: Python then never raises KeyboardInterrupt and those tests would hang. Give the
# suite (and, through exec, every child it starts) the default Ctrl-C back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Property tests: a quick sample while developing, a thorough one in CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci). Tests name only what differs from the profile, never max_examples.
settings.register_profile("dev", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_configure(config: pytest.Config) -> None:
    """One folder for the whole run (the xdist workers inherit it) where the PostgreSQL server's
    installation is copied if the unprivileged account it runs as cannot reach the venv's."""
    stack = contextlib.ExitStack()
    stack.enter_context(shared_copy_folder())
    config.add_cleanup(stack.close)
    config.addinivalue_line(
        "markers", "mobilgroup_settings(**keys): MOBILGROUP keys the django_emulator fixture adds")


#: Each xdist worker costs seconds of CPU before its first test (it imports and collects every
#: test module and makes its own test database): past a few, more cost more than they save.
MAX_WORKERS = 8


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent with -p no:xdist
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (the default in pyproject.toml): a worker per core, one more per core that is
    idle now, and one more while any is. The suite mostly waits (on subprocesses, servers, a
    browser, the emulator's deliberate delays): on an idle machine the workers fill each other's
    waits, and two of them spend their first half-minute mostly waiting in the process tests
    (leases running out, a paused outbox's backoff), which is what the last one is for. On a busy
    machine the others' work fills the waits, and extra workers only add their start-up cost and
    slow the timing-sensitive tests down."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own variable, for a machine that knows better, still wins
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    idle = max(0, min(cores, round(cores - busy_cores())))
    return max(1, min(MAX_WORKERS, cores + idle + (1 if idle else 0)))


def busy_cores(window: float = 0.3) -> float:
    """How many cores other work keeps busy now: the machine's CPU time over ``window`` seconds
    (Linux's /proc/stat), else the load average. Not the load average first: it is a minute
    behind, and right after an install (as in CI) it still counts the install."""
    def idle_and_total() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks[:8])  # idle + iowait; user..steal

    try:
        idle_before, total_before = idle_and_total()
        time.sleep(window)
        idle_after, total_after = idle_and_total()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):  # not available here: assume an idle machine
            return 0.0
    total = total_after - total_before
    if total <= 0:
        return 0.0
    return (os.cpu_count() or 1) * (1 - (idle_after - idle_before) / total)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests first (in their order): started last, one of them would keep the
    whole parallel run waiting after every other worker has finished. A test of a group whose
    ``database`` parameter is SQLite goes to a group of its own: only the PostgreSQL ones need
    to share a worker (and its one server), and one worker for all would be the run's longest."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("database") == "sqlite" and item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("sqlite"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


class Trap:
    """A listener on 127.0.0.1 that hostile answers and redirects point at: it must never see a
    connection, which proves the client did not follow them."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.port: int = listener.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True


@pytest.fixture
def trap() -> Iterator[Trap]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    with listener:
        yield Trap(listener)


@pytest.fixture
def no_mobilgroup_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MOBILGROUP_* variables for this test (restored afterwards): every adapter falls back to
    them, so a developer's own settings must not leak into tests of settings."""
    for name in list(os.environ):
        if name.startswith("MOBILGROUP_"):
            monkeypatch.delenv(name)


def exit_status(run: Callable[[], int | None]) -> int:
    """What a process running ``run`` would exit with: its return value, or a ``SystemExit``'s
    code (argparse's usage errors, ``sys.exit`` in Django commands)."""
    try:
        return run() or 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1


#: Runs a command in the test's process: ``run(*args, url=None, stdin=None, env=None, cwd=None)``.
RunCommand = Callable[..., "subprocess.CompletedProcess[str]"]


def _in_process(program: list[str], entry: Callable[[list[str]], int | None],
                capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCommand:
    def run(*args: str, url: str | None = None, stdin: str | None = None,
            env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patch:
            if url is not None:
                patch.setenv("MOBILGROUP_URL", url)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "stdin", io.StringIO(stdin or ""))
            if cwd is not None:
                patch.chdir(cwd)
            capsys.readouterr()
            code = exit_status(lambda: entry(list(args)))
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess([*program, *args], code, out, err)

    return run


@pytest.fixture
def mobilgroup_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                       no_mobilgroup_environment: None) -> RunCommand:
    """The ``mobilgroup`` command run in this process, as a shell would run it: its standard
    output, standard error and exit code; ``url`` becomes ``MOBILGROUP_URL``, ``stdin`` its
    standard input, ``env`` more variables, ``cwd`` its working folder (all restored afterwards).
    Where the process itself is what a test is about (signals, the installed script), run it."""
    from mobilgroup_backends.cli import main

    return _in_process(["mobilgroup"], main, capsys, monkeypatch)


@pytest.fixture
def on_a_terminal(mobilgroup_command: RunCommand, monkeypatch: pytest.MonkeyPatch
                  ) -> Callable[..., tuple[int, str]]:
    """Run the ``mobilgroup`` command with standard error on a pseudo-terminal, as in an
    interactive shell: its exit code and what the terminal showed."""

    def run(*args: str, url: str, cwd: Path) -> tuple[int, str]:
        leader, follower = pty.openpty()
        shown: list[bytes] = []

        def read_the_terminal() -> None:
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal closed
                    return
                if not chunk:
                    return
                shown.append(chunk)

        reader = threading.Thread(target=read_the_terminal, daemon=True)
        reader.start()
        with open(follower, "w", encoding="utf-8") as terminal, monkeypatch.context() as patch:
            patch.setenv("COLUMNS", "120")
            patch.setenv("TERM", "xterm")
            patch.setattr(sys, "stderr", terminal)
            done = mobilgroup_command(*args, url=url, cwd=cwd)
        reader.join(10)
        os.close(leader)
        return done.returncode, b"".join(shown).decode("utf-8", "replace")

    return run


@pytest.fixture
def manage_command(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   no_mobilgroup_environment: None) -> RunCommand:
    """``manage.py mobilgroup ...`` run in this process the way ``manage.py`` runs it (Django's
    own argument parsing, error printing and exit codes), with the tests' Django settings."""
    from django.core.management import ManagementUtility

    def manage(args: list[str]) -> None:
        argv = ["manage.py", "mobilgroup", *args]
        # What ManagementUtility.execute() does once django.setup() has run: the test session
        # has set Django up already, and setting it up again would reconfigure logging.
        ManagementUtility(argv).fetch_command("mobilgroup").run_from_argv(argv)

    return _in_process(["manage.py", "mobilgroup"], manage, capsys, monkeypatch)


@pytest.fixture
def frozen_emulator() -> Iterator[Emulator]:
    """An emulator whose clock stands at ``FROZEN_START`` until a test moves it, with one account
    (1000, demo, ``FROZEN_PASSWORD``, balance 100)."""
    with Emulator([f"1000:demo:{FROZEN_PASSWORD}:100"], start_time=FROZEN_START,
                  freeze_clock=True) as running:
        yield running


@pytest.fixture
def frozen_client(frozen_emulator: Emulator) -> Iterator[MobilgroupClient]:
    """A client of ``frozen_emulator`` that does not retry (each fault shows at once)."""
    with MobilgroupClient.from_url(frozen_emulator.url(retries=0)) as opened:
        yield opened


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A test certificate authority (trustme): what a private CA would be."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_emulator(ca: trustme.CA) -> Iterator[Emulator]:
    """The emulator over HTTPS, with a certificate for 127.0.0.1 from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with Emulator(ssl_context=context) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 (a free port), its data in a temporary folder; every
    statement is logged, so tests can see which SQL actually ran."""
    server = PostgresServer(log_statement="all")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis server for the session (Celery's broker, the fleet alert budget): tests
    that share it use their own database number or key."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def django_emulator(mobilgroup_emulator: Emulator, settings: Any,
                    request: pytest.FixtureRequest) -> Emulator:
    """``mobilgroup_emulator`` as Django's ``MOBILGROUP`` (fast retries), plus the keys of the
    module's or test's ``mobilgroup_settings`` mark."""
    from tests.django_project.helpers import gateway_settings

    extra: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers("mobilgroup_settings"))):
        extra.update(mark.kwargs)  # the closest mark (the test's) wins over the module's
    settings.MOBILGROUP = gateway_settings(mobilgroup_emulator, **extra)
    return mobilgroup_emulator


@pytest.fixture
def otp_emulator(django_emulator: Emulator, settings: Any,
                 no_mobilgroup_environment: None) -> Emulator:
    """The one-time code tests' emulator: ``django_emulator`` and a cache of this test's own (the
    guard counts there), so no test sees another's counts."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"otp-{uuid.uuid4().hex}"}}
    return django_emulator


_broker_databases = iter(range(1, 16))


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[str]:
    """A Celery broker URL: a Redis database of its own for each test (the session's server has
    16; database 0 is the one the fleet alert budget tests share, by key)."""
    db = next(_broker_databases)
    redis_server.client(db).flushdb()
    yield redis_server.url(db)
